"""Attacks on the Python plugin sandbox by a plugin author who has read its source.

Every plugin here runs through the real ``PythonRuntime`` (RestrictedPython,
hostrt's policy, guards and budget) against a real ``ActivationContext`` over
a real ``Store(':memory:')`` and ``GrantManager``, or through ``hostrt.Host``
in a subprocess where an attack could kill the interpreter.

Each test checks that the attack is stopped with the documented error class
and code, and that nothing leaked: a secret is planted in the host's module
globals, on the gate class and in another plugin's ('victim') storage; it
must appear in no error, traceback, log record or stored value, the victim's
storage must be unchanged, and the host must still activate a fresh plugin.

Attacks that currently succeed are kept as ``xfail(strict=True)`` tests: each
one documents a hole, and turns into a failure (XPASS) once the hole is
closed so the marker can be removed. They do not repeat the attacks of
tests/test_python_sandbox.py and tests/test_python_runtime.py.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

import hostrt
import hostrt.runtimes.python as python_runtime
from hostrt.capabilities import Capability
from hostrt.context import ActivationContext
from hostrt.errors import (
    BudgetExceededError,
    HostrtError,
    PluginCompileError,
    PluginError,
    ResourceLimitError,
    SandboxViolationError,
)
from hostrt.grants import GrantManager
from hostrt.runtimes.base import PluginSource, RuntimeLimits
from hostrt.runtimes.pysandbox import facade as facade_module
from hostrt.runtimes.pysandbox.limits import MAX_BYTES, MAX_ITEMS, MAX_SOURCE_CHARS
from hostrt.runtimes.python import PythonRuntime
from hostrt.store import Store

from conftest import LogCapture

SECRET = "hostrt-attack-secret-" + uuid.uuid4().hex
HOSTRT_DIR = str(Path(hostrt.__file__).resolve().parent)
PLUGIN_IDS = ("probe", "victim", "fresh")


# ---------------------------------------------------------------------------
# the world every attack runs in
# ---------------------------------------------------------------------------


@dataclass
class World:
    store: Store
    grants: GrantManager

    def gate(self, plugin_id: str) -> ActivationContext:
        return ActivationContext(plugin_id=plugin_id, plugin_version="1.0.0", store=self.store, grants=self.grants)

    def stored(self, plugin_id: str, key: str) -> Any:
        text = self.store.kv_get(plugin_id, key)
        return None if text is None else json.loads(text)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """A store with grants for every plugin id used here, the secret planted
    in the runtime's and the facade's module globals and on the gate class,
    and the victim plugin's storage holding the secret."""
    monkeypatch.setattr(python_runtime, "_ATTACK_SECRET", SECRET, raising=False)
    monkeypatch.setattr(facade_module, "_ATTACK_SECRET", SECRET, raising=False)
    monkeypatch.setattr(ActivationContext, "_attack_secret", SECRET, raising=False)
    store = Store(":memory:")
    grants = GrantManager(store, lambda plugin_id: (Capability("storage"),) if plugin_id in PLUGIN_IDS else None)
    for plugin_id in PLUGIN_IDS:
        grants.grant(plugin_id, "storage")
    victim = ActivationContext(plugin_id="victim", plugin_version="1.0.0", store=store, grants=grants)
    victim.storage_set("token", SECRET)
    victim.close()
    yield World(store, grants)
    store.close()


@dataclass
class Outcome:
    error: HostrtError | None
    elapsed: float
    stored: dict[str, Any]
    records: list[logging.LogRecord] = field(default_factory=list)

    def text(self) -> str:
        """Everything the host could show, log or store about this run."""
        parts = [json.dumps(self.stored)]
        for record in self.records:
            parts += [record.getMessage(), str(getattr(record, "plugin_fields", ""))]
            if record.exc_info:
                parts.append(logging.Formatter().formatException(record.exc_info))
        if self.error is not None:
            parts += [self.error.message, getattr(self.error, "plugin_traceback", "")]
        return "\n".join(parts)


def write_source(root: Path, plugin_id: str, source: str, timeout_ms: int) -> PluginSource:
    folder = root / plugin_id
    folder.mkdir(parents=True, exist_ok=True)
    main = folder / "plugin.py"
    main.write_text(textwrap.dedent(source))
    return PluginSource(
        plugin_id, "1.0.0", folder.resolve(), main.resolve(), f"{plugin_id}/plugin.py",
        RuntimeLimits(timeout_ms=timeout_ms),
    )


