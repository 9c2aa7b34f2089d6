"""The Python plugin sandbox, attacked and exercised through the real runtime.

Every plugin here runs through ``PythonRuntime`` (real RestrictedPython, the
real policy, guards and budget; no mocks) against the real
``ActivationContext`` over a real SQLite store, subclassed only to record
the log calls and disposals the tests look at.

Escape tests check two things: the attempt fails with the right error class,
and nothing leaked. For the second, a secret is planted where a successful
escape would find it (module globals the runtime's own frames can reach, the
``ctx`` facade's module, the gate's private attribute, another plugin's
storage), and every payload is written so that, were its guard missing, it
would find the secret and log it. The secret must then appear in no log
record, no error message and no traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import textwrap
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import hostrt
import hostrt.runtimes.python as python_runtime
from hostrt.errors import (
    BudgetExceededError,
    HostrtError,
    PluginCompileError,
    PluginError,
    ResourceLimitError,
    SandboxViolationError,
)
from hostrt.runtimes.base import PluginSource, RuntimeLimits
from hostrt.runtimes.pysandbox import facade as facade_module
from hostrt.runtimes.python import PythonRuntime
from hostrt.store import Store

from conftest import LogCapture, RecordingGate

SECRET = "hostrt-secret-" + uuid.uuid4().hex
HOSTRT_DIR = str(Path(hostrt.__file__).resolve().parent)


@dataclass
class Outcome:
    error: HostrtError | None
    gate: RecordingGate
    elapsed: float
    records: list[logging.LogRecord] = field(default_factory=list)

    def text(self) -> str:
        """Everything the host could show or log about this run."""
        parts = [repr(self.gate.logs)]
        parts += [r.getMessage() for r in self.records]
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


async def load_and_activate(
    root: Path, source: str, *, plugin_id: str = "probe", timeout_ms: int = 1000,
    store: Store | None = None, grace_s: float = 1.0,
) -> Outcome:
    gate = RecordingGate(plugin_id, store, secret=SECRET)
    capture = LogCapture()
    logging.getLogger("hostrt").addHandler(capture)
    start = time.monotonic()
    error: HostrtError | None = None
    loaded = None
    try:
        loaded = await PythonRuntime(grace_s=grace_s).load(write_source(root, plugin_id, source, timeout_ms))
        await loaded.activate(gate)
    except HostrtError as exc:
        error = exc
    finally:
        elapsed = time.monotonic() - start
        if loaded is not None:
            await loaded.close()
        logging.getLogger("hostrt").removeHandler(capture)
    return Outcome(error, gate, elapsed, capture.records)


def run(root: Path, source: str, **kwargs: Any) -> Outcome:
    return asyncio.run(load_and_activate(root, source, **kwargs))


def activate_body(body: str) -> str:
    return "def activate(ctx):\n" + textwrap.indent(textwrap.dedent(body).strip("\n"), "    ") + "\n"


@pytest.fixture
def planted(monkeypatch: pytest.MonkeyPatch) -> Store:
    """Plant the secret where escapes would look, and return a shared store
    in which another plugin ('victim') keeps it too."""
    monkeypatch.setattr(python_runtime, "_TEST_SECRET", SECRET, raising=False)
    monkeypatch.setattr(facade_module, "_TEST_SECRET", SECRET, raising=False)
    store = Store(":memory:")
    store.kv_set("victim", "token", json.dumps(SECRET), quota_bytes=1 << 20)
    yield store
    store.close()


def assert_refused(outcome: Outcome, kind: type[HostrtError], *fragments: str) -> None:
    assert isinstance(outcome.error, kind), f"expected {kind.__name__}, got {outcome.error!r}"
    for fragment in fragments:
        assert fragment in outcome.error.message, outcome.error.message
    assert SECRET not in outcome.text(), "the secret leaked"
    assert outcome.error.file == "probe/plugin.py"
    error_text = outcome.error.message + outcome.error.plugin_traceback
    assert HOSTRT_DIR not in error_text and "site-packages" not in error_text


# ---------------------------------------------------------------------------
# escapes: class hierarchy, frames, tracebacks
# ---------------------------------------------------------------------------

SUBCLASS_WALK = """
for cls in ().__class__.__bases__[0].__subclasses__():
    g = getattr(getattr(cls, '__init__', None), '__globals__', None)
    if g and 'sys' in g:
        ctx.log.info(g['sys'].modules['hostrt.runtimes.python']._TEST_SECRET)
        break
"""

SUBCLASS_WALK_COMPUTED = """
cls = getattr((), '_' + '_class__')
base = getattr(cls, '__ba' + 'ses__')[0]
for sub in getattr(base, '__subcl' + 'asses__')():
    g = getattr(getattr(sub, '__init__', None), '__globals__', None)
    if g and 'sys' in g:
        ctx.log.info(getattr(g['sys'].modules['hostrt.runtimes.python'], '_TEST_' + 'SECRET'))
        break
"""

MRO_WALK_COMPILED = """
for sub in type(()).mro()[-1].__subclasses__():
    ctx.log.info(str(sub))
"""

MRO_WALK_COMPUTED = """
top = getattr(type(()), 'm' + 'ro')()[-1]
for sub in getattr(top, '__subclasses__')():
    ctx.log.info(str(sub))
"""


def test_subclass_walking_is_refused_at_compile_time(tmp_path, planted):
    outcome = run(tmp_path, activate_body(SUBCLASS_WALK), store=planted)
    assert_refused(outcome, PluginCompileError, '"__class__" is an invalid attribute name')
    assert outcome.error.line == 2 and outcome.error.column == 19


def test_subclass_walking_with_computed_names_is_refused_at_run_time(tmp_path, planted):
    outcome = run(tmp_path, activate_body(SUBCLASS_WALK_COMPUTED), store=planted)
    assert_refused(outcome, SandboxViolationError, '"__class__" is an invalid attribute name')
    assert outcome.error.line == 2


def test_type_mro_is_refused_literally_and_by_computed_name(tmp_path, planted):
    outcome = run(tmp_path, activate_body(MRO_WALK_COMPILED), store=planted)
    assert_refused(outcome, PluginCompileError, '"mro" is a restricted name')
    outcome = run(tmp_path, activate_body(MRO_WALK_COMPUTED), store=planted)
    assert_refused(outcome, SandboxViolationError, '"mro" is a restricted name')


GENERATOR_FRAME = """
def gen():
    frame = g.gi_frame.f_back
    while frame is not None:
        if '_TEST_SECRET' in frame.f_globals:
            yield frame.f_globals['_TEST_SECRET']
        frame = frame.f_back
g = gen()
for found in g:
    ctx.log.info(found)
"""

GENERATOR_FRAME_COMPUTED = """
def gen():
    frame = getattr(getattr(g, 'gi_' + 'frame'), 'f_' + 'back')
    while frame is not None:
        g_ = getattr(frame, 'f_glob' + 'als')
        if '_TEST_SECRET' in g_:
            yield g_['_TEST_SECRET']
        frame = getattr(frame, 'f_back')
g = gen()
for found in g:
    ctx.log.info(found)
