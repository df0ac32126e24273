"""Recognition models and their inference wrappers (vision issue)."""
