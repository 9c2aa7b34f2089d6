"""Formatting shared by the benchmarks."""

from __future__ import annotations


def fmt_time(seconds: float) -> str:
    """A duration in the unit that reads best: ms above 0.1 ms, else us."""
    if seconds >= 0.1:
        return f"{seconds * 1000:.1f} ms"
    if seconds >= 1e-4:
        return f"{seconds * 1000:.3f} ms"
    return f"{seconds * 1e6:.1f} us"
