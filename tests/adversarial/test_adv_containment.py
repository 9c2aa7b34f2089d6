"""Attacks that would freeze the whole interpreter if their defence failed.

A plugin's C call that never returns to a budget check holds the GIL: the
host's event loop, its other plugins and the runtime's own timeout all wait
for it, so an in-process test of such an attack would hang the test run
instead of failing. Each attack here therefore runs the arena
(tests/adversarial/arena.py, with all its containment checks) in a child
process bounded by :data:`CHILD_TIMEOUT_S`; the test asserts on what the
child printed and how it exited.

What the Python runtime bounds up front and what it cannot (documented in
the module docstrings of hostrt/runtimes/pysandbox/regex.py and budget.py):

* regular expressions that can backtrack exponentially are refused, and the
  polynomial worst case of every other one is bounded by the subject's
  length (MAX_REGEX_STEPS): tested here;
* a long but finite C call the size limits admit (sorting sixteen million
  items) runs to its end and the host then fails the plugin on its
  deadline: tested here;
* C code walking a structure the plugin built with shared parts (``==`` or
  ``hash`` over a list or tuple DAG 64 levels deep visits 2**64 paths; a
  dictionary lookup comparing frozenset DAGs, which hash cheaply; ``heapq``
  comparing list DAGs) is one C call no budget check interrupts: the
  structure is measured first (hostrt/runtimes/pysandbox/walks.py) and
  refused past MAX_WALK_ITEMS: tested here, and site by site in
  test_adv_walks.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hostrt.runtimes.pysandbox.limits import MAX_WALK_ITEMS
from hostrt.runtimes.pysandbox.regex import MAX_REGEX_STEPS

TESTS = Path(__file__).resolve().parent.parent
REPO = TESTS.parent

#: How long a child arena may take (start, attack, containment check, close).
CHILD_TIMEOUT_S = 60.0
#: For attacks known to freeze the interpreter: enough for a contained run.
FROZEN_TIMEOUT_S = 12.0

CHILD = """
import asyncio, json, sys
from pathlib import Path
from adversarial.arena import Arena

source, manifest = json.loads(sys.argv[2])
arena = Arena(Path(sys.argv[1]))

async def attack(arena):
    attempt = await arena.attack("hog", source, **manifest)
    print("ATTEMPT " + json.dumps({
        "state": attempt.state.value,
        "error": type(attempt.error).__name__ if attempt.error else None,
        "message": attempt.error.message if attempt.error else None,
        "line": getattr(attempt.error, "line", None),
        "loot": attempt.loot,
    }), flush=True)

