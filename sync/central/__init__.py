"""Reference central service."""