async def run_plugin(
    root: Path, world: World, source: str, *, plugin_id: str = "probe", timeout_ms: int = 300,
    grace_s: float = 1.0, deactivate: bool = False,
) -> Outcome:
    """Load and activate (and optionally deactivate) one plugin against a
    real gate; collect its error, the time it took, its stored values and
    every hostrt log record."""
    capture = LogCapture()
    hostrt_logger = logging.getLogger("hostrt")
    old_level = hostrt_logger.level
    hostrt_logger.setLevel(logging.DEBUG)
    hostrt_logger.addHandler(capture)
    gate = world.gate(plugin_id)
    error: HostrtError | None = None
    loaded = None
    start = time.monotonic()
    try:
        loaded = await PythonRuntime(grace_s=grace_s).load(write_source(root, plugin_id, source, timeout_ms))
        await loaded.activate(gate)
        if deactivate:
            await loaded.deactivate()
    except HostrtError as exc:
        error = exc
    finally:
        elapsed = time.monotonic() - start
        if loaded is not None:
            await loaded.close()
        gate.close()
        hostrt_logger.removeHandler(capture)
        hostrt_logger.setLevel(old_level)
    stored = {key: world.stored(plugin_id, key) for key in world.store.kv_keys(plugin_id, "", limit=1000)}
    return Outcome(error, elapsed, stored, capture.records)


def attack(root: Path, world: World, source: str, **kwargs: Any) -> Outcome:
    return asyncio.run(run_plugin(root, world, source, **kwargs))


def activate_body(body: str) -> str:
    return "def activate(ctx):\n" + textwrap.indent(textwrap.dedent(body).strip("\n"), "    ") + "\n"


def fresh_plugin_works(root: Path, world: World) -> bool:
    world.store.kv_delete("fresh", "alive")
    source = activate_body("ctx.storage.set('alive', [ctx.plugin.id, ctx.storage.get('alive', 0)])")
    outcome = attack(root, world, source, plugin_id="fresh", timeout_ms=1000)
    return outcome.error is None and world.stored("fresh", "alive") == ["fresh", 0]


def assert_nothing_leaked(outcome: Outcome, root: Path, world: World) -> None:
    assert SECRET not in outcome.text(), "the secret leaked"
    if outcome.error is not None:
        error_text = outcome.error.message + outcome.error.plugin_traceback
        assert HOSTRT_DIR not in error_text and "site-packages" not in error_text
        assert str(root) not in error_text
        assert outcome.error.plugin_id == "probe"
    assert world.stored("victim", "token") == SECRET, "another plugin's storage changed"
    assert world.store.kv_keys("victim", "", limit=100) == ["token"]
    assert fresh_plugin_works(root, world), "the host could not activate a fresh plugin afterwards"


def assert_stopped(
    outcome: Outcome, root: Path, world: World, kind: type[PluginError], *fragments: str,
    within: float | None = None,
) -> None:
    """The attack failed with ``kind`` (and its code), quickly if asked, and
    left no trace."""
    assert isinstance(outcome.error, kind), f"expected {kind.__name__}, got {outcome.error!r}"
    assert outcome.error.code == kind.code
    for fragment in fragments:
        assert fragment in outcome.error.message, outcome.error.message
    if within is not None:
        assert outcome.elapsed < within, f"the plugin ran for {outcome.elapsed:.2f} s"
    assert_nothing_leaked(outcome, root, world)


# ---------------------------------------------------------------------------
# attacks the sandbox stops
# ---------------------------------------------------------------------------

