"""Benchmarks. Run them all with ``make bench`` (``python -m bench``)."""
