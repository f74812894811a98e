"""Benchmarks (not tests: pytest collects only test_*.py); each is timed beside its baseline."""