#: The payload ends in a step the sandbox must refuse; the steps before it
#: show that facade functions called on other objects, and the values the
#: facade hands out, only ever act as this plugin (or are refused).
FACADE_ABUSE = """
def attempt(step):
    try:
        return step()
    except Exception:
        return 'refused'

Storage = attempt(lambda: type(ctx.storage))
seen = [
    attempt(lambda: Storage.get(ctx.log, 'token')),
    attempt(lambda: Storage.keys(ctx.settings)),
    attempt(lambda: Storage.set(ctx.log, 'mine', ['x'])),
    attempt(lambda: type(ctx).storage.fget(ctx).get('mine')),
]
# Values handed out are fresh copies: changing them changes nothing stored.
ctx.storage.set('copy', ['x'])
value = ctx.storage.get('copy')
value.append('changed')
listed = ctx.storage.keys()
listed.append('token')
seen.append([ctx.storage.get('copy'), 'token' in ctx.storage.keys()])
ctx.storage.set('seen', seen)
# The gate itself is behind names plugin code cannot spell.
gate = getattr(ctx.storage, '_ga' + 'te')
ctx.log.info(str(gate.storage_get('token')))
"""


def test_facade_functions_rebound_to_other_objects_stay_on_the_own_gate(tmp_path, world):
    outcome = attack(tmp_path, world, activate_body(FACADE_ABUSE))
    assert_stopped(outcome, tmp_path, world, SandboxViolationError, '"_gate" is an invalid attribute name')
    got, mine, copy = outcome.stored["seen"][:3], outcome.stored["seen"][3], outcome.stored["seen"][4]
    for value, own_result in zip(got, (None, [], None)):
        assert value in (own_result, "refused")
    assert mine in (["x"], None, "refused")
    assert copy == [["x"], False]
    assert outcome.stored.get("mine") in (None, ["x"])


def test_constructed_facades_cannot_name_another_plugin(tmp_path, world):
    body = """
    makers = (
        lambda: type(ctx.plugin)(None, 'victim', '1.0.0'),
        lambda: type(ctx.storage)(None, ctx, None),
        lambda: type(ctx)(None, ctx),
    )
    refused = 0
    for make in makers:
        try:
            ctx.log.info(str(make().get('token')))
        except Exception:
            refused += 1
    ctx.storage.set('refused', refused)
    type(ctx)(None, ctx.storage)
    """
    outcome = attack(tmp_path, world, activate_body(body))
    # Refused as a TypeError from the facade's constructor (E_PLUGIN), or by
    # the sandbox (E_FORBIDDEN) if type() stops handing out host classes.
    kind = SandboxViolationError if isinstance(outcome.error, SandboxViolationError) else PluginError
    assert_stopped(outcome, tmp_path, world, kind)
    if kind is PluginError:
        assert "TypeError: cannot create ctx objects" in outcome.error.message
    assert outcome.stored["refused"] == 3


def test_raising_host_error_classes_does_not_speak_for_another_plugin(tmp_path, world):
    outcome = attack(tmp_path, world, activate_body("raise CapabilityError('victim', 'storage', 'stolen')"))
    assert_stopped(outcome, tmp_path, world, PluginError, "CapabilityError")
    assert type(outcome.error) is PluginError and outcome.error.to_dict()["plugin"] == "probe"
    assert {getattr(r, "plugin_id", "probe") for r in outcome.records} <= {"probe"}


def test_generic_alias_forwarding_still_cannot_name_private_attributes(tmp_path, world):
    body = """
    import re, json
    try:
        GA = type(re.Pattern[str])  # types.GenericAlias forwards attribute reads to its origin
    except Exception:
        GA = None  # a sandbox that refuses it is fine too
    def wrap(target):
        return target if GA is None else GA(target, ())
    refused = 0
    for target, name in ((ctx.storage, '_gate'), (json.dumps, '__globals__'), (ctx, '__class__'), (ctx.log, 'gi_frame')):
        try:
            ctx.log.info(str(getattr(wrap(target), name)))
        except Exception:
            refused += 1
    ctx.storage.set('refused', refused)
    getattr(wrap(json.dumps), '__glob' + 'als__')['_ATTACK_SECRET']
    """
    outcome = attack(tmp_path, world, activate_body(body))
    assert_stopped(outcome, tmp_path, world, SandboxViolationError)
    # type() no longer hands out GenericAlias; were it reachable, the name check would refuse
    assert ("cannot create 'GenericAlias'" in outcome.error.message
            or '"__globals__" is an invalid attribute name' in outcome.error.message), outcome.error.message
    assert outcome.stored["refused"] == 4