"""


def test_generator_frames_are_refused(tmp_path, planted):
    outcome = run(tmp_path, activate_body(GENERATOR_FRAME), store=planted)
    assert_refused(outcome, PluginCompileError, '"gi_frame" is a restricted name')
    outcome = run(tmp_path, activate_body(GENERATOR_FRAME_COMPUTED), store=planted)
    assert_refused(outcome, SandboxViolationError, '"gi_frame" is a restricted name')
    assert outcome.error.line == 3


@pytest.mark.parametrize(
    "expression, name",
    [
        ("g.gi_code.co_consts", "gi_code"),
        ("g.gi_yieldfrom", "gi_yieldfrom"),
        ("g.cr_frame.f_globals", "cr_frame"),
        ("g.ag_frame", "ag_frame"),
        ("g.f_back", "f_back"),
        ("g.tb_frame", "tb_frame"),
    ],
)
def test_internal_attributes_are_refused_at_compile_time(tmp_path, planted, expression, name):
    outcome = run(tmp_path, activate_body(f"def gen():\n    yield 1\ng = gen()\nctx.log.info(str({expression}))"), store=planted)
    assert_refused(outcome, PluginCompileError, f'"{name}" is a restricted name')


def test_coroutines_cannot_exist(tmp_path, planted):
    source = "async def coro():\n    return 1\n\n" + activate_body("c = coro()\nctx.log.info(str(c.cr_frame.f_globals))")
    outcome = run(tmp_path, source, store=planted)
    assert_refused(outcome, PluginCompileError, "async functions are not supported")
    assert outcome.error.line == 1


TRACEBACK_FRAME = """
try:
    1 / 0
except ZeroDivisionError as exc:
    frame = exc.__traceback__.tb_frame
    while frame is not None:
        if '_TEST_SECRET' in frame.f_globals:
            ctx.log.info(frame.f_globals['_TEST_SECRET'])
        frame = frame.f_back
"""

TRACEBACK_FRAME_COMPUTED = """
try:
    1 / 0
except ZeroDivisionError as exc:
    tb = getattr(exc, '__trace' + 'back__')
    frame = getattr(tb, 'tb_' + 'frame')
    ctx.log.info(str(getattr(frame, 'f_globals').get('_TEST_SECRET')))
