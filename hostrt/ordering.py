"""Activation order: dependencies, before/after hints, then load priority.

Pure functions over manifests, so the rules can be tested without running
any plugin. ``requires`` and ``optional`` (when the optional plugin is
present) put the dependency first; ``before``/``after`` add edges between
plugins that are present; among plugins that are ready at the same time,
``load.priority`` (bootstrap, high, default, low) and then the id decide.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import DependencyError
from .manifest import Manifest
from .semver import Version, VersionRange

PRIORITY_RANK = {"bootstrap": 0, "high": 1, "default": 2, "low": 3}


@dataclass
class OrderResult:
    """Plugins in activation order, and those that cannot be activated."""

    order: list[str] = field(default_factory=list)
    blocked: dict[str, DependencyError] = field(default_factory=dict)


def requirement_problems(manifest: Manifest, available: Mapping[str, Manifest]) -> list[str]:
    """What is wrong with ``manifest``'s ``requires`` and ``conflicts`` given
    the plugins that are ``available``; empty when nothing is."""
    problems = []
    for req in manifest.relationships.requires:
        other = available.get(req.id)
        if other is None:
            problems.append(f"requires '{req.id}' ({req.version_range}), which is not installed")
        elif not VersionRange.parse(req.version_range).contains(Version.parse(other.version)):
            problems.append(
                f"requires '{req.id}' {req.version_range} but version {other.version} is installed"
            )
    for req in manifest.relationships.optional:
        other = available.get(req.id)
        if other is not None and not VersionRange.parse(req.version_range).contains(
            Version.parse(other.version)
        ):
            problems.append(
                f"optionally uses '{req.id}' {req.version_range} but version {other.version} is installed"
            )
    return problems


def conflicts_between(a: Manifest, b: Manifest) -> bool:
    """Does either manifest declare a conflict with the other's id/version?"""
    for this, other in ((a, b), (b, a)):
        for conflict in this.relationships.conflicts:
            if conflict.id != other.id:
                continue
            if conflict.version_range is None or VersionRange.parse(conflict.version_range).contains(
                Version.parse(other.version)
            ):
                return True
    return False


def _edges(manifests: Mapping[str, Manifest]) -> dict[str, set[str]]:
    """``after[x]`` = the plugins that must be activated before ``x``."""
    after: dict[str, set[str]] = {pid: set() for pid in manifests}
    for pid, m in manifests.items():
        rel = m.relationships
        for dep in [*rel.requires, *rel.optional]:
            if dep.id in manifests:
                after[pid].add(dep.id)
        for other in rel.after:
            if other in manifests:
                after[pid].add(other)
        for other in rel.before:
            if other in manifests:
                after[other].add(pid)
    return after


def _find_cycle(start: str, after: Mapping[str, set[str]], stuck: set[str]) -> list[str]:
    """Follow unmet edges from ``start`` until a plugin repeats."""
    path: list[str] = []
    seen: dict[str, int] = {}
    node = start
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = min(dep for dep in after[node] if dep in stuck)
    cycle = path[seen[node]:]
    cycle.reverse()  # read in activation terms: each must come before the next
    return [*cycle, cycle[0]]


def activation_order(manifests: Mapping[str, Manifest]) -> OrderResult:
    """Order ``manifests`` for activation; unordered plugins go to ``blocked``.

    A plugin is blocked when a requirement is missing or has the wrong
    version, when it sits on a dependency cycle (the error names the cycle),
    or when something it must follow is blocked.
    """
    result = OrderResult()
    candidates = dict(manifests)
    # Requirements first: a blocked plugin is removed, which may block others.
    changed = True
    while changed:
        changed = False
        for pid, m in list(candidates.items()):
            blocked_deps = [r.id for r in m.relationships.requires if r.id in result.blocked]
            if blocked_deps:
                problems = [f"requires '{blocked_deps[0]}', which is blocked"]
            else:
                problems = requirement_problems(m, candidates)
            if problems:
                result.blocked[pid] = DependencyError(f"plugin '{pid}' {'; '.join(problems)}")
                del candidates[pid]
                changed = True
    after = _edges(candidates)
    waiting = {pid: len(deps) for pid, deps in after.items()}
    followers: dict[str, list[str]] = {pid: [] for pid in candidates}
    for pid, deps in after.items():
        for dep in deps:
            followers[dep].append(pid)
    ready = [(PRIORITY_RANK[candidates[p].load.priority], p) for p, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    while ready:
        _, pid = heapq.heappop(ready)
        result.order.append(pid)
        for follower in followers[pid]:
            waiting[follower] -= 1
            if waiting[follower] == 0:
                heapq.heappush(ready, (PRIORITY_RANK[candidates[follower].load.priority], follower))
    stuck = {pid for pid, n in waiting.items() if n > 0}
    for pid in sorted(stuck):
        cycle = _find_cycle(pid, after, stuck)
        if pid in cycle:
            message = f"plugin '{pid}' is on a dependency cycle: {' -> '.join(cycle)}"
        else:
            message = f"plugin '{pid}' must follow plugins on a dependency cycle: {' -> '.join(cycle)}"
        result.blocked[pid] = DependencyError(message)
    return result