def test_generator_finalisers_never_run_unbudgeted(tmp_path, world, monkeypatch):
    """A suspended generator freed after deactivation (today: on the event
    loop's thread, outside any entry) runs its ``finally`` block. Its first
    statement is the sandbox's budget check, which must refuse there; inside
    an entry the budget would stop the spin. Either way the host goes on and
    the write after the spin never happens."""
    seen: list[BaseException] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: seen.append(unraisable.exc_value))
    source = """
    class Holder:
        def __init__(self, gen):
            self.gen = gen

        def dispose(self):
            pass

    def late():
        try:
            yield 1
        finally:
            while True:
                pass
            print('ran past the budget')

    def activate(ctx):
        gen = late()
        next(gen)
        ctx.subscriptions.append(Holder(gen))
    """
    outcome = attack(tmp_path, world, source, deactivate=True)
    gc.collect()
    assert outcome.error is None or isinstance(outcome.error, BudgetExceededError), outcome.error
    assert outcome.elapsed < 2.0
    assert not any("ran past the budget" in r.getMessage() for r in outcome.records)
    assert all(type(exc).__name__ == "BudgetInterrupt" for exc in seen), seen
    assert_nothing_leaked(outcome, tmp_path, world)


BUDGET_EVASIONS = {
    "re.sub callback": "import re\nre.sub('a', lambda m: str(sum(range(10**4))), 'a' * 10**7)",
    "json object_hook": "import json\njson.loads('[' + '{},' * 3000000 + '{}]', object_hook=lambda d: [x for x in range(50)])",
    "functools.reduce": "import functools\nfunctools.reduce(lambda a, b: a ^ b, range(10**12))",
    "heapq key": "import heapq\nheapq.nsmallest(3, range(10**7), key=lambda x: -x)",
    "itertools.accumulate func": "import itertools\nfor x in itertools.accumulate(range(10**12), lambda a, b: b):\n    pass",
    "max over iter(callable, sentinel)": "max(iter(lambda: 1, 2))",
    "deque consuming a generator": "import collections\ncollections.deque((x for x in range(10**12)), maxlen=1)",
    "finally: continue": "while True:\n    try:\n        pass\n    finally:\n        continue",
    "generator re-yielding after throw": (
        "def g():\n    while True:\n        try:\n            yield 1\n        except BaseException:\n            pass\n"
        "it = g()\nnext(it)\nwhile True:\n    it.throw(ValueError)"
    ),
    "Counter from a generator": "import collections\ncollections.Counter(x % 7 for x in range(10**12))",
}


@pytest.mark.parametrize("name", list(BUDGET_EVASIONS))
def test_callbacks_and_c_consumers_stop_on_time(tmp_path, world, name):
    body = BUDGET_EVASIONS[name] + "\nctx.storage.set('finished', True)"
    outcome = attack(tmp_path, world, activate_body(body), timeout_ms=200)
    assert_stopped(outcome, tmp_path, world, BudgetExceededError, "time budget of 200 ms", within=0.9)
    assert "finished" not in outcome.stored


GROWTH_REFUSALS = [
    "b = bytearray(b'x')\nb *= 10**10",
    "import collections\ncollections.deque([0]) * 10**10",
    "(b'\\t' * 100).expandtabs(10**8)",
    "(b'x',) * 10**10",
    "import json\njson.dumps([], separators=(',' * 100, ':'))",
    "import textwrap\ntextwrap.indent('\\n' * 500000, 'x' * 1000)",
    "import itertools\nitertools.combinations(range(20000), 15000)",
    "import collections\ncollections.OrderedDict.fromkeys(range(10**10))",
]


@pytest.mark.parametrize("expression", GROWTH_REFUSALS)
def test_growth_operations_are_refused_before_allocating(tmp_path, world, expression):
    outcome = attack(tmp_path, world, activate_body(expression), timeout_ms=2000)
    assert_stopped(outcome, tmp_path, world, ResourceLimitError, "exceed", within=2.0)


# ---------------------------------------------------------------------------
# holes: escapes from the name and special-method policy
# ---------------------------------------------------------------------------

REAL_TYPE = """
import re
GA = type(re.Pattern[str])  # type() hands out the real types.GenericAlias
try:
    type.nothing_here  # TypeProxy.__getattr__ -> getattr(<real type>, name)
except AttributeError as exc:
    failed = exc
real_type = GA(failed, ()).obj  # GenericAlias forwards 'obj' past the exception-field guard
Liar = real_type('Liar', (), {'__index__': lambda self: 100000000})
ctx.storage.set('escaped', [repr(real_type), len('a' * Liar())])
"""


