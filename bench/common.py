"""What the benchmarks share: a typical payload, the comparison of hostrt
against a baseline (:class:`Row`), alternating runs and the summary."""

from __future__ import annotations

import asyncio
import gc
import json
import math
import statistics
from typing import Any, Awaitable, Callable

from bench.units import fmt_time


#: A JSON Schema that :func:`request_payload` satisfies, written the way
#: event and command schemas usually are.
REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "integer", "minimum": 0},
        "command": {"type": "string", "pattern": "^[a-z]+([.][a-z]+)*$", "maxLength": 64},
        "user": {
            "type": "object",
            "properties": {"name": {"type": "string", "maxLength": 100},
                           "locale": {"type": "string", "enum": ["en-GB", "en-US", "fr-FR", "de-DE"]}},
            "required": ["name"],
            "additionalProperties": False,
        },
        "items": {
            "type": "array",
            "maxItems": 50,
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "qty": {"type": "integer", "minimum": 0},
                               "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
                               "ok": {"type": "boolean"}},
                "required": ["name", "qty"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["id", "command", "items"],
    "additionalProperties": False,
}


def request_payload() -> dict[str, Any]:
    """A JSON object of about 400 bytes, the size of a typical command or
    event payload."""
    payload = {
        "id": 1234,
        "command": "notes.search",
        "user": {"name": "Ada Lovelace", "locale": "en-GB"},
        "items": [{"name": f"item-{i}", "qty": i, "tags": ["red", "blue"], "ok": i % 2 == 0} for i in range(6)],
    }
    size = len(json.dumps(payload, separators=(",", ":")))
    assert 350 <= size <= 450, size
    return payload


def p95(values: list[float]) -> float:
    """Nearest-rank 95th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def fmt_mb(mb: float) -> str:
    return f"{mb:.2f} MB"


class Row:
    """One case: samples of hostrt and of its baseline, and the target.

    ``absolute`` targets (memory) compare hostrt's median itself with the
    target; the others compare the ratio of the medians. A row without a
    target (``None``) only reports its ratio.
    """

    def __init__(self, key: str, case: str, baseline: str, base: list[float], host: list[float], target: float | None,
                 *, absolute: bool = False, fmt: Callable[[float], str] = fmt_time) -> None:
        self.key, self.case, self.baseline, self.base, self.host = key, case, baseline, base, host
        self.target, self.absolute, self.fmt = target, absolute, fmt

    @property
    def base_median(self) -> float:
        return statistics.median(self.base)

    @property
    def host_median(self) -> float:
        return statistics.median(self.host)

    @property
    def ratio(self) -> float:
        return self.host_median / self.base_median

    @property
    def met(self) -> bool:
        if self.target is None:
            return True
        return (self.host_median if self.absolute else self.ratio) <= self.target

    def target_text(self) -> str:
        if self.target is None:
            return "none"
        return f"<= {self.fmt(self.target)}" if self.absolute else f"<= {self.target:g}"

    def short(self) -> str:
        value = self.fmt(self.host_median) if self.absolute else f"ratio {self.ratio:.2f}"
        return f"{self.key} {value}"

    def lines(self) -> list[str]:
        target = self.target_text()
        line = (f"{self.case}: hostrt median {self.fmt(self.host_median)}, "
                f"baseline ({self.baseline}) median {self.fmt(self.base_median)}, "
                f"ratio {self.ratio:.2f} (target {target})")
        if not self.met:
            line += " MISSED"
        detail = (f"    p95: hostrt {self.fmt(p95(self.host))}, baseline {self.fmt(p95(self.base))}; "
                  f"{len(self.host)} hostrt / {len(self.base)} baseline samples")
        return [line, detail]


async def quiesce() -> None:
    """Let work a previous run left on the loop (the channel's trailing
    flush) finish, and collect garbage, outside any timed region."""
    await asyncio.sleep(0.01)
    gc.collect()


async def alternate(rounds: int, first: Callable[[], Awaitable[None]], second: Callable[[], Awaitable[None]]) -> None:
    """Run both sides ``rounds`` times, swapping which goes first."""
    for i in range(rounds):
        for side in ((first, second) if i % 2 == 0 else (second, first)):
            await quiesce()
            await side()


def print_report(rows: list[Row], elapsed_s: float) -> None:
    """Every row, then which targets were met and which missed."""
    for row in rows:
        for line in row.lines():
            print(line)
    met = [row for row in rows if row.met]
    missed = [row for row in rows if not row.met]
    print(f"summary: {len(met)} of {len(rows)} targets met ({elapsed_s:.0f} s)")
    for label, group in (("met", met), ("MISSED", missed)):
        if group:
            print(f"    {label}: " + "; ".join(f"{row.short()} (target {row.target_text()})" for row in group))
