"""Benchmarks: each prints JSON figures; `smartgate bench` runs them. Never timed assertions in tests."""
