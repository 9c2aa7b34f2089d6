"""A token bucket, the rate limit hostrt applies per plugin (log records,
emitted events)."""

from __future__ import annotations

import threading
import time


class TokenBucket:
    """``take()`` is False once more than ``burst`` tokens were taken
    without pause; the bucket refills at ``rate`` tokens per second.
    Refusals are counted for :meth:`take_refused`. Thread-safe: Python
    plugins take from their own thread, JavaScript ones from the loop."""

    def __init__(self, rate: float, burst: int) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = time.monotonic()
        self._refused = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens < 1:
                self._refused += 1
                return False
            self._tokens -= 1
            return True

    def take_refused(self) -> int:
        """How many takes were refused since the last call (and reset)."""
        with self._lock:
            refused, self._refused = self._refused, 0
            return refused
