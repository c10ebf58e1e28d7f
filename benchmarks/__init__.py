"""Reproducible speed and memory measurements (run on demand, not part of the tests)."""