arena.run(attack)
print("CONTAINED", flush=True)
"""

MANIFEST = {"capabilities": ["storage"], "limits": {"timeoutMs": 300}}


def run_child(tmp_path: Path, body: str, timeout: float = CHILD_TIMEOUT_S) -> dict:
    """Run ``body`` as the ``activate`` of an attack plugin in an arena in a
    child process; return what became of it. Fails if the child froze (was
    killed at ``timeout``), died, or the arena found the attack uncontained."""
    source = "def activate(ctx):\n" + textwrap.indent(textwrap.dedent(body).strip("\n"), "    ") + "\n"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(TESTS), str(REPO), os.environ.get("PYTHONPATH")])))
    try:
        out = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), json.dumps([source, MANIFEST])],
                             capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the host froze: no answer within {timeout:g} s")
    assert out.returncode == 0, f"the child exited with {out.returncode}: {out.stdout[-2000:]}{out.stderr[-2000:]}"
    assert "CONTAINED" in out.stdout
    line = next(line for line in out.stdout.splitlines() if line.startswith("ATTEMPT "))
    return json.loads(line[len("ATTEMPT "):])


def caught(payload: str) -> str:
    return (
        "try:\n" + textwrap.indent(textwrap.dedent(payload).strip("\n"), "    ") + "\n"
        "except MemoryError as exc:\n"
        "    ctx.storage.set('refused', str(exc))\n"
        "ctx.storage.set('went_on', True)\n"
    )


#: name -> (payload, what the refusal the plugin caught says). Without the
#: defence, each of these holds the interpreter for hours or longer.
REGEX_REFUSED = {
    "nested repeat": ("import re\nre.match('(a+)+$', 'a' * 40 + 'b')", "can backtrack exponentially"),
    "ambiguous alternation": ("import re\nre.fullmatch('(?:a|ab|b)*c', 'ab' * 40)", "can backtrack exponentially"),
    "repeat of optional items": ("import re\nre.search(r'(\\w+\\s?)+$', 'word ' * 30 + '!')",
                                 "can backtrack exponentially"),
    "compiling is enough": ("import re\nre.compile(r'(x+x+)+y')", "can backtrack exponentially"),
    "quadratic search": ("import re\nre.search(r'\\s+$', ' ' * 10**6 + 'x')",
                         f"more than the plugin limit of {MAX_REGEX_STEPS} steps"),
    "compiled pattern's findall": ("import re\nre.compile(r'(\\w+)=(\\w+)').findall('a' * 10**6)",
                                   f"more than the plugin limit of {MAX_REGEX_STEPS} steps"),
    "compiled pattern's search": ("import re\np = re.compile(r'a*b')\np.search('a' * 10**6)",
                                  f"more than the plugin limit of {MAX_REGEX_STEPS} steps"),
    "compiled pattern's sub": ("import re\nre.compile(r'a*b').sub('', 'a' * 10**6)",
                               f"more than the plugin limit of {MAX_REGEX_STEPS} steps"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(REGEX_REFUSED))
def test_regexes_that_would_hold_the_interpreter_are_refused(tmp_path, name):
    payload, says = REGEX_REFUSED[name]
    attempt = run_child(tmp_path, caught(payload))
    assert attempt["state"] == "active", attempt
    assert says in attempt["loot"].get("refused", ""), attempt["loot"]
    assert attempt["loot"]["went_on"] is True


@pytest.mark.slow
def test_a_regex_refusal_names_the_plugin_file_and_line_and_ordinary_regexes_run(tmp_path):
    attempt = run_child(tmp_path, """
        import re
        words = re.findall(r'\\w+', 'ordinary text ' * 100000)
        pairs = re.compile(r'(\\w+)=(\\w+)').findall('a=b\\n' * 1000)
        ctx.storage.set('ordinary', [len(words), len(pairs)])
        re.match(r'(a|aa)+$', 'a' * 40 + 'b')
    """)
    assert attempt["state"] == "failed" and attempt["error"] == "ResourceLimitError"
    assert "'(a|aa)+$' is refused in plugins" in attempt["message"]
    assert "(hog/plugin.py, line 6," in attempt["message"] and attempt["line"] == 6
    assert attempt["loot"] == {"ordinary": [200000, 1000]}


@pytest.mark.slow
def test_a_long_c_call_the_limits_admit_ends_and_fails_the_plugin_on_its_deadline(tmp_path):
    # Sixteen million items is within MAX_ITEMS; sorting them is one C call
    # of about four seconds that no budget check can interrupt. The host
    # waits it out and then judges the deadline itself.
    attempt = run_child(tmp_path, """
        import random
        items = [random.random() for i in range(4096)] * 4096
        items.sort()
        ctx.storage.set('sorted', len(items))
    """)
    assert attempt["state"] == "failed" and attempt["error"] == "BudgetExceededError", attempt
    assert "time budget of 300 ms" in attempt["message"]
    assert attempt["loot"] == {}


SHARED_STRUCTURES = {
    "== over two list DAGs": """
        a = [0]
        b = [0]
        for i in range(64):
            a = [a, a]
            b = [b, b]
        ctx.storage.set('equal', a == b)
    """,
    "hash of a tuple DAG": """
        t = (0,)
        for i in range(64):
            t = (t, t)
        ctx.storage.set('hashed', len({t}))
    """,
    # Cheap to build and to hash (a frozenset hashes from its items' stored
    # hashes), so refusing to *build* huge tuples would not help: the
    # dictionary lookup finds an equal hash and compares, 2**64 paths.
    "dictionary key compared on a frozenset DAG": """
        def dag():
            f = frozenset({0})
            for i in range(64):
                f = frozenset({(f, 1), (f, 2)})
            return f
        d = {dag(): 1}
        ctx.storage.set('found', d[dag()])
    """,
    # Standard-library sites compare too (heapq, bisect, itertools.groupby,
    # functools.lru_cache, deque.count, set operators, dict views).
    "heapq comparing list DAGs": """
        import heapq
        def dag():
            a = [0]
            for i in range(64):
                a = [a, a]
            return a
        heap = [dag()]
        heapq.heappush(heap, dag())
        ctx.storage.set('pushed', len(heap))
    """,
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SHARED_STRUCTURES))
def test_c_walks_over_shared_structures_do_not_freeze_the_host(tmp_path, name):
    # Refused before C runs: the plugin fails with the walk limit named,
    # having stored nothing.
    attempt = run_child(tmp_path, SHARED_STRUCTURES[name], timeout=FROZEN_TIMEOUT_S)
    assert attempt["state"] == "failed" and attempt["error"] == "ResourceLimitError", attempt
    assert f"plugin limit of {MAX_WALK_ITEMS}" in attempt["message"], attempt["message"]
    assert attempt["loot"] == {}


#: A plugin object whose text is one large cached string, held many times:
#: C code converting the container calls its __repr__/__str__ once per place,
#: each call free to the plugin, and joins the results (gigabytes).
LOUD = """
    BIG = 'x' * 40000000
    class Loud:
        def __repr__(self):
            return BIG
        def __str__(self):
            return BIG
    many = [Loud()] * 1000
"""

LOUD_CONVERSIONS = {
    "repr": "repr(many)",
    "str": "str(many)",
    "f-string": "f'{many}'",
    "percent": "'%s' % (many,)",
    "format": "'{}'.format(many)",
    "print": "print(many)",
    "nested": "repr([[Loud()] * 10] * 100)",
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(LOUD_CONVERSIONS))
def test_plugin_text_repeated_by_a_conversion_is_bounded(tmp_path, name):
    attempt = run_child(tmp_path, caught(textwrap.dedent(LOUD) + LOUD_CONVERSIONS[name]))
    assert attempt["state"] == "active", attempt
    assert "exceeds the plugin limit of 67108864" in attempt["loot"].get("refused", ""), attempt["loot"]
    assert attempt["loot"]["went_on"] is True
