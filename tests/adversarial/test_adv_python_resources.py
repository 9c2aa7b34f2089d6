"""Python plugins that try to exhaust the host's time or memory.

Every attack is a real plugin run through the arena (tests/adversarial/arena.py)
with a 300 ms budget. After its resource attack, each plugin goes for the
canaries (``grab`` below) and keeps what it got: if a defence let it run
on, its storage says so, and the arena proves it got nothing either way.

Three ways an attack is stopped, and each test asserts which one:

* *refused up front*: an operation that would compute or allocate too much
  in one C call (which nothing could interrupt once started) raises a
  ``MemoryError`` (ResourceLimitError when it escapes) before it runs; the
  plugin may catch it and go on, nothing was done;
* *interrupted*: loops, recursion and iteration in C over plugin iterables
  hit the budget, which no ``except``/``finally`` can swallow
  (BudgetExceededError);
* *not reachable*: the module or special method needed does not exist.

Attacks that would freeze the whole interpreter if their defence failed
(regular expressions, a single C call the sandbox cannot bound) are in
test_adv_containment.py, where the arena runs in a child process.
"""

from __future__ import annotations

import textwrap

import pytest

from hostrt import (
    BudgetExceededError,
    PluginCompileError,
    PluginError,
    PluginState,
    SandboxViolationError,
)
from hostrt.runtimes.pysandbox.limits import MAX_BYTES, MAX_FACTORIAL, MAX_FORMAT_WIDTH, MAX_INT_DIGITS, MAX_ITEMS

#: Every attack plugin runs with this budget, so the interrupted ones are quick.
TIMEOUT_MS = 300
MANIFEST = {"capabilities": ["storage"], "limits": {"timeoutMs": TIMEOUT_MS}}

#: What each attack does once it is past (or around) the defence.
GRAB = '''
def grab(ctx):
    got = {}
    try:
        import os
        got["env"] = os.environ.get("HOSTRT_ARENA_SECRET")
    except ImportError:
        got["env"] = "refused"
    try:
        got["file"] = open(SECRET_FILE).read()
    except NameError:
        got["file"] = "refused"
    got["victim"] = [ctx.storage.get("secret"), ctx.storage.keys()]
    ctx.storage.set("loot", got)
'''

#: What ``grab`` keeps when every door stayed shut.
NOTHING = {"env": "refused", "file": "refused", "victim": [None, ["refused"]]}


def plugin(arena, body: str, *, tail: str = "grab(ctx)") -> str:
    """An attack plugin: ``body`` runs in ``activate``, then ``tail``."""
    code = textwrap.dedent(body).strip("\n") + "\n" + tail
    return (GRAB + f"\nSECRET_FILE = {str(arena.secret_file)!r}\n\n\ndef activate(ctx):\n"
            + textwrap.indent(code, "    ") + "\n")


def caught(payload: str) -> str:
    """A body that runs ``payload`` and keeps the refusal it catches."""
    return (
        "try:\n" + textwrap.indent(textwrap.dedent(payload).strip("\n"), "    ") + "\n"
        "except (MemoryError, ValueError) as exc:\n"
        "    ctx.storage.set('refused', str(exc))\n"
    )


# ---------------------------------------------------------------------------
# single C-level calls: refused before they run
# ---------------------------------------------------------------------------