def test_the_real_type_builtin_is_unreachable(tmp_path, world):
    outcome = attack(tmp_path, world, activate_body(REAL_TYPE), timeout_ms=3000)
    assert "escaped" not in outcome.stored, outcome.stored.get("escaped")
    assert_stopped(outcome, tmp_path, world, SandboxViolationError)


GA_WRITE = """
import re, json
GA = type(re.Pattern[str])
GA(lambda: type(ctx), ())()  # GenericAlias.__call__ sets __orig_class__ on what it returns
GA(lambda: json.JSONDecodeError, ())()
"""


def test_shared_classes_cannot_be_written_through_generic_alias(tmp_path, world):
    try:
        outcome = attack(tmp_path, world, activate_body(GA_WRITE))
        written = [cls.__name__ for cls in (facade_module.Context, json.JSONDecodeError) if "__orig_class__" in vars(cls)]
        assert written == [], f"plugin code wrote to {written}"
        assert_stopped(outcome, tmp_path, world, SandboxViolationError, "cannot create 'GenericAlias'")
    finally:
        for cls in (facade_module.Context, json.JSONDecodeError):
            if "__orig_class__" in vars(cls):
                delattr(cls, "__orig_class__")


# ---------------------------------------------------------------------------
# holes: the time budget
# ---------------------------------------------------------------------------

UNTICKED_ITERATOR = """
import itertools
RealChain = type(itertools.chain())  # the real itertools.chain, not the counted wrapper
rows = [0] * 1000000
0.5 in RealChain.from_iterable([rows] * 90)  # 90 million comparisons, no tick
"""


def test_real_iterator_types_are_out_of_reach(tmp_path, world):
    # type() of an iterator is an opaque stand-in: nothing to call, no attributes
    outcome = attack(tmp_path, world, activate_body(UNTICKED_ITERATOR), timeout_ms=200, grace_s=10.0)
    assert_stopped(outcome, tmp_path, world, PluginError, "has no attribute 'from_iterable'", within=0.6)


MEDIUM_C_CALLS = """
rows = [0] * 1000000
for attempt in range(120):  # 120 ticks: fewer than one clock read
    rows.count(0.5)
"""


@pytest.mark.xfail(strict=False, reason="the clock is read once per 256 ticks, whatever each tick's C work costs")
def test_a_short_loop_of_slow_c_calls_stops_on_time(tmp_path, world):
    outcome = attack(tmp_path, world, activate_body(MEDIUM_C_CALLS), timeout_ms=200, grace_s=10.0)
    assert_stopped(outcome, tmp_path, world, BudgetExceededError, within=0.6)


LATE_WRITE = """
([0] * 10**7).count(0.5)  # one long C call, ~0.25 s (regexes that backtrack longer are refused)
ctx.storage.set('late', 'written after the deadline')
"""


def test_ctx_calls_after_the_deadline_are_refused(tmp_path, world):
    outcome = attack(tmp_path, world, activate_body(LATE_WRITE), timeout_ms=100, grace_s=10.0)
    assert isinstance(outcome.error, BudgetExceededError), outcome.error
    assert "late" not in outcome.stored, "a storage write landed after the budget was spent"
    assert_stopped(outcome, tmp_path, world, BudgetExceededError)


STRETCHED_DEACTIVATE = """
import time

class Slow:
    def dispose(self):
        start = time.monotonic()
        while time.monotonic() - start < 0.04:  # just under the 50 ms error-formatting grace
            pass
        raise ValueError('slow')

def activate(ctx):
    for i in range(30):
        ctx.subscriptions.append(Slow())
"""


def test_failing_disposers_cannot_stretch_the_deactivate_budget(tmp_path, world):
    outcome = attack(tmp_path, world, STRETCHED_DEACTIVATE, timeout_ms=200, grace_s=10.0, deactivate=True)
    assert_stopped(outcome, tmp_path, world, BudgetExceededError, within=0.6)


PURE_PYTHON_STDLIB = {
    "textwrap long word": "import textwrap\ntextwrap.wrap('a' * 500000, width=1)",
    "punycode codec": "''.join([chr(256 + i) for i in range(3600)]).encode('punycode')",
    "json.dumps with indent": "import json\njson.dumps([[0]] * 1200000, indent=1)",
}


