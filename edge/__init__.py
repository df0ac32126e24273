"""Edge node: wiring, lane state machine, rules, declaration cache, journal, kiosk."""