#: name -> (payload, what the refusal the plugin caught says)
REFUSED = {
    "pow(10, 10**9)": ("pow(10, 10**9)", f"exceeds the plugin limit of {MAX_INT_DIGITS} digits"),
    "10**10**9": ("n = 10\nn ** 10 ** 9", f"exceeds the plugin limit of {MAX_INT_DIGITS} digits"),
    "in-place power": ("n = 7\nn **= 10**9", f"exceeds the plugin limit of {MAX_INT_DIGITS} digits"),
    "huge shift": ("1 << 10**10", f"exceeds the plugin limit of {MAX_INT_DIGITS} digits"),
    "big-int product": ("n = 10**90000\nn * n", f"exceeds the plugin limit of {MAX_INT_DIGITS} digits"),
    "'x' * 10**10": ("'x' * 10**10", f"exceeds the plugin limit of {MAX_BYTES}"),
    "bytearray(10**11)": ("bytearray(10**11)", f"exceeds the plugin limit of {MAX_BYTES}"),
    "list(range(10**10))": ("list(range(10**10))", f"exceeds the plugin limit of {MAX_ITEMS}"),
    "sorted(range(10**10))": ("sorted(range(10**10))", f"exceeds the plugin limit of {MAX_ITEMS}"),
    "str.join of a huge repetition": ("','.join(['x' * 1000] * 100000)", f"exceeds the plugin limit of {MAX_BYTES}"),
    "math.factorial(10**7)": ("import math\nmath.factorial(10**7)", f"limit of factorial({MAX_FACTORIAL})"),
    "str.format width": ("'{:>999999999}'.format(1)", f"exceeds the plugin limit of {MAX_FORMAT_WIDTH}"),
    "f-string width": ("w = 999999999\nf'{1:>{w}}'", f"exceeds the plugin limit of {MAX_FORMAT_WIDTH}"),
    "'%*d' width": ("'%*d' % (10**9, 1)", f"exceeds the plugin limit of {MAX_FORMAT_WIDTH}"),
    "str.center width": ("'x'.center(10**10)", f"exceeds the plugin limit of {MAX_BYTES}"),
    "int('9' * 10**6)": ("int('9' * 10**6)", "Exceeds the limit (4300 digits)"),
    "json.dumps indent": ("import json\njson.dumps([1], indent=10**6)", "json indent 1000000 exceeds"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_single_c_calls_that_would_not_return_are_refused_before_running(arena, name):
    payload, says = REFUSED[name]

    async def attack(arena):
        attempt = await arena.attack("hog", plugin(arena, caught(payload)), **MANIFEST)
        # The plugin caught the refusal and went on: nothing had run, and the
        # canaries were still out of reach.
        assert attempt.state is PluginState.ACTIVE, attempt.error
        assert says in (attempt.loot.get("refused") or ""), attempt.loot
        assert attempt.loot["loot"] == NOTHING

    arena.run(attack)


# ---------------------------------------------------------------------------
# loops, recursion and C iteration: interrupted by the budget
# ---------------------------------------------------------------------------

INTERRUPTED = {
    "sum(range(10**12))": "sum(range(10**12))",
    "max over a huge range": "max(range(10**12))",
    "str.join of a huge generator": "''.join(str(i) for i in range(10**10))",
    "itertools.product into a list": "import itertools\nlist(itertools.product(range(100), repeat=10))",
    "except BaseException loops again": """
        while True:
            try:
                while True:
                    pass
            except BaseException:
                pass
    """,
    "bare except around a busy body": """
        while True:
            try:
                sum(range(10**9))
            except:
                continue
    """,
    "finally that loops again": """
        def spin():
            try:
                while True:
                    pass
            finally:
                spin()
        spin()
    """,
    "recursion retried at the limit": """
        def deeper():
            try:
                deeper()
            except RecursionError:
                deeper()
        deeper()
    """,
    "generator finaliser run by close()": """
        def late():
            try:
                yield 1
            finally:
                while True:
                    pass
        it = late()
        next(it)
        it.close()
    """,
    "SystemExit raised and swallowed in a loop": """
        while True:
            try:
                raise SystemExit(0)
            except SystemExit:
                pass
    """,
    "GeneratorExit raised and swallowed in a loop": """
        while True:
            try:
                raise GeneratorExit()
            except GeneratorExit:
                pass
    """,
}


@pytest.mark.parametrize("name", list(INTERRUPTED))
def test_loops_and_c_iteration_are_interrupted_by_the_budget(arena, name):
    async def attack(arena):
        attempt = await arena.attack("hog", plugin(arena, INTERRUPTED[name]), **MANIFEST)
        assert attempt.failed_with(BudgetExceededError, f"time budget of {TIMEOUT_MS} ms"), attempt.error
        assert "loot" not in attempt.loot

    arena.run(attack)


def test_recursion_at_the_limit_leaves_the_budget_working(arena):
    # Recursion that fails at the limit once used to end the plugin's tick
    # stream for good: every later call raised a bare StopIteration and
    # every for loop silently ran zero times.
    async def attack(arena):
        attempt = await arena.attack("hog", plugin(arena, """
            def deeper(n):
                try:
                    return deeper(n + 1)
                except RecursionError:
                    return n
            depths = [deeper(0) for i in range(50)]
            total = 0
            for i in range(1000):
                total += 1
            ctx.storage.set('after', [min(depths) > 100, total])
            while True:
                pass
        """), **MANIFEST)
        assert attempt.failed_with(BudgetExceededError, f"time budget of {TIMEOUT_MS} ms"), attempt.error
        assert attempt.loot == {"after": [True, 1000]}

    arena.run(attack)


COMMAND_HOG = '''
def spin(params):
    while True:
        try:
            while True:
                pass
        except BaseException:
            grab(CTX[0])


CTX = []


def activate(ctx):
    CTX.append(ctx)
    ctx.commands.register("hog.spin", spin)
'''

DEACTIVATE_HOG = '''
def activate(ctx):
    pass


def deactivate(ctx):
    try:
        while True:
            pass
    finally:
        grab(ctx)
'''


def test_a_command_that_never_returns_stops_the_plugin_not_the_host(arena):
    async def attack(arena):
        source = GRAB + f"\nSECRET_FILE = {str(arena.secret_file)!r}\n" + COMMAND_HOG
        attempt = await arena.attack("hog", source, commands=[{"name": "hog.spin"}], **MANIFEST)
        assert attempt.state is PluginState.ACTIVE
        with pytest.raises(BudgetExceededError, match=f"time budget of {TIMEOUT_MS} ms"):
            await arena.host.invoke("hog", "hog.spin")
        # stopped for good: a second call does not get to run plugin code
        with pytest.raises(PluginError):
            await arena.host.invoke("hog", "hog.spin")
        assert "loot" not in arena.rows("hog")

    arena.run(attack)


def test_a_deactivate_that_never_returns_is_cut_off(arena):
    async def attack(arena):
        source = GRAB + f"\nSECRET_FILE = {str(arena.secret_file)!r}\n" + DEACTIVATE_HOG
        attempt = await arena.attack("hog", source, **MANIFEST)
        assert attempt.state is PluginState.ACTIVE
        record = await arena.host.deactivate("hog")
        assert isinstance(record.error, BudgetExceededError), record.error
        assert record.state is not PluginState.ACTIVE
        assert "loot" not in arena.rows("hog")

    arena.run(attack)


# ---------------------------------------------------------------------------
# what is not reachable at all
# ---------------------------------------------------------------------------


def test_recursion_limit_and_finalisers_are_out_of_reach(arena):
    async def attack(arena):
        limit = await arena.attack("limit", plugin(arena, "import sys\nsys.setrecursionlimit(10**6)"), **MANIFEST)
        assert limit.failed_with(SandboxViolationError, "import of 'sys' is not allowed")
        finaliser = await arena.attack("finaliser", plugin(arena, """
            class Late:
                def __del__(self):
                    while True:
                        pass
            Late()
        """), **MANIFEST)
        assert finaliser.failed_with(PluginCompileError, '"__del__" cannot be defined in plugin classes')
        assert limit.loot == finaliser.loot == {}

    arena.run(attack)


@pytest.mark.parametrize("kind", ["SystemExit", "KeyboardInterrupt", "GeneratorExit"])
def test_interpreter_exits_raised_by_plugin_code_fail_only_the_plugin(arena, kind):
    async def attack(arena):
        attempt = await arena.attack("quitter", plugin(arena, f"raise {kind}()"), **MANIFEST)
        assert attempt.failed_with(PluginError, kind), attempt.error
        assert not isinstance(attempt.error, BudgetExceededError)
        assert attempt.loot == {}

    arena.run(attack)