@pytest.mark.xfail(strict=False, reason="pure-Python stdlib code (textwrap, codecs, json's indent encoder) never ticks")
@pytest.mark.parametrize("name", list(PURE_PYTHON_STDLIB))
def test_pure_python_stdlib_helpers_stop_on_time(tmp_path, world, name):
    outcome = attack(tmp_path, world, activate_body(PURE_PYTHON_STDLIB[name]), timeout_ms=200, grace_s=10.0)
    assert_stopped(outcome, tmp_path, world, BudgetExceededError, within=0.6)


def test_compiling_a_large_plugin_is_bounded_in_time(tmp_path, world, monkeypatch):
    # Compiling is host work with a limit of its own (COMPILE_TIMEOUT_S, 10 s
    # in production); lowered here so the test is quick. Past it the plugin
    # is stopped instead of holding the host's activation.
    monkeypatch.setattr(python_runtime, "COMPILE_TIMEOUT_S", 0.3)
    source = "def unused(b, c, d):\n" + "    a = b + c * d\n" * 40000 + activate_body("pass")
    outcome = attack(tmp_path, world, source, timeout_ms=200, grace_s=0.3)
    assert isinstance(outcome.error, BudgetExceededError), outcome.error
    assert "compiling took longer" in outcome.error.message
    assert outcome.elapsed < 1.5, f"compiling held the activation for {outcome.elapsed:.2f} s"
    # The compiler cannot be interrupted: the abandoned thread finishes the
    # compile on its own (holding the GIL for stretches) before the host is
    # judged on a fresh plugin's one-second budget.
    deadline = time.monotonic() + 60
    while any(t.name.startswith("hostrt-py-probe") and t.is_alive() for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the abandoned compile never finished"
        time.sleep(0.05)
    assert_nothing_leaked(outcome, tmp_path, world)


def test_oversized_plugin_source_is_refused_before_compiling(tmp_path, world):
    source = activate_body("pass") + "\n" + "# padding\n" * (MAX_SOURCE_CHARS // 10 + 1)
    outcome = attack(tmp_path, world, source)
    assert isinstance(outcome.error, PluginCompileError), outcome.error
    assert str(MAX_SOURCE_CHARS) in outcome.error.message
    assert_nothing_leaked(outcome, tmp_path, world)


# ---------------------------------------------------------------------------
# holes: memory
# ---------------------------------------------------------------------------

SHARED_TEXT = {
    "repr": "repr(a)",
    "f-string": "f'{a}'",
    "str": "str(a)",
    "ascii": "ascii(a)",
    "json.dumps": "json.dumps(a)",
}


@pytest.mark.parametrize("conversion", list(SHARED_TEXT))
def test_text_of_shared_containers_is_size_checked(tmp_path, world, conversion):
    body = f"""
    import json
    a = ['x' * 1100]
    for i in range(16):  # 17 objects, 2**16 references
        a = [a, a]
    ctx.storage.set('size', len({SHARED_TEXT[conversion]}))
    """
    outcome = attack(tmp_path, world, activate_body(body), timeout_ms=5000)
    assert outcome.stored.get("size") is None, f"built {outcome.stored.get('size')} characters"
    assert_stopped(outcome, tmp_path, world, ResourceLimitError, str(MAX_BYTES))


TEXT_OPERATIONS = {
    "ascii()": "ascii('\\x00' * 20000000)",
    "ascii() of non-ASCII text": "ascii('\\u20ac' * 10000000)",
    "bytes.hex(sep)": "(b'\\x00' * 25000000).hex(':')",
    "re.escape": "import re\nre.escape('.' * 35000000)",
    "str.upper": "('\\ufb03' * 25000000).upper()",
    "str.upper of an expression": "('\\ufb03' * 25000000 + 'x').upper()",
    "str.lower fetched first": "f = ('\\u0130' * 25000000).lower\nf()",
    "json.dumps indent nesting": "import json\na = [0] * 1000\nfor i in range(8):\n    a = [a, a]\njson.dumps(a, indent=64)",
    "json.dumps separators": "import json\njson.dumps([0] * 2000000, separators=(' ' * 60, ':'))",
    "re.sub with a callable": "import re\nbig = 'b' * 60000000\nre.sub('a', lambda m: big, 'aa')",
    "re.sub with a callable, many matches": "import re\nbig = 'b' * 1000000\nre.sub('a', lambda m: big, 'a' * 1000)",
}

@pytest.mark.parametrize("name", list(TEXT_OPERATIONS))
def test_single_text_operations_respect_the_size_limit(tmp_path, world, name):
    lines = TEXT_OPERATIONS[name].split("\n")
    body = "\n".join(lines[:-1] + ["ctx.storage.set('size', len(" + lines[-1] + "))"])
    outcome = attack(tmp_path, world, activate_body(body), timeout_ms=5000)
    assert outcome.stored.get("size") is None, f"built {outcome.stored.get('size')} characters"
    assert_stopped(outcome, tmp_path, world, ResourceLimitError, str(MAX_BYTES))


ITEM_BUILDERS = {
    "slice assignment": "x = []\nx[:] = b'\\x00' * 20000000",
    "re.split with groups": "import re\nx = re.split('()()()()()()()()()', 'a' * 2000000)",
    "json.loads": "import json\nx = json.loads('[' + '0,' * 20000000 + '0]')",
}


@pytest.mark.parametrize("name", list(ITEM_BUILDERS))
def test_containers_built_in_one_c_call_respect_the_item_limit(tmp_path, world, name):
    body = ITEM_BUILDERS[name] + "\nctx.storage.set('items', len(x))"
    outcome = attack(tmp_path, world, activate_body(body), timeout_ms=5000)
    assert outcome.stored.get("items") is None, f"built {outcome.stored.get('items')} items"
    assert_stopped(outcome, tmp_path, world, ResourceLimitError, str(MAX_ITEMS))


STDLIB_SIZES = {
    "hmac digestmod block_size": """
        import hmac
        class Digest:
            block_size = 100000000
            digest_size = 16
            def update(self, data):
                ctx.storage.set('size', len(data))
            def copy(self):
                return self
            def digest(self):
                return b'0' * 16
        hmac.new(b'key', None, Digest)
    """,
    "textwrap tabsize": """
        import textwrap
        ctx.storage.set('size', len(textwrap.fill('\\t' * 1000 + 'a', tabsize=100000, width=10**9)))
    """,
}


STDLIB_REFUSALS = {
    "hmac digestmod block_size": (PluginError, "hmac: digestmod must be one of"),
    "textwrap tabsize": (ResourceLimitError, "option 'tabsize' must be an int from 0 to 64"),
}


@pytest.mark.parametrize("name", list(STDLIB_SIZES))
def test_stdlib_sizes_taken_from_plugin_input_are_checked(tmp_path, world, name):
    # The wrappers accept only known options within bounds (textwrap) and
    # only the real hash constructors or names (hmac), so no size comes from
    # a plugin object.
    outcome = attack(tmp_path, world, activate_body(STDLIB_SIZES[name]), timeout_ms=5000)
    assert outcome.stored.get("size") is None, f"built {outcome.stored.get('size')} bytes"
    kind, fragment = STDLIB_REFUSALS[name]
    assert_stopped(outcome, tmp_path, world, kind, fragment)


# ---------------------------------------------------------------------------
# holes: crashing the host, forging identity in its log
# ---------------------------------------------------------------------------

HOST_SCRIPT = """
import os, resource, sys
if not os.environ.get("ATTACK_STACK_SET"):
    # Give the host's main thread the usual 8 MiB stack, whatever the
    # runner's `ulimit -s` says: the limit applies from the next exec.
    _soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
    size = 8 * 1024 * 1024 if hard == resource.RLIM_INFINITY else min(8 * 1024 * 1024, hard)
    resource.setrlimit(resource.RLIMIT_STACK, (size, hard))
    os.environ["ATTACK_STACK_SET"] = "1"
    os.execv(sys.executable, [sys.executable] + sys.argv)
import asyncio, json, logging
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
import hostrt.runtimes.python
from hostrt import Host
hostrt.runtimes.python._ATTACK_SECRET = sys.argv[2]

async def main():
    async with Host(sys.argv[1]) as host:
        await host.discover()
        for plugin_id in ("deep", "fresh"):
            host.grants.grant_requested(plugin_id)
        record = await host.activate("deep")
        print("DEEP", record.state.value, flush=True)
        record = await host.deactivate("deep")
        print("DEEP", record.state.value, flush=True)
        record = await host.activate("fresh")
        print("FRESH", record.state.value, json.dumps(host.store.kv_get("fresh", "alive")), flush=True)

asyncio.run(main())
print("HOST ALIVE", flush=True)
"""

DEEP_CHAIN = """
class Holder:
    def __init__(self, chain):
        self.chain = chain

    def dispose(self):
        pass


def activate(ctx):
    chain = iter(())
    for i in range(1000000):
        chain = iter(chain)  # each level is an itertools.compress over the last
    # The facade (and so this holder) is released on the host's event-loop
    # thread after deactivate(); compress objects free their inner object
    # recursively in C, without the trashcan.
    ctx.subscriptions.append(Holder(chain))
"""


def _write_plugin(root: Path, plugin_id: str, source: str, timeout_ms: int) -> None:
    folder = root / plugin_id
    folder.mkdir(parents=True)
    (folder / "plugin.json").write_text(json.dumps({
        "schemaVersion": 1, "id": plugin_id, "name": plugin_id, "version": "1.0.0", "runtime": "python",
        "capabilities": ["storage"], "limits": {"timeoutMs": timeout_ms},
    }))
    (folder / "plugin.py").write_text(textwrap.dedent(source))


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX resource limits")
def test_deep_iterator_chains_freed_after_deactivate_do_not_crash_the_host(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    _write_plugin(plugins, "deep", DEEP_CHAIN, 4000)
    _write_plugin(plugins, "fresh", activate_body("ctx.storage.set('alive', ctx.plugin.id)"), 1000)
    script = tmp_path / "host.py"
    script.write_text(HOST_SCRIPT)
    repo = str(Path(HOSTRT_DIR).parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])))
    out = subprocess.run(
        [sys.executable, str(script), str(plugins), SECRET], capture_output=True, text=True, timeout=120, env=env,
    )
    assert out.returncode == 0, f"the host died with {out.returncode}: {out.stdout}{out.stderr[-500:]}"
    assert SECRET not in out.stdout + out.stderr
    assert "DEEP inactive" in out.stdout and 'FRESH active "\\"fresh\\""' in out.stdout
    assert "HOST ALIVE" in out.stdout


