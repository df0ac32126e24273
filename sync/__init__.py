"""Edge-to-central synchronisation (outbox, declaration feed, telemetry)."""