"""


def test_traceback_frames_from_caught_exceptions_are_refused(tmp_path, planted):
    outcome = run(tmp_path, activate_body(TRACEBACK_FRAME), store=planted)
    assert_refused(outcome, PluginCompileError, '"__traceback__" is an invalid attribute name')
    outcome = run(tmp_path, activate_body(TRACEBACK_FRAME_COMPUTED), store=planted)
    assert_refused(outcome, SandboxViolationError, '"__traceback__" is an invalid attribute name')


def test_exception_obj_field_is_refused(tmp_path, planted):
    body = """
    import json
    try:
        json.nothing_here
    except AttributeError as exc:
        ctx.log.info(str(exc.obj))
    """
    outcome = run(tmp_path, activate_body(body), store=planted)
    assert_refused(outcome, SandboxViolationError, "'obj' field of exceptions")


def test_plugin_set_exception_fields_stay_readable(tmp_path):
    body = """
    class Failed(Exception):
        def __init__(self, name):
            self.name = name
    try:
        raise Failed('mine')
    except Failed as exc:
        ctx.storage.set('name', exc.name)
    """
    outcome = run(tmp_path, activate_body(body))
    assert outcome.error is None
    assert outcome.gate.storage_get("name") == "mine"


# ---------------------------------------------------------------------------
# escapes: format strings
# ---------------------------------------------------------------------------

FORMAT_ATTACKS = [
    "'{0.__class__.__init__.__globals__[_TEST_SECRET]}'.format(ctx)",
    "'{c.__class__.__init__.__globals__[_TEST_SECRET]}'.format_map({'c': ctx})",
    "str.format('{0.__class__.__init__.__globals__[_TEST_SECRET]}', ctx)",
    "getattr('{0.__class__.__init__.__globals__[_TEST_SECRET]}', 'format')(ctx)",
    "'{0.log.__class__.__init__.__globals__[_TEST_SECRET]}'.format(ctx)",
    "'{:{}}'.format(1, '{0.__class__}')",
]


@pytest.mark.parametrize("expression", FORMAT_ATTACKS)
def test_format_strings_cannot_read_attributes(tmp_path, planted, expression):
    outcome = run(tmp_path, activate_body(f"ctx.log.info({expression})"), store=planted)
    if "'{:{}}'" in expression:
        # The nested spec is formatted as a width, never parsed as a field.
        assert outcome.error is not None and SECRET not in outcome.text()
        return
    assert_refused(outcome, SandboxViolationError, "attribute access in format fields")


def test_str_subclass_and_super_cannot_reach_the_raw_format(tmp_path, planted):
    body = """
    class Sneaky(str):
        def leak(self, target):
            return super().format(target)
    fmt = Sneaky('{0.__class__.__init__.__globals__[_TEST_SECRET]}')
    ctx.log.info(fmt.leak(ctx))
    """
    outcome = run(tmp_path, activate_body(body), store=planted)
    assert_refused(outcome, SandboxViolationError, "attribute access in format fields")
    outcome = run(tmp_path, activate_body(body.replace("super().format(target)", "self.format(target)")), store=planted)
    assert_refused(outcome, SandboxViolationError, "attribute access in format fields")


def test_string_formatter_is_not_importable(tmp_path, planted):
    body = """
    import string
    f = string.Formatter()
    ctx.log.info(f.vformat('{0.__class__.__init__.__globals__[_TEST_SECRET]}', (ctx,), {}))
    """
    outcome = run(tmp_path, activate_body(body), store=planted)
    assert_refused(outcome, PluginError, "module 'string' has no attribute 'Formatter'")
    outcome = run(tmp_path, activate_body("from string import Formatter"), store=planted)
    assert_refused(outcome, PluginError, "cannot import name 'Formatter'")


def test_format_item_access_still_works(tmp_path):
    body = """
    data = {'who': 'world', 'n': [1, 2, 3]}
    ctx.storage.set('a', '{0[who]} {0[n][1]} {1:>5}|{2!r}'.format(data, 'x', 'q'))
    ctx.storage.set('b', '{who}-{n}'.format_map({'who': 'w', 'n': 4}))
    ctx.storage.set('c', f"{data['who']:^9}|{3.14159:.2f}")
    """
    outcome = run(tmp_path, activate_body(body))
    assert outcome.error is None
    assert outcome.gate.storage_get("a") == "world 2     x|'q'"
    assert outcome.gate.storage_get("b") == "w-4"
    assert outcome.gate.storage_get("c") == "  world  |3.14"


# ---------------------------------------------------------------------------
# escapes: names built at run time, Unicode, decorators, guard shadowing
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    [
        "getattr(ctx.storage, '_' + 'gate')",
        "getattr(ctx.storage, '_g' 'ate')",
        "getattr(ctx, '__cl' 'ass__')",
        "getattr(ctx.storage, '\\uff3fgate')",
        "getattr(ctx.storage, chr(95) + 'gate')",
        "hasattr(ctx.storage, '_gate') and ctx.storage",
    ],
)
def test_underscore_names_built_at_run_time_are_refused(tmp_path, planted, expression):
    outcome = run(tmp_path, activate_body(f"ctx.log.info(str(getattr({expression}, '_sec' + 'ret')))"), store=planted)
    if outcome.error is not None and isinstance(outcome.error, PluginCompileError):
        pytest.fail(f"compile error instead of a run-time refusal: {outcome.error.message}")
    assert_refused(outcome, SandboxViolationError, "is an invalid attribute name")


@pytest.mark.parametrize(
    "source_line",
    [
        "ctx.log.info(str(ctx.storage._\uff47\uff41\uff54\uff45._secret))",  # fullwidth "gate"
        "ctx.log.info(str(ctx.storage.\uff3fgate._secret))",  # fullwidth low line
        "ctx.log.info(str(\uff43\uff54\uff58.__\uff43\uff4c\uff41\uff53\uff53__))",  # ｃｔｘ.__ｃｌａｓｓ__
    ],
)
def test_nfkc_identifiers_are_checked_after_normalisation(tmp_path, planted, source_line):
    outcome = run(tmp_path, activate_body(source_line), store=planted)
    # The parser folds compatibility characters (NFKC) before the policy
    # sees a name; the fullwidth low line is not even an identifier character.
    assert_refused(outcome, PluginCompileError)
    assert "is an invalid attribute name" in outcome.error.message or "invalid character" in outcome.error.message


@pytest.mark.parametrize("decorator", ["eval", "exec", "globals", "vars", "compile", "open", "dir", "locals", "memoryview", "setattr", "id"])
def test_decorators_cannot_apply_forbidden_builtins(tmp_path, planted, decorator):
    body = f"""
    @{decorator}
    def payload():
        return "import sys"
    ctx.log.info(str(payload))
    """
    outcome = run(tmp_path, activate_body(body), store=planted)
    assert_refused(outcome, PluginError, "NameError", f"'{decorator}' is not defined")


SPIN = "n = 0\nwhile n < 30000000:\n    n += 1\n"


def _in_function(header: str, call: str) -> str:
    return header + "\n" + textwrap.indent(SPIN, "    ") + call + "\n" + activate_body("pass")


#: Each source rebinds or shadows the hidden tick function with something
#: that does not tick, then spins in that scope (CVE-2026-55830 used
#: positional-only parameters this way against RestrictedPython's hooks).
#: Were the name check missing, the loop would run unchecked past the
#: budget instead of failing to compile.
GUARD_SHADOWING = {
    "positional-only parameter": _in_function("def spin(_tick_, /):", "spin(int)"),
    "positional parameter": _in_function("def spin(_tick_):", "spin(int)"),
    "keyword-only parameter": _in_function("def spin(*, _tick_=int):", "spin()"),
    "default value": _in_function("def spin(_tick_=int, /):", "spin()"),
    "walrus": "(_tick_ := int)\n" + SPIN + activate_body("pass"),
    "walrus in a comprehension": "[(_tick_ := int) for x in (1,)]\n" + SPIN + activate_body("pass"),
    "for target": "for _tick_ in (int,):\n" + textwrap.indent(SPIN, "    ") + activate_body("pass"),
    "global statement": "def rebind():\n    global _tick_\n    _tick_ = int\nrebind()\n" + SPIN + activate_body("pass"),
    "import alias": "from random import random as _tick_\n" + SPIN + activate_body("pass"),
    "class name": "class _tick_:\n    pass\n" + SPIN + activate_body("pass"),
    "except name": "try:\n    1 / 0\nexcept ZeroDivisionError as _check_:\n    pass\n" + activate_body("pass"),
    "delete": "del _write_\n" + activate_body("pass"),
}


@pytest.mark.parametrize("name", list(GUARD_SHADOWING))
def test_guard_names_cannot_be_rebound_or_shadowed(tmp_path, planted, name):
    outcome = run(tmp_path, GUARD_SHADOWING[name], timeout_ms=100, store=planted)
    assert_refused(outcome, PluginCompileError, 'starts with "_"')
    assert outcome.elapsed < 1.0


def test_breakpoint_is_a_reserved_name(tmp_path, planted):
    outcome = run(tmp_path, activate_body("@breakpoint\ndef payload():\n    pass"), store=planted)
    assert_refused(outcome, PluginCompileError, '"breakpoint" is a reserved name')


def test_try_star_is_refused(tmp_path, planted):
    body = """
    try:
        raise ExceptionGroup('x', [ValueError(1)])
    except* ValueError as group:
        ctx.log.info(str(group))
    """
    outcome = run(tmp_path, activate_body(body), store=planted)
    assert_refused(outcome, PluginCompileError, "try/except* is not allowed")
    assert outcome.error.line == 2


def test_match_class_patterns_against_underscore_attributes_are_refused(tmp_path, planted):
    body = """
    match ctx.storage:
        case object(_gate=gate):
            ctx.log.info(gate._secret)
        case object(__class__=cls):
            ctx.log.info(str(cls))
    """
    outcome = run(tmp_path, activate_body(body), store=planted)
    assert_refused(outcome, PluginCompileError, "match statements are not supported")


# ---------------------------------------------------------------------------
# escapes: modules and writes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, kind, fragment",
    [
        ("import json\nctx.log.info(str(json.codecs))", PluginError, "module 'json' has no attribute 'codecs'"),
        ("import re\nctx.log.info(str(re.enum))", PluginError, "module 're' has no attribute 'enum'"),
        ("import re\nctx.log.info(str(re.sre_compile))", PluginError, "module 're' has no attribute 'sre_compile'"),
        ("from datetime import sys\nctx.log.info(str(sys.modules))", PluginError, "cannot import name 'sys'"),
        ("import random\nctx.log.info(str(getattr(random, '_os')))", SandboxViolationError, "invalid attribute name"),
        ("import os\nctx.log.info(os.environ['HOME'])", SandboxViolationError, "import of 'os' is not allowed"),
        ("import json.decoder\n", SandboxViolationError, "import of 'json.decoder' is not allowed"),
        ("import collections.abc\n", SandboxViolationError, "is not allowed"),
        ("import time\ntime.sleep(10)", PluginError, "module 'time' has no attribute 'sleep'"),
        ("import functools\nfunctools.lru_cache", PluginError, "has no attribute 'lru_cache'"),
        ("import itertools\nitertools.count()", PluginError, "has no attribute 'count'"),
    ],
)
def test_module_proxies_expose_only_public_names(tmp_path, planted, body, kind, fragment):
    outcome = run(tmp_path, activate_body(body), store=planted)
    assert_refused(outcome, kind, fragment)


def test_dunder_import_is_refused(tmp_path, planted):
    outcome = run(tmp_path, activate_body("os = __import__('os')\nctx.log.info(os.environ['HOME'])"), store=planted)
    assert_refused(outcome, PluginCompileError, '"__import__" is an invalid variable name')


def test_relative_and_star_imports_are_refused(tmp_path, planted):
    outcome = run(tmp_path, "from . import secrets\ndef activate(ctx):\n    pass\n", store=planted)
    assert_refused(outcome, PluginCompileError, "Relative imports are not supported")
    outcome = run(tmp_path, "from json import *\ndef activate(ctx):\n    pass\n", store=planted)
    assert_refused(outcome, PluginCompileError, '"*" imports are not allowed')


@pytest.mark.parametrize(
    "statement",
    [
        "json.dumps = lambda *a, **k: 'pwned'",
        "del json.loads",
        "setattr(json, 'dumps', print)",
        "json.JSONDecodeError.msg = 'x'",
        "ctx.storage.get = lambda *a: 'pwned'",
        "ctx.plugin.id = 'victim'",
        "ctx.log = None",
        "ctx.subscriptions.append = None",
        "list.append = None",
        "len.x = 1",
        "activate.x = 1",
        "import collections\ncollections.Counter.most_common = None",
    ],
)
def test_writes_to_modules_facades_builtins_functions_and_classes_are_refused(tmp_path, planted, statement):
    source = "import json\n" + activate_body(statement)
    outcome = run(tmp_path, source, store=planted)
    assert outcome.error is not None and SECRET not in outcome.text()
    if "setattr" in statement:
        assert "'setattr' is not defined" in outcome.error.message
    else:
        assert isinstance(outcome.error, SandboxViolationError), outcome.error
        assert "cannot modify" in outcome.error.message


def test_module_proxies_are_per_plugin_and_the_real_module_is_untouched(tmp_path):
    # One plugin tries to poison json for everyone; a second plugin and the
    # host must still see the real behaviour.
    poison = run(tmp_path, "import json\n" + activate_body("json.dumps = lambda *a, **k: 'pwned'"), plugin_id="poisoner")
    assert isinstance(poison.error, SandboxViolationError)
    healthy = run(tmp_path, "import json\n" + activate_body("ctx.storage.set('out', json.dumps({'a': 1}))"), plugin_id="healthy")
    assert healthy.error is None and healthy.gate.storage_get("out") == '{"a": 1}'
    assert json.dumps({"a": 1}) == '{"a": 1}'


def test_another_plugins_storage_is_unreachable(tmp_path, planted):
    body = """
    ctx.log.info(str(ctx.storage.get('token')))
    ctx.log.info(str(ctx.storage.keys()))
    ctx.log.info(str(ctx.storage._gate._store.kv_get('victim', 'token')))
    """
    outcome = run(tmp_path, activate_body(body), store=planted)
    assert_refused(outcome, PluginCompileError, '"_gate" is an invalid attribute name')
    # Without the direct reach the plugin only sees its own (empty) storage.
    body = "ctx.storage.set('seen', [ctx.storage.get('token'), ctx.storage.keys()])"
    outcome = run(tmp_path, activate_body(body), store=planted)
    assert outcome.error is None and SECRET not in outcome.text()
    assert outcome.gate.storage_get("seen") == [None, []]
    assert planted.kv_keys("victim") == ["token"] and planted.kv_get("victim", "token") == json.dumps(SECRET)


def test_facade_objects_cannot_be_constructed_or_subclassed(tmp_path, planted):
    outcome = run(tmp_path, activate_body("fake = type(ctx.storage)(None, None, None)\nfake.get('x')"), store=planted)
    assert_refused(outcome, SandboxViolationError, "cannot create 'Storage' objects")
    outcome = run(tmp_path, activate_body("class Mine(type(ctx.storage)):\n    pass"), store=planted)
    assert_refused(outcome, SandboxViolationError, "cannot subclass 'Storage'")
    outcome = run(tmp_path, activate_body("ctx.log.info(str(type(ctx.storage).get))"), store=planted)
    assert_refused(outcome, PluginError, "has no attribute 'get'")


def test_dynamic_classes_and_metaclasses_are_refused(tmp_path, planted):
    outcome = run(tmp_path, activate_body("T = type('T', (), {'__getattr__': lambda s, n: n})"), store=planted)
    assert_refused(outcome, SandboxViolationError, "type() with three arguments")
    outcome = run(tmp_path, activate_body("class Meta(type):\n    pass"), store=planted)
    assert_refused(outcome, SandboxViolationError, "cannot subclass 'type'")
    outcome = run(tmp_path, activate_body("class A:\n    pass\nclass Meta(type(A)):\n    pass"), store=planted)
    assert_refused(outcome, SandboxViolationError, "cannot subclass 'type'")
    outcome = run(tmp_path, activate_body("class A:\n    pass\nB = type(A)('B', (), {'__getattr__': print})"), store=planted)
    assert_refused(outcome, SandboxViolationError, "type() with three arguments")


@pytest.mark.parametrize("dunder", ["__exit__", "__del__", "__getattr__", "__getattribute__", "__setattr__",
                                    "__init_subclass__", "__class_getitem__", "__set_name__", "__reduce__",
                                    "__reduce_ex__", "__format__", "__index__"])
def test_class_bodies_may_not_define_dangerous_special_methods(tmp_path, planted, dunder):
    source = f"class Evil:\n    def {dunder}(self, *args):\n        return None\n\n" + activate_body("pass")
    outcome = run(tmp_path, source, store=planted)
    assert_refused(outcome, PluginCompileError, f'"{dunder}" cannot be defined in plugin classes')


def test_system_exit_and_keyboard_interrupt_are_contained(tmp_path, planted):
    async def main() -> list[Outcome]:
        results = []
        for statement in ("raise SystemExit(3)", "raise KeyboardInterrupt", "raise GeneratorExit"):
            results.append(await load_and_activate(tmp_path, activate_body(statement), store=planted))
        # The host loop is still alive and can run a fresh plugin.
        results.append(await load_and_activate(tmp_path, activate_body("ctx.storage.set('ok', 1)"), plugin_id="after"))
        return results

    *contained, after = asyncio.run(main())
    for outcome, name in zip(contained, ("SystemExit", "KeyboardInterrupt", "GeneratorExit")):
        assert type(outcome.error) is PluginError and f"{name} raised by plugin code" in outcome.error.message
        assert SECRET not in outcome.text()
    assert after.error is None and after.gate.storage_get("ok") == 1


# ---------------------------------------------------------------------------
# budget
# ---------------------------------------------------------------------------

BUDGET_CASES = {
    "while True": "while True:\n    pass",
    "except BaseException in a loop": "while True:\n    try:\n        pass\n    except BaseException:\n        pass",
    "finally return": (
        "def spin():\n    try:\n        while True:\n            pass\n    finally:\n        return 1\n"
        "while True:\n    spin()"
    ),
    "bare except in a loop": "while True:\n    try:\n        while True:\n            pass\n    except:\n        pass",
    "except and retry": "def work():\n    while True:\n        pass\nwhile True:\n    try:\n        work()\n    except BaseException as e:\n        ctx.log.info('caught ' + str(e))",
    "exponential lambda recursion": "f = lambda n: 1 if n == 0 else f(n - 1) + f(n - 1)\nf(64)",
    "runaway nested comprehension": "[(a, b) for a in range(10**6) for b in range(10**6)]",
    "join over map of a huge range": "''.join(map(str, range(10**12)))",
    "sum of a huge range": "sum(range(10**13))",
    "linear search in a huge range": "1.5 in range(10**12)",
    "min of a generator": "min(x for x in range(10**12))",
    "sorted with a key over a huge zip": "sorted(zip(range(10**7), range(10**7)), key=lambda p: -p[0])",
}


@pytest.mark.parametrize("name", list(BUDGET_CASES))
def test_budget_stops_runaway_code_and_the_host_carries_on(tmp_path, name):
    timeout_ms = 200

    async def main() -> tuple[Outcome, int, Outcome]:
        ticks = 0

        async def heartbeat() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        beat = asyncio.create_task(heartbeat())
        outcome = await load_and_activate(tmp_path, activate_body(BUDGET_CASES[name]), timeout_ms=timeout_ms)
        beat.cancel()
        fresh = await load_and_activate(tmp_path, activate_body("ctx.storage.set('alive', True)"), plugin_id="fresh")
        return outcome, ticks, fresh

    outcome, ticks, fresh = asyncio.run(main())
    assert isinstance(outcome.error, (BudgetExceededError, ResourceLimitError)), outcome.error
    assert outcome.elapsed < timeout_ms / 1000 + 0.5, outcome.elapsed
    # The asyncio loop stayed responsive while the plugin spun in its thread.
    assert ticks >= 5
    assert fresh.error is None and fresh.gate.storage_get("alive") is True
    assert "caught" not in repr(outcome.gate.logs), "plugin code ran on after catching the interrupt"


def test_budget_errors_name_the_plugin_line(tmp_path):
    outcome = run(tmp_path, activate_body("x = 1\nwhile True:\n    x += 1"), timeout_ms=100)
    assert isinstance(outcome.error, BudgetExceededError)
    assert outcome.error.code == "E_TIMEOUT"
    assert outcome.error.file == "probe/plugin.py" and outcome.error.line in (3, 4)
    assert 'File "probe/plugin.py"' in outcome.error.plugin_traceback


def test_runaway_recursion_is_a_resource_limit(tmp_path):
    outcome = run(tmp_path, "def down(n):\n    return down(n + 1)\n\n" + activate_body("down(0)"))
    assert isinstance(outcome.error, ResourceLimitError)
    assert "maximum recursion depth exceeded" in outcome.error.message
    assert outcome.error.line == 2


def test_runaway_comprehension_is_refused_before_it_starts(tmp_path):
    outcome = run(tmp_path, activate_body("[x for x in range(10**12)]"))
    assert isinstance(outcome.error, ResourceLimitError)
    assert "sequence of 1000000000000 items exceeds the plugin limit of 16777216" in outcome.error.message
    assert outcome.elapsed < 0.5


def test_interrupt_is_sticky_across_handlers(tmp_path):
    # Each handler would log if it ever ran plugin code after the budget
    # ran out: the sticky check at the start of every except/finally block
    # re-raises first.
    body = """
    def spin():
        while True:
            pass
    for attempt in range(5):
        try:
            spin()
        except BaseException:
            ctx.log.info('swallowed')
        finally:
            ctx.log.info('finally ran')
    """
    outcome = run(tmp_path, activate_body(body), timeout_ms=100)
    assert isinstance(outcome.error, BudgetExceededError)
    assert outcome.gate.logs == []


# ---------------------------------------------------------------------------
# allocation bombs
# ---------------------------------------------------------------------------

ALLOCATION_BOMBS = [
    ("'a' * 10**10", "result of 10000000000 characters exceeds the plugin limit of 67108864"),
    ("[0] * 10**10", "sequence of 10000000000 items exceeds the plugin limit of 16777216"),
    ("10 ** 10 ** 10", "exceeds the plugin limit of 100000 digits"),
    ("1 << 10**10", "exceeds the plugin limit of 100000 digits"),
    ("list(range(10**10))", "sequence of 10000000000 items exceeds the plugin limit of 16777216"),
    ("tuple(range(10**10))", "sequence of 10000000000 items"),
    ("bytes(10**10)", "10000000000 characters exceeds the plugin limit"),
    ("bytearray(10**10)", "10000000000 characters exceeds the plugin limit"),
    ("'x'.ljust(10**10)", "exceeds the plugin limit of 67108864"),
    ("'x'.rjust(10**10)", "exceeds the plugin limit of 67108864"),
    ("'x'.center(10**10)", "exceeds the plugin limit of 67108864"),
    ("'x'.zfill(10**10)", "exceeds the plugin limit of 67108864"),
    ("'\\t'.expandtabs(10**10)", "exceeds the plugin limit of 67108864"),
    ("b'x'.ljust(10**10)", "exceeds the plugin limit of 67108864"),
    ("'%*d' % (10**9, 1)", "format width or precision 1000000000 exceeds the plugin limit of 100000"),
    ("'%.*f' % (10**9, 1.0)", "format width or precision 1000000000"),
    ("format(1, '>9999999999')", "format width or precision 9999999999 exceeds the plugin limit"),
    ("'{:>1000000000}'.format(1)", "format width or precision 1000000000"),
    ("'{:{}}'.format(1, 10**9)", "format width or precision 1000000000"),
    ("f'{1:{10**9}}'", "format width or precision 1000000000"),
    ("f'{1:>999999999}'", "format width or precision 999999999"),
    ("('{0}' * 200000).format('y' * 1000)", "exceeds the plugin limit of 67108864"),
    ("'%s' * 100000 % (('z' * 1000,) * 100000)", "exceeds the plugin limit of 67108864"),
    ("'a'.replace('', 'b' * 10**4) * 1 if False else ('a' * 10**4).replace('', 'b' * 10**4)", "exceeds the plugin limit"),
    ("(1).to_bytes(10**10, 'big')", "exceeds the plugin limit"),
    ("sorted(range(10**12))", "sequence of 1000000000000 items"),
    ("set(range(10**10))", "sequence of 10000000000 items"),
    ("frozenset(range(10**10))", "sequence of 10000000000 items"),
    ("dict.fromkeys(range(10**10))", "sequence of 10000000000 items"),
    ("[].extend(range(10**10))", "sequence of 10000000000 items"),
    ("set().update(range(10**10))", "sequence of 10000000000 items"),
    ("{1}.isdisjoint(range(10**10))", "sequence of 10000000000 items"),
    ("''.join(['x'] * 10**7 + ['y' * 10**8])", "exceeds the plugin limit"),
    ("x = 10 ** 90000\nx * x", "exceeds the plugin limit of 100000 digits"),
    ("pow(3, 10**5000, 10**6000)", "exceeds the plugin limit"),
    ("import math\nmath.factorial(10**6)", "factorial(1000000) exceeds the plugin limit"),
    ("import math\nmath.comb(10**7, 5 * 10**6)", "exceeds the plugin limit"),
    ("import math\nmath.perm(10**6)", "exceeds the plugin limit"),
    ("import re\nre.sub('', 'x' * 10**4, 'a' * 10**5)", "exceeds the plugin limit"),
    ("import random\nrandom.choices([1], k=10**9)", "exceeds the plugin limit"),
    ("import random\nrandom.randbytes(10**10)", "exceeds the plugin limit"),
    ("import itertools\nitertools.product(range(2), repeat=10**6)", "exceeds the plugin limit"),
    ("import itertools\nitertools.tee(iter([]), 10**7)", "exceeds the plugin limit"),
    ("import json\njson.dumps([1], indent=10**9)", "exceeds the plugin limit"),
    ("a, *b = range(10**10)", "sequence of 10000000000 items"),
    ("print(*range(10**10))", "sequence of 10000000000 items"),
    ("[*range(10**10)]", "sequence of 10000000000 items"),
    ("x = [1]\nx *= 10**10", "sequence of 10000000000 items"),
    ("x = []\nx += range(10**10)", "sequence of 10000000000 items"),
    ("class L(list):\n    pass\nL(range(10**10))", "sequence of 10000000000 items"),
    ("import collections\ncollections.deque(range(10**10))", "sequence of 10000000000 items"),
    ("import collections\ncollections.Counter(range(10**10))", "sequence of 10000000000 items"),
]


#: random adds weights and counts up with + in the standard library: a list
#: of lists there would be concatenated in C, unchecked.
RANDOM_SUMS = {
    "choices weights": "random.choices([1, 2], weights=[[0] * 1000] * 300)",
    "choices cum_weights": "random.choices([1, 2], cum_weights=[[0], [1]])",
    "sample counts": "random.sample([1, 2], 1, counts=[[0] * 1000] * 300)",
}


@pytest.mark.parametrize("name", list(RANDOM_SUMS))
def test_random_weights_and_counts_must_be_numbers(tmp_path, name):
    body = f"import random\ntry:\n    {RANDOM_SUMS[name]}\nexcept TypeError as exc:\n    ctx.storage.set('refused', str(exc))\n"
    body += "ctx.storage.set('sample', random.sample([1, 2, 3], 2, counts=[1, 1, 1]))\n"
    body += "ctx.storage.set('choice', random.choices(['a'], weights=[2.5], k=2))\n"
    outcome = run(tmp_path, activate_body(body), timeout_ms=5000)
    assert outcome.error is None, outcome.error
    assert "must be numbers" in outcome.gate.storage_get("refused")
    assert len(outcome.gate.storage_get("sample")) == 2 and outcome.gate.storage_get("choice") == ["a", "a"]


@pytest.mark.parametrize("expression, message", ALLOCATION_BOMBS)
def test_allocation_bombs_are_refused_quickly(tmp_path, expression, message):
    outcome = run(tmp_path, activate_body(expression), timeout_ms=5000)
    assert isinstance(outcome.error, ResourceLimitError), outcome.error
    assert outcome.error.code == "E_LIMIT"
    assert message in outcome.error.message
    assert outcome.elapsed < 2.0


def test_string_doubling_in_a_loop_is_refused(tmp_path):
    outcome = run(tmp_path, activate_body("s = 'ab'\nwhile True:\n    s += s"), timeout_ms=5000)
    assert isinstance(outcome.error, ResourceLimitError)
    assert "exceeds the plugin limit of 67108864" in outcome.error.message
    outcome = run(tmp_path, activate_body("s = [0]\nwhile True:\n    s = s + s"), timeout_ms=5000)
    assert isinstance(outcome.error, ResourceLimitError)
    assert "exceeds the plugin limit of 16777216" in outcome.error.message


def test_refusals_can_be_caught_by_plugin_code(tmp_path):
    body = """
    try:
        'a' * 10**10
    except MemoryError as exc:
        ctx.storage.set('memory', str(exc))
    try:
        import os
    except ImportError:
        ctx.storage.set('import', 'refused')
    """
    outcome = run(tmp_path, activate_body(body))
    assert outcome.error is None
    assert "exceeds the plugin limit" in outcome.gate.storage_get("memory")
    assert outcome.gate.storage_get("import") == "refused"


# ---------------------------------------------------------------------------
# ordinary code works unchanged
# ---------------------------------------------------------------------------

ORDINARY = '''
import json
import re
import math
import random
import hashlib
import base64
import uuid
import textwrap
import bisect
import heapq
import itertools
import functools
import string
from collections import Counter, defaultdict, OrderedDict, deque
from datetime import datetime, date, timedelta, timezone


class Point:
    """A plain class with special methods."""

    def __init__(self, x, y):
        self.x = x
        self.y = y

    def __repr__(self):
        return f"Point({self.x}, {self.y})"

    def __eq__(self, other):
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    def __hash__(self):
        return hash((self.x, self.y))

    def __add__(self, other):
        return Point(self.x + other.x, self.y + other.y)

    def __iter__(self):
        yield self.x
        yield self.y

    def __len__(self):
        return 2

    def __lt__(self, other):
        return (self.x, self.y) < (other.x, other.y)

    @property
    def norm1(self):
        return abs(self.x) + abs(self.y)

    @staticmethod
    def origin():
        return Point(0, 0)

    @classmethod
    def diagonal(cls, n):
        return cls(n, n)


class Point3(Point):
    def __init__(self, x, y, z):
        self.x, self.y, self.z = x, y, z

    def flat(self):
        return Point(self.x, self.y)

    def describe(self):
        return "3d " + repr(self.flat()) + " " + str(super().norm1 if False else self.flat().norm1)


class Registry(dict):
    def register(self, key, value):
        self[key] = value
        return self


class AppError(Exception):
    pass


def squares(n):
    for i in range(n):
        yield i * i


def compute():
    out = {}
    # classes, special methods, properties, inheritance
    p, q = Point(1, 2), Point(3, -4)
    out["points"] = [repr(p + q), (p + q).norm1, sorted([q, p])[0].x, p == Point(1, 2), len(p), list(q)]
    out["classmethods"] = [repr(Point.origin()), repr(Point.diagonal(5)), Point3(1, 2, 3).describe()]
    out["hash_set"] = len({Point(1, 1), Point(1, 1), Point(2, 2)})
    # generators, comprehensions, unpacking
    out["gen"] = list(squares(6))
    out["comp"] = [x * 3 for x in range(5) if x % 2 == 0]
    out["dictcomp"] = {str(k): v for k, v in zip("abc", range(3))}
    out["setcomp"] = sorted({c.upper() for c in "hello"})
    out["genexp_sum"] = sum(x for x in range(100))
    a, (b, c), *rest = [1, (2, 3), 4, 5]
    first, *middle, last = range(6)
    out["unpack"] = [a, b, c, rest, first, middle, last]
    # mutation and augmented assignment
    items = [1, 2]
    items += [3]
    items.extend(range(4, 6))
    items *= 2
    counts = {}
    for word in "a b a c b a".split():
        counts[word] = counts.get(word, 0) + 1
    counts["a"] += 10
    reg = Registry().register("x", 1).register("y", 2)
    reg["y"] += 5
    box = Point(0, 0)
    box.x += 7
    box.y -= 2
    text = ""
    for part in ("x", "y", "z"):
        text += part
    out["mutation"] = [items, counts, dict(reg), repr(box), text]
    # strings and formatting
    name, n = "world", 3
    out["strings"] = [
        "{} {}".format("hello", name),
        "{0}-{1}-{0}".format("a", "b"),
        f"{name!r:>10}|{n:03d}|{math.pi:.3f}|{1234567:,}",
        "%s has %d items (%.1f%%)" % (name, n, 12.5),
        "-".join(str(i) for i in range(4)),
        "  pad ".strip().center(9, "*"),
        "a,b,,c".split(","),
        "Hello".replace("l", "L"),
        "x".zfill(4),
        "snake_case_name".title(),
        string.ascii_lowercase[:5],
        string.capwords("hello big world"),
        textwrap.shorten("The quick brown fox jumps over the lazy dog", 20),
        format(255, "08b"),
    ]
    # json, re, math, datetime
    doc = json.loads('{"a": [1, 2, {"b": null}], "c": 1.5}')
    out["json"] = [json.dumps(doc, sort_keys=True), json.dumps([1, 2], indent=2)]
    pattern = re.compile(r"(\\w+)@(\\w+)\\.com")
    m = pattern.search("mail: ada@example.com")
    out["re"] = [m.group(1), m.groups(), re.sub(r"\\d", "#", "a1b22"), re.findall(r"[aeiou]", "education"),
                 re.split(r"\\s+", "a  b   c"), pattern.sub(r"\\2:\\1", "x bob@site.com y")]
    out["math"] = [math.sqrt(16), math.floor(2.7), math.gcd(12, 18), math.factorial(10), round(math.hypot(3, 4)),
                   math.isclose(0.1 + 0.2, 0.3), math.prod([1, 2, 3, 4]), 2 ** 100, divmod(17, 5), pow(3, 4, 5),
                   round(2.675, 2), abs(-3), 7 // 2, 7 % 3, -7 // 2, 1 << 10, 10 ** 3]
    day = datetime(2024, 2, 28, 12, 30, tzinfo=timezone.utc) + timedelta(days=1, hours=2)
    out["datetime"] = [day.isoformat(), day.strftime("%Y-%m-%d %H:%M"), f"{day:%d/%m}", (date(2024, 3, 1) - date(2024, 1, 1)).days,
                       type(timezone.utc) is timezone]
    # collections, itertools, functools, heapq, bisect
    cnt = Counter("abracadabra")
    dd = defaultdict(list)
    for k, v in [("x", 1), ("y", 2), ("x", 3)]:
        dd[k].append(v)
    dq = deque([1, 2, 3], maxlen=3)
    dq.append(4)
    od = OrderedDict([("b", 1), ("a", 2)])
    od.move_to_end("b")
    out["collections"] = [cnt.most_common(2), dict(dd), list(dq), list(od), sorted(cnt.elements())[:3]]
    out["itertools"] = [list(itertools.islice(itertools.chain([1], [2, 3]), 2)), list(itertools.accumulate([1, 2, 3])),
                        [list(g) for k, g in itertools.groupby("aabbb")], list(itertools.combinations("abc", 2)),
                        list(itertools.product("ab", repeat=2)), list(itertools.chain.from_iterable([[1], [2]])),
                        list(itertools.zip_longest("ab", "x", fillvalue="-")), list(itertools.pairwise([1, 2, 3]))]
    out["functools"] = [functools.reduce(lambda a, b: a * b, range(1, 6)), functools.partial(int, base=2)("101")]
    heap = [5, 1, 4]
    heapq.heapify(heap)
    heapq.heappush(heap, 0)
    ordered = [1, 3, 5]
    bisect.insort(ordered, 4)
    out["algorithms"] = [heapq.heappop(heap), heapq.nlargest(2, [3, 9, 1, 7]), ordered, bisect.bisect(ordered, 4),
                         list(heapq.merge([1, 4], [2, 3]))]
    # hashing and encodings (deterministic ones only)
    out["hashes"] = [hashlib.sha256(b"abc").hexdigest()[:16], base64.b64encode(b"hi").decode(),
                     str(uuid.uuid5(uuid.NAMESPACE_DNS, "example.com"))]
    random.seed(7)
    out["random"] = [random.randint(1, 100), random.choice("abc"), random.sample(range(100), 3)]
    # builtins and types
    out["builtins"] = [isinstance([], list), isinstance({}, (list, dict)), type([]) is list, type(3) is int,
                       issubclass(Registry, dict), isinstance(reg, dict), list(reversed(range(3))), list(enumerate("ab", 1)),
                       any(x > 3 for x in range(5)), all([]), min(3, 1, 2), max([1, 5, 2]), sorted("cab", reverse=True),
                       hasattr(p, "x"), getattr(p, "missing", "default"), len(range(0, 10, 3)), 3 in range(10), range(10)[2:5][1],
                       list(map(str.upper, ["a", "b"])), list(filter(None, [0, 1, 2])), bytes([65, 66]).decode(), bytearray(b"ab").hex(),
                       chr(9731), ord("a"), hex(255), int("ff", 16), float("1.5"), str(None), bool(0), callable(len)]
    # exceptions
    try:
        raise AppError("bad thing")
    except AppError as exc:
        caught = str(exc)
    finally:
        cleaned = True
    try:
        {}["missing"]
    except KeyError as exc:
        missing = repr(exc)
    out["exceptions"] = [caught, cleaned, missing]
    # loops with else/break/continue
    found = None
    for i in range(10):
        if i == 3:
            continue
        if i * i > 20:
            found = i
            break
    else:
        found = -1
    k = 0
    while k < 5:
        k += 1
    else:
        k = k * 10
    out["loops"] = [found, k]
    return out


def activate(ctx):
    result = compute()
    ctx.storage.set("result", json.loads(json.dumps(result, default=str)))
'''


def test_ordinary_plugin_code_works_unchanged(tmp_path):
    outcome = run(tmp_path, ORDINARY, timeout_ms=10000)
    assert outcome.error is None, outcome.error and (outcome.error.message + "\n" + outcome.error.plugin_traceback)
    sandboxed = outcome.gate.storage_get("result")
    # The same module run as plain Python gives the same answers.
    namespace: dict[str, Any] = {"__name__": "plain"}
    exec(compile(ORDINARY, "plain.py", "exec"), namespace)
    plain = json.loads(json.dumps(namespace["compute"](), default=str))
    assert sandboxed == plain
    assert set(sandboxed) >= {"points", "strings", "json", "re", "math", "datetime", "collections", "itertools"}


def test_print_logs_to_the_plugin_logger(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="hostrt.plugins")
    outcome = run(tmp_path, "print('top', 1, sep='-')\n" + activate_body("print('hello', [1, 2], None)"))
    assert outcome.error is None
    messages = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    assert ("hostrt.plugins.probe", "INFO", "top-1") in messages
    assert ("hostrt.plugins.probe", "INFO", "hello [1, 2] None") in messages


def test_host_errors_from_the_gate_are_clean_in_plugin_code(tmp_path):
    body = """
    try:
        ctx.storage.set('k', object())
    except StorageError as exc:
        ctx.storage.set('error', [isinstance(exc, StorageError), str(exc), exc.code])
    try:
        ctx.storage.set('k', object())
    except HostrtError:
        ctx.storage.set('base', True)
    """
    outcome = run(tmp_path, activate_body(body))
    assert outcome.error is None
    is_storage_error, message, code = outcome.gate.storage_get("error")
    assert is_storage_error and code == "E_STORAGE" and "is not a JSON value" in message
    assert outcome.gate.storage_get("base") is True


@pytest.mark.parametrize(
    "expression",
    [
        "list('x' * 20000000)",
        "('a ' * 10000000).split()",
        "import re\nre.findall('.', 'y' * 20000000)",
        "import re\nre.compile('.').findall('y' * 20000000)",
    ],
)
def test_item_explosions_from_long_strings_are_refused(tmp_path, expression):
    outcome = run(tmp_path, activate_body(expression), timeout_ms=5000)
    assert isinstance(outcome.error, ResourceLimitError), outcome.error
    assert "exceeds the plugin limit of 16777216" in outcome.error.message


def test_splitting_ordinary_strings_still_works(tmp_path):
    body = """
    import re
    ctx.storage.set('parts', ['a b  c'.split(), 'x,y'.split(','), 'l1\\nl2'.splitlines(), 'a-b-c'.rsplit('-', 1),
                              re.split(r'\\d', 'a1b2c'), re.compile(r'\\w').findall('hi')])
    """
    outcome = run(tmp_path, activate_body(body))
    assert outcome.error is None
    assert outcome.gate.storage_get("parts") == [["a", "b", "c"], ["x", "y"], ["l1", "l2"], ["a-b", "c"], ["a", "b", "c"], ["h", "i"]]


def test_type_never_returns_a_real_metaclass(tmp_path):
    body = """
    import re
    class A:
        pass
    ctx.storage.set('same', [type(A) is type, type(type(re.I)) is type, type(type) is type, isinstance(A, type),
                             type([]) is list, type(range(3)) is range, type(ctx) is type(ctx)])
    """
    outcome = run(tmp_path, activate_body(body))
    assert outcome.error is None, outcome.error
    assert outcome.gate.storage_get("same") == [True, True, True, True, True, True, True]


def test_print_cannot_forge_log_lines(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="hostrt.plugins")
    outcome = run(tmp_path, activate_body("print('real\\nCRITICAL hostrt.host: forged\\x1b[2K')\nprint('x' * 20000)"))
    assert outcome.error is None
    messages = [r.getMessage() for r in caplog.records if r.name == "hostrt.plugins.probe"]
    assert messages[0] == "real\\nCRITICAL hostrt.host: forged\\x1b[2K"
    assert len(messages[1]) < 8300 and messages[1].endswith("[characters cut]")


def test_future_annotations_and_annotated_assignments_work(tmp_path):
    source = """
    from __future__ import annotations

    LIMIT: int = 3


    class Box:
        size: int = 0

        def __init__(self, size: int) -> None:
            self.size: int = size


    def activate(ctx) -> None:
        total: int = Box(LIMIT).size
        ctx.storage.set("total", total)
    """
    outcome = run(tmp_path, source)
    assert outcome.error is None, outcome.error
    assert outcome.gate.storage_get("total") == 3


def test_container_subclasses_cannot_lie_about_their_size(tmp_path):
    body = """
    class Liar(list):
        def __len__(self):
            return 0
        def __iter__(self):
            n = 0
            while True:
                n += 1
                yield n
    x = []
    x += Liar()
    """
    outcome = run(tmp_path, activate_body(body), timeout_ms=5000)
    assert isinstance(outcome.error, (ResourceLimitError, BudgetExceededError)), outcome.error
    body = """
    class Short(list):
        def __len__(self):
            return 1
    big = Short([0] * 1000)
    big * 100000
    """
    outcome = run(tmp_path, activate_body(body), timeout_ms=5000)
    assert isinstance(outcome.error, ResourceLimitError)
    assert "sequence of 100000000 items" in outcome.error.message


def _numeric(source: str) -> frozenset:
    import ast as _ast

    from hostrt.runtimes.pysandbox.policy import numeric_locals

    return numeric_locals(_ast.parse(source).body[0])


@pytest.mark.parametrize(
    "source, expected",
    [
        ("def f(xs):\n    total = 0\n    for x in xs:\n        total += x\n    return total", {"total"}),
        ("def f():\n    a = 1.5\n    a -= 2\n    b = 0\n    b += 1", {"a", "b"}),
        # every other kind of binding disqualifies the name
        ("def f(total):\n    total += 1", set()),
        ("def f():\n    total = ''\n    total += 'x'", set()),
        ("def f(s):\n    total = 0\n    total = s\n    total += s", set()),
        ("def f(xs):\n    total = 0\n    for total in xs:\n        pass\n    total += 1", set()),
        ("def f(s):\n    total = 0\n    total *= 2", set()),
        ("def f(s):\n    total = 0\n    (total := s)\n    total += s", set()),
        ("def f(s):\n    total = 0\n    total, y = s, s\n    total += s", set()),
        ("def f(s):\n    total = 0\n    [total := x for x in s]\n    total += s", set()),
        ("def f(s):\n    total = 0\n    def g():\n        nonlocal total\n        total = s\n    total += s", set()),
        ("def f(s):\n    global total\n    total = 0\n    total += s", set()),
        ("def f(s):\n    total = 0\n    try:\n        pass\n    except Exception as total:\n        pass\n    total += s", set()),
        ("def f(s):\n    import json as total\n    total += s", set()),
        ("def f(s):\n    total = 0\n    del total\n    total += s", set()),
    ],
)
def test_numeric_locals_is_conservative(source, expected):
    assert _numeric(source) == frozenset(expected)


def test_native_plus_equals_on_numbers_still_refuses_sequence_growth(tmp_path):
    # Only proven-numeric names skip the guard; a string accumulator keeps it.
    body = "s = 'x' * 1000\nfor i in range(40):\n    s += s\nctx.storage.set('len', len(s))"
    outcome = run(tmp_path, activate_body(body))
    assert isinstance(outcome.error, ResourceLimitError), outcome.error


def test_datetime_strptime_works_and_underscore_imports_stay_refused(tmp_path):
    body = """
    from datetime import datetime
    ctx.storage.set('year', datetime.strptime('2026-11-21', '%Y-%m-%d').year)
    """
    outcome = run(tmp_path, activate_body(body))
    assert outcome.error is None, outcome.error
    assert outcome.gate.storage_get("year") == 2026
    outcome = run(tmp_path, "import _strptime\n" + activate_body("pass"))
    assert isinstance(outcome.error, PluginCompileError)


def test_guarded_operators_and_keys_work_in_class_bodies(tmp_path):
    # The compiler binds some operands to temporaries; never in a class
    # body, where they would become class attributes.
    source = activate_body("""
        class Box:
            def __init__(self, v):
                self.v = v
        a, b = Box(5), Box(3)
        table = {'k': 1}
        class Config:
            span = a.v - b.v
            both = {1, 2} & {2, 3}
            found = table['k']
            spans = [a.v - b.v for i in range(2)]
            looked = table.get('k')
        ctx.storage.set('out', [Config.span, sorted(Config.both), Config.found, Config.spans, Config.looked])
    """)
    outcome = run(tmp_path, source)
    assert outcome.error is None, outcome.error
    assert outcome.gate.storage_get("out") == [2, [2], 1, [2, 2], 1]



def test_slice_assignment_split_groups_and_json_loads_work_within_limits(tmp_path):
    source = activate_body("""
        import json, re
        rows = [0] * 10
        rows[2:5] = (x * 2 for x in range(3))
        buf = bytearray(b'abcdef')
        buf[1:3] = b'XYZ'
        parts = re.split('(,)', 'a,b,c')
        compiled = re.compile('([0-9])').split('a1b2')
        data = json.loads('[1, 2, {"a": [3, 4]}]')
        ctx.storage.set('out', [rows, buf.decode(), parts, compiled, data])
    """)
    outcome = run(tmp_path, source)
    assert outcome.error is None, outcome.error
    assert outcome.gate.storage_get("out") == [
        [0, 0, 0, 2, 4, 0, 0, 0, 0, 0], "aXYZdef", ["a", ",", "b", ",", "c"], ["a", "1", "b", "2", ""],
        [1, 2, {"a": [3, 4]}],
    ]