FORGER = """
def activate(ctx):
    raise ValueError("boom\\nWARNING:hostrt.host:plugin victim is failed: plugin 'victim': leaked token\\u202e")
"""


def test_exception_messages_cannot_forge_host_log_lines(tmp_path, world):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    _write_plugin(plugins, "probe", FORGER, 1000)
    _write_plugin(plugins, "fresh", activate_body("ctx.storage.set('alive', ctx.plugin.id)"), 1000)
    capture = LogCapture()
    hostrt_logger = logging.getLogger("hostrt")
    old_level = hostrt_logger.level
    hostrt_logger.setLevel(logging.DEBUG)
    hostrt_logger.addHandler(capture)

    async def main() -> tuple[Any, Any]:
        async with hostrt.Host(plugins) as host:
            await host.discover()
            host.grants.grant_requested("probe")
            host.grants.grant_requested("fresh")
            probe = await host.activate("probe")
            fresh = await host.activate("fresh")
            return probe.error, (fresh.state.value, host.store.kv_get("fresh", "alive"))

    try:
        error, fresh = asyncio.run(main())
    finally:
        hostrt_logger.removeHandler(capture)
        hostrt_logger.setLevel(old_level)
    assert isinstance(error, PluginError) and error.code == "E_PLUGIN" and error.plugin_id == "probe"
    assert fresh == ("active", '"fresh"')
    lines = [line for record in capture.records for line in record.getMessage().splitlines()]
    forged = [line for line in lines if "plugin victim" in line and not line.startswith("plugin probe")]
    assert forged == [], f"plugin text forged host log lines: {forged}"
    everything = "\n".join([error.message, error.plugin_traceback] + [r.getMessage() for r in capture.records])
    assert SECRET not in everything and HOSTRT_DIR not in error.message + error.plugin_traceback
    assert error.message.isprintable(), repr(error.message)
