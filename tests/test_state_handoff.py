"""State handoff across reloads: what ``deactivate`` returns, the next
version reads as ``ctx.previousState`` (JavaScript) / ``ctx.previous_state``
(Python).

Each scenario is a pair of twin plugins written inline, one per language,
doing the same thing; tests that hold for both run once per language
against the real runtime (a V8 isolate, the RestrictedPython sandbox) and a
real ``ActivationContext`` over a real SQLite store (``RecordingGate``).
A line a twin fails on is marked with the comment ``fails here``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import textwrap
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from hostrt.context import ActivationContext
from hostrt.errors import HostrtError, PluginError
from hostrt.grants import GrantManager
from hostrt.runtimes.base import MAX_STATE_BYTES, LoadedPlugin, PluginSource, RuntimeLimits
from hostrt.runtimes.js import JavaScriptRuntime
from hostrt.runtimes.python import PythonRuntime
from hostrt.store import Store

from conftest import RecordingGate, finishes

LANGUAGES = ("javascript", "python")
MAIN = {"javascript": "plugin.js", "python": "plugin.py"}
FAILS_HERE = "fails here"

Twin = dict[str, str]


def write(root: Path, language: str, source: str, *, plugin_id: str = "demo",
          version: str = "1.0.0") -> PluginSource:
    """Write ``source`` as ``<root>/<plugin_id>/plugin.js|py``."""
    folder = root / plugin_id
    folder.mkdir(parents=True, exist_ok=True)
    main = folder / MAIN[language]
    main.write_text(textwrap.dedent(source).lstrip("\n"), encoding="utf-8")
    return PluginSource(plugin_id, version, folder.resolve(), main.resolve(), f"{plugin_id}/{MAIN[language]}",
                        RuntimeLimits(timeout_ms=2000))


def marked_line(source: str) -> int:
    lines = textwrap.dedent(source).lstrip("\n").splitlines()
    found = [number for number, line in enumerate(lines, 1) if FAILS_HERE in line]
    assert len(found) == 1, "mark exactly one line"
    return found[0]


@contextlib.asynccontextmanager
async def loaded(root: Path, language: str, source: str, **kwargs: Any) -> AsyncIterator[LoadedPlugin]:
    runtime = JavaScriptRuntime() if language == "javascript" else PythonRuntime()
    plugin = await runtime.load(write(root, language, source, **kwargs))
    try:
        yield plugin
    finally:
        await plugin.close()


def run(main: Any) -> Any:
    return finishes(lambda: asyncio.run(main()), 60.0)


def messages(gate: RecordingGate) -> list[str]:
    return [message for _, message, _ in gate.logs]


# ---------------------------------------------------------------------------
# the round trip
# ---------------------------------------------------------------------------

#: Version 1 builds some state while active and hands it over.
V1: Twin = {
    "javascript": """
        "use strict";
        const items = [];
        module.exports = {
            activate(ctx) {
                for (const word of ["a", "b", "c"]) items.push({ word, n: items.length });
            },
            deactivate(ctx) {
                return { count: items.length, items, from: ctx.plugin.version, text: "h\\u00e9 \\u{1F600}" };
            },
            items() { return items; },
        };
    """,
    "python": """
        ITEMS = []

        def activate(ctx):
            for word in ("a", "b", "c"):
                ITEMS.append({"word": word, "n": len(ITEMS)})

        def deactivate(ctx):
            return {"count": len(ITEMS), "items": ITEMS, "from": ctx.plugin.version, "text": "h\\u00e9 \\U0001F600"}

        def items():
            return ITEMS
    """,
}

#: Version 2 reads it, uses it as ordinary data, and hands on its own.
V2: Twin = {
    "javascript": """
        "use strict";
        let state;
        module.exports = {
            async activate(ctx) {
                state = ctx.previousState;
                await ctx.storage.set("seen", state);
                await ctx.storage.set("plain", Object.getPrototypeOf(state) === Object.prototype
                    && Array.isArray(state.items) && Object.getPrototypeOf(state.items[0]) === Object.prototype);
                state.items.push({ word: "d", n: state.items.length });
            },
            deactivate(ctx) {
                return { count: state.count + 1, words: state.items.map((item) => item.word).sort().reverse() };
            },
        };
    """,
    "python": """
        STATE = {}

        def activate(ctx):
            state = ctx.previous_state
            STATE.update(state)
            ctx.storage.set("seen", state)
            ctx.storage.set("plain", isinstance(state, dict) and isinstance(state["items"], list)
                            and isinstance(state["items"][0], dict))
            state["items"].append({"word": "d", "n": len(state["items"])})

        def deactivate(ctx):
            words = sorted([item["word"] for item in STATE["items"]], reverse=True)
            return {"count": STATE.get("count", 0) + 1, "words": words}
    """,
}


@pytest.mark.parametrize("first, second", [(a, b) for a in LANGUAGES for b in LANGUAGES])
def test_state_goes_from_one_loaded_version_to_the_next(tmp_path: Path, first: str, second: str) -> None:
    """Two separately loaded versions (a reload may also change the
    language): v1's returned state is what v2 reads, as plain data it
    can use, and v2 hands on state of its own."""
    async def main() -> tuple[Any, Any, Any, RecordingGate]:
        async with loaded(tmp_path / "v1", first, V1[first], version="1.0.0") as v1:
            await v1.activate(RecordingGate("demo", version="1.0.0"))
            state = await v1.deactivate()
            handed = json.loads(json.dumps(state))
            # The state is the host's own copy: changing it changes nothing in the plugin.
            state["items"].append("the host's")
            state["items"][0]["word"] = "changed"
            left_in_plugin = await v1.call_export("items")
        gate = RecordingGate("demo", version="2.0.0", previous_state=handed)
        async with loaded(tmp_path / "v2", second, V2[second], version="2.0.0") as v2:
            await v2.activate(gate)
            return handed, left_in_plugin, await v2.deactivate(), gate

    handed, left_in_plugin, next_state, gate = run(main)
    items = [{"word": "a", "n": 0}, {"word": "b", "n": 1}, {"word": "c", "n": 2}]
    assert handed == {"count": 3, "items": items, "from": "1.0.0", "text": "h\u00e9 \U0001F600"}
    assert left_in_plugin == items
    assert gate.data == {"seen": handed, "plain": True}
    assert next_state == {"count": 4, "words": ["d", "c", "b", "a"]}


#: Deactivation that hands over nothing; activation that got nothing.
NOTHING: dict[str, dict[str, str]] = {
    "javascript": {
        "no deactivate": "",
        "returns nothing": "deactivate() {},",
        "returns undefined": "deactivate() { return undefined; },",
        "returns null": "deactivate() { return null; },",
        "async, resolves to nothing": "async deactivate() { await null; },",
    },
    "python": {
        "no deactivate": "",
        "returns nothing": "def deactivate(ctx):\n    pass",
        "returns None": "def deactivate(ctx):\n    return None",
    },
}
NOTHING_CASES = [(language, case) for language, cases in NOTHING.items() for case in cases]


@pytest.mark.parametrize("language, case", NOTHING_CASES)
def test_nothing_returned_is_no_state_and_a_normal_activation_has_none(tmp_path: Path, language: str,
                                                                      case: str) -> None:
    deactivate = NOTHING[language][case]
    source = {
        "javascript": """
            module.exports = {
                async activate(ctx) {
                    await ctx.storage.set("saw", [typeof ctx.previousState, "previousState" in ctx]);
                },
                DEACTIVATE
            };
        """,
        "python": """
            def activate(ctx):
                ctx.storage.set("saw", [ctx.previous_state is None])

            DEACTIVATE
        """,
    }[language]
    source = textwrap.dedent(source).replace("DEACTIVATE", deactivate)

    async def main() -> tuple[Any, Any, dict[str, Any]]:
        gate = RecordingGate("demo")
        async with loaded(tmp_path, language, source) as plugin:
            await plugin.activate(gate)
            return await plugin.deactivate(), await plugin.deactivate(), gate.data

    state, again, data = run(main)
    assert state is None and again is None
    assert data["saw"] == (["undefined", True] if language == "javascript" else [True])


#: Falsy JSON is state too, not "nothing".
FALSY = [0, False, "", [], {}]


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("value", FALSY, ids=repr)
def test_falsy_json_is_handed_over_as_it_is(tmp_path: Path, language: str, value: Any) -> None:
    literal = json.dumps(value) if language == "javascript" else repr(value)
    source = {
        "javascript": f"module.exports = {{ activate(ctx) {{}}, deactivate() {{ return {literal}; }} }};",
        "python": f"def activate(ctx):\n    pass\n\ndef deactivate(ctx):\n    return {literal}\n",
    }[language]
    reader = {
        "javascript": """
            module.exports = { async activate(ctx) {
                await ctx.storage.set("saw", [ctx.previousState === undefined, ctx.previousState]);
            } };
        """,
        "python": """
            def activate(ctx):
                ctx.storage.set("saw", [ctx.previous_state is None, ctx.previous_state])
        """,
    }[language]

    async def main() -> tuple[Any, Any]:
        async with loaded(tmp_path / "v1", language, source) as plugin:
            await plugin.activate(RecordingGate("demo"))
            state = await plugin.deactivate()
        gate = RecordingGate("demo", previous_state=state)
        async with loaded(tmp_path / "v2", language, reader) as plugin:
            await plugin.activate(gate)
        return state, gate.data["saw"]

    state, saw = run(main)
    assert state == value and type(state) is type(value)
    assert saw == [False, value]


#: Hands back the state it got, untouched.
ECHO: Twin = {
    "javascript": """
        let previous;
        module.exports = {
            async activate(ctx) {
                previous = ctx.previousState;
                await ctx.storage.set("checks", [Object.getPrototypeOf(previous) === Object.prototype,
                                                 Object.keys(previous), ({}).polluted === undefined]);
            },
            deactivate(ctx) { return previous; },
        };
    """,
    "python": """
        PREVIOUS = []

        def activate(ctx):
            PREVIOUS.append(ctx.previous_state)
            ctx.storage.set("checks", [isinstance(PREVIOUS[0], dict), list(PREVIOUS[0].keys())])

        def deactivate(ctx):
            return PREVIOUS[0]
    """,
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_keys_that_mean_something_to_javascript_are_plain_data(tmp_path: Path, language: str) -> None:
    state = {"__proto__": {"polluted": True}, "constructor": "c", "toString": 1, "then": [None]}

    async def main() -> tuple[Any, dict[str, Any]]:
        gate = RecordingGate("demo", previous_state=state)
        async with loaded(tmp_path, language, ECHO[language]) as plugin:
            await plugin.activate(gate)
            return await plugin.deactivate(), gate.data

    returned, data = run(main)
    assert returned == state
    keys = ["__proto__", "constructor", "toString", "then"]
    assert data["checks"] == ([True, keys, True] if language == "javascript" else [True, keys])


def test_async_deactivate_hands_over_what_its_promise_resolves_to(tmp_path: Path) -> None:
    sources = {
        "awaits host calls": """
            module.exports = {
                async activate(ctx) { await ctx.storage.set("count", 3); },
                async deactivate(ctx) {
                    const count = await ctx.storage.get("count");
                    await ctx.storage.set("count", count + 1);
                    return { count: await ctx.storage.get("count") };
                },
            };
        """,
        "a timer settles it": """
            module.exports = {
                activate(ctx) {},
                deactivate(ctx) {
                    return new Promise((resolve) => setTimeout(() => resolve({ late: [1, 2] }), 30));
                },
            };
        """,
        "a thenable": """
            module.exports = {
                activate(ctx) {},
                deactivate(ctx) { return { then(resolve) { resolve({ via: "thenable" }); } }; },
            };
        """,
    }

    async def main() -> dict[str, Any]:
        states = {}
        for name, source in sources.items():
            async with loaded(tmp_path / name.replace(" ", "-"), "javascript", source) as plugin:
                await plugin.activate(RecordingGate("demo"))
                states[name] = await plugin.deactivate()
        return states

    assert run(main) == {
        "awaits host calls": {"count": 4},
        "a timer settles it": {"late": [1, 2]},
        "a thenable": {"via": "thenable"},
    }


#: deactivate returns an object, and a disposer changes it afterwards.
CHANGED_BY_DISPOSER: Twin = {
    "javascript": """
        let state;
        module.exports = {
            activate(ctx) {
                state = { count: 3, items: ["a"] };
                ctx.subscriptions.push({ dispose() { state.count = 99; state.items.push("late"); } });
            },
            deactivate(ctx) { return state; },
        };
    """,
    "python": """
        STATE = {"count": 3, "items": ["a"]}

        class Spoiler:
            def dispose(self):
                STATE["count"] = 99
                STATE["items"].append("late")

        def activate(ctx):
            ctx.subscriptions.append(Spoiler())

        def deactivate(ctx):
            return STATE
    """,
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_state_is_taken_when_deactivate_returns(tmp_path: Path, language: str) -> None:
    """The value is copied as deactivate returns it: a disposer changing
    the object afterwards changes nothing the host gets."""
    async def main() -> Any:
        async with loaded(tmp_path, language, CHANGED_BY_DISPOSER[language]) as plugin:
            await plugin.activate(RecordingGate("demo"))
            return await plugin.deactivate()

    assert run(main) == {"count": 3, "items": ["a"]}


# ---------------------------------------------------------------------------
# failures: no state
# ---------------------------------------------------------------------------

THROWS: Twin = {
    "javascript": """
        module.exports = {
            activate(ctx) { ctx.subscriptions.push({ dispose() { ctx.log.info("disposed"); } }); },
            deactivate(ctx) {
                const state = { count: 3 };
                if (state.count) throw new Error("deactivate broke");  // fails here
                return state;
            },
        };
    """,
    "python": """
        class Closer:
            def __init__(self, ctx):
                self.ctx = ctx

            def dispose(self):
                self.ctx.log.info("disposed")

        def activate(ctx):
            ctx.subscriptions.append(Closer(ctx))

        def deactivate(ctx):
            state = {"count": 3}
            if state["count"]:
                raise ValueError("deactivate broke")  # fails here
            return state
    """,
}

#: deactivate succeeds with state, a disposer fails.
DISPOSER_FAILS: Twin = {
    "javascript": """
        module.exports = {
            activate(ctx) {
                ctx.subscriptions.push({ dispose() { ctx.log.info("first disposed"); } });
                ctx.subscriptions.push({ dispose() { throw new Error("dispose broke"); } });  // fails here
            },
            deactivate(ctx) { return { count: 3 }; },
        };
    """,
    "python": """
        class Closer:
            def __init__(self, ctx, fail):
                self.ctx = ctx
                self.fail = fail

            def dispose(self):
                if self.fail:
                    raise RuntimeError("dispose broke")  # fails here
                self.ctx.log.info("first disposed")

        def activate(ctx):
            ctx.subscriptions.append(Closer(ctx, False))
            ctx.subscriptions.append(Closer(ctx, True))

        def deactivate(ctx):
            return {"count": 3}
    """,
}


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("scenario, twin, reason, logged", [
    ("deactivate throws", THROWS, "deactivate broke", "disposed"),
    ("a disposer fails", DISPOSER_FAILS, "dispose broke", "first disposed"),
])
def test_a_failed_deactivation_hands_over_no_state(tmp_path: Path, language: str, scenario: str, twin: Twin,
                                                   reason: str, logged: str) -> None:
    async def main() -> tuple[PluginError, RecordingGate, Any]:
        gate = RecordingGate("demo")
        async with loaded(tmp_path, language, twin[language]) as plugin:
            await plugin.activate(gate)
            with pytest.raises(PluginError) as failed:
                await plugin.deactivate()
            return failed.value, gate, await plugin.deactivate()

    error, gate, again = run(main)
    assert reason in error.reason and "not JSON" not in error.reason
    assert error.plugin_id == "demo" and error.file == f"demo/{MAIN[language]}"
    assert error.line == marked_line(twin[language])
    # every disposer still ran, and the plugin is deactivated for good
    assert messages(gate) == [logged] and gate.events == ["dispose_all"]
    assert again is None


def test_a_rejected_async_deactivate_hands_over_no_state(tmp_path: Path) -> None:
    source = """
        module.exports = {
            activate(ctx) {},
            async deactivate(ctx) {
                await null;
                throw new RangeError("too late");  // fails here
            },
        };
    """

    async def main() -> PluginError:
        async with loaded(tmp_path, "javascript", source) as plugin:
            await plugin.activate(RecordingGate("demo"))
            with pytest.raises(PluginError) as failed:
                await plugin.deactivate()
            assert await plugin.deactivate() is None
            return failed.value

    error = run(main)
    assert error.reason == "deactivate: RangeError: too late"
    assert (error.file, error.line) == ("demo/plugin.js", marked_line(source))


#: deactivate returns VALUE; the plugin keeps ctx to try it afterwards.
REFUSED_TEMPLATE: Twin = {
    "javascript": """
        "use strict";
        let kept;
        module.exports = {
            activate(ctx) {
                kept = ctx;
                ctx.subscriptions.push({ dispose() { ctx.log.info("disposed"); } });
            },
            deactivate(ctx) { ctx.log.info("deactivate"); return VALUE; },  // fails here
            async probe() {
                try { await kept.storage.get("k"); return "answered"; } catch (e) { return e.code; }
            },
        };
    """,
    "python": """
        class Thing:
            pass

        class Closer:
            def __init__(self, ctx):
                self.ctx = ctx

            def dispose(self):
                self.ctx.log.info("disposed")

        def cyclic():
            items = [1]
            items.append(items)
            return items

        def nested(levels):
            value = "core"
            for _ in range(levels):
                value = [value]
            return value

        def activate(ctx):
            ctx.subscriptions.append(Closer(ctx))

        def deactivate(ctx):
            ctx.log.info("deactivate")
            return VALUE  # fails here
    """,
}

NESTED_JS = "(() => { let v = 'core'; for (let i = 0; i < 65; i++) v = [v]; return v; })()"

#: (language, case) -> (value expression, what the error says, whether it names the line)
REFUSED: dict[tuple[str, str], tuple[str, str, bool]] = {
    ("javascript", "function"): ("{ f() {} }", "not JSON: a function at $.f", False),
    ("javascript", "cycle"): ("(() => { const a = { list: [] }; a.list.push(a); return a; })()",
                              "not JSON: it contains a cycle at $.list[0]", False),
    ("javascript", "NaN"): ("{ n: NaN }", "not JSON: NaN at $.n", False),
    ("javascript", "Infinity"): ("[1, -Infinity]", "not JSON: -Infinity at $[1]", False),
    ("javascript", "BigInt"): ("{ n: 1n }", "not JSON: a BigInt at $.n", False),
    ("javascript", "undefined item"): ("[1, undefined]", "not JSON: undefined at $[1]", False),
    ("javascript", "Map"): ("new Map([[1, 2]])", "not JSON: an object that is not a plain object or array at $", False),
    ("javascript", "class instance"): ("new (class Point { constructor() { this.x = 1; } })()",
                                       "not JSON: an object that is not a plain object or array at $", False),
    ("javascript", "too deep"): (NESTED_JS, "not JSON: nested more than 64 levels deep at $", False),
    ("javascript", "getter that throws"): ("{ ok: 1, get bad() { throw new Error('getter broke'); } }",
                                           "not JSON: reading it threw Error: getter broke", True),
    ("javascript", "Proxy whose trap throws"): (
        "new Proxy({}, { ownKeys() { throw new TypeError('trap broke'); } })",
        "not JSON: reading it threw TypeError: trap broke", True),
    ("javascript", "revoked Proxy"): ("(() => { const r = Proxy.revocable({}, {}); r.revoke(); return r.proxy; })()",
                                      "not JSON: reading it threw TypeError: Cannot perform 'get' on a proxy "
                                      "that has been revoked", False),
    ("javascript", "then getter that throws"): ("{ get then() { throw new Error('then broke'); } }",
                                                "not JSON: reading it threw Error: then broke", True),
    ("javascript", "Proxy of a function"): ("new Proxy(function () {}, {})", "not JSON: a function at $", False),
    ("javascript", "promise of a function"): ("Promise.resolve({ later: () => 1 })",
                                              "not JSON: a function at $.later", False),
    ("javascript", "lone surrogate"): ('{ s: "ok \\ud800" }',
                                       "not JSON: a string holds a lone surrogate, which is not Unicode text", False),
    ("python", "object"): ("Thing()", "not JSON: $: an object of a non-JSON type is not a JSON value", False),
    ("python", "set"): ('{"tags": {1, 2}}', "not JSON: $.tags: set is not a JSON value", False),
    ("python", "cyclic list"): ("cyclic()", "not JSON: $[1]: value contains itself", False),
    ("python", "non-string keys"): ('{1: "one"}', "not JSON: $: object keys must be strings, not int", False),
    ("python", "NaN"): ('{"n": float("nan")}', "not JSON: $.n: nan is not a JSON number", False),
    ("python", "function"): ('{"f": activate}', "not JSON: $.f: function is not a JSON value", False),
    ("python", "bytes"): ('b"raw"', "not JSON: $: bytes is not a JSON value", False),
    ("python", "lone surrogate"): ('{"s": "ok \\ud800"}',
                                   "not JSON: $.s: string contains a lone surrogate (U+D800 at index 3)", False),
    ("python", "too deep"): ("nested(65)", "not JSON: $" + "[0]" * 64 + ": nested deeper than 64 levels", False),
}


@pytest.mark.parametrize("language, case", list(REFUSED))
def test_state_that_is_not_json_is_refused_after_a_full_deactivation(tmp_path: Path, language: str,
                                                                    case: str) -> None:
    value, expected, names_line = REFUSED[(language, case)]
    source = textwrap.dedent(REFUSED_TEMPLATE[language]).replace("VALUE", value)

    async def main() -> tuple[PluginError, RecordingGate, Any, Any]:
        gate = RecordingGate("demo")
        async with loaded(tmp_path, language, source) as plugin:
            await plugin.activate(gate)
            with pytest.raises(PluginError) as refused:
                await plugin.deactivate()
            again = await plugin.deactivate()
            probe = await plugin.call_export("probe") if language == "javascript" else None
            return refused.value, gate, again, probe

    error, gate, again, probe = run(main)
    assert error.reason.startswith("deactivate returned state that ")
    assert expected in error.reason, error.reason
    assert error.plugin_id == "demo" and error.file == f"demo/{MAIN[language]}"
    assert error.line == (marked_line(source) if names_line else None)
    # The plugin was fully deactivated all the same, and only once.
    assert messages(gate) == ["deactivate", "disposed"]
    assert gate.events == ["dispose_all"]
    assert again is None
    if language == "javascript":
        assert probe == "E_STATE"  # the ctx the plugin kept is closed


@pytest.mark.parametrize("language", LANGUAGES)
def test_state_larger_than_the_limit_is_refused(tmp_path: Path, language: str) -> None:
    """MAX_STATE_BYTES counts UTF-8 bytes of compact JSON: a string of
    MAX - 2 characters (with its quotes) passes, one more does not, and
    neither do fewer characters that take more bytes."""
    repeat = {"javascript": "{text}.repeat({n})", "python": "{text} * {n}"}[language]
    cases = {
        "at the limit": repeat.format(text='"x"', n=MAX_STATE_BYTES - 2),
        "one byte over": repeat.format(text='"x"', n=MAX_STATE_BYTES - 1),
        "over in bytes, not in characters": repeat.format(text='"\\u00e9"', n=MAX_STATE_BYTES * 3 // 5),
        "over as a whole": {"javascript": "Array.from({ length: 2000 }, () => 'x'.repeat(1000))",
                            "python": '["x" * 1000 for _ in range(2000)]'}[language],
    }

    async def main() -> dict[str, Any]:
        outcomes: dict[str, Any] = {}
        for name, value in cases.items():
            source = textwrap.dedent(REFUSED_TEMPLATE[language]).replace("VALUE", value)
            gate = RecordingGate("demo")
            async with loaded(tmp_path / name.replace(" ", "-").replace(",", ""), language, source) as plugin:
                await plugin.activate(gate)
                try:
                    state = await plugin.deactivate()
                except PluginError as exc:
                    outcomes[name] = (exc.reason, exc.file, messages(gate))
                else:
                    outcomes[name] = len(json.dumps(state, separators=(",", ":"), ensure_ascii=False).encode())
        return outcomes

    outcomes = run(main)
    assert outcomes.pop("at the limit") == MAX_STATE_BYTES
    refused = (f"deactivate returned more than {MAX_STATE_BYTES} bytes of state", f"demo/{MAIN[language]}",
               ["deactivate", "disposed"])
    assert outcomes == dict.fromkeys(outcomes, refused) and len(outcomes) == 3


# ---------------------------------------------------------------------------
# what the plugin gets
# ---------------------------------------------------------------------------

#: Changes its previous state, reads it again, records what it saw.
MUTATOR: Twin = {
    "javascript": """
        module.exports = { async activate(ctx) {
            const state = ctx.previousState;
            state.count = 100;
            state.items.push(99);
            delete state.extra;
            await ctx.storage.set("saw", ctx.previousState);
            await ctx.storage.set("same", ctx.previousState === state);
        } };
    """,
    "python": """
        def activate(ctx):
            state = ctx.previous_state
            state["count"] = 100
            state["items"].append(99)
            del state["extra"]
            ctx.storage.set("saw", ctx.previous_state)
            ctx.storage.set("same", ctx.previous_state is state)
    """,
}

READER: Twin = {
    "javascript": """
        module.exports = { async activate(ctx) { await ctx.storage.set("saw", ctx.previousState); } };
    """,
    "python": """
        def activate(ctx):
            ctx.storage.set("saw", ctx.previous_state)
    """,
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_changing_previous_state_changes_only_the_plugins_own_copy(tmp_path: Path, language: str) -> None:
    shared = {"count": 3, "items": [1, 2], "extra": {"x": None}}
    original = json.loads(json.dumps(shared))

    async def main() -> tuple[dict[str, Any], dict[str, Any], RecordingGate]:
        store = Store(":memory:")
        first = RecordingGate("first", store, previous_state=shared)
        second = RecordingGate("second", store, previous_state=shared)
        shared["count"] = 1000  # the host's later changes do not reach the plugins either
        async with loaded(tmp_path, language, MUTATOR[language], plugin_id="first") as plugin:
            await plugin.activate(first)
        async with loaded(tmp_path, language, READER[language], plugin_id="second") as plugin:
            await plugin.activate(second)
        return first.data, second.data, first

    first, second, gate = run(main)
    # One object per activation: the plugin's change shows in its next read...
    assert first == {"saw": {"count": 100, "items": [1, 2, 99]}, "same": True}
    # ...but not in another plugin's state, nor in the host's.
    assert second == {"saw": original}
    assert json.loads(gate.previous_state_json) == original
    shared["count"] = 3
    assert shared == original


def test_the_javascript_ctx_stays_frozen(tmp_path: Path) -> None:
    source = """
        "use strict";
        module.exports = { async activate(ctx) {
            const before = ctx.previousState;
            const tried = {};
            const attempt = (name, fn) => {
                try { fn(); tried[name] = "allowed"; } catch (e) { tried[name] = e.name; }
            };
            attempt("assign", () => { ctx.previousState = { evil: true }; });
            attempt("define", () => Object.defineProperty(ctx, "previousState", { value: { evil: true } }));
            attempt("delete", () => { delete ctx.previousState; });
            const descriptor = Object.getOwnPropertyDescriptor(ctx, "previousState");
            attempt("getter", () => { descriptor.get.extra = 1; });
            attempt("proto", () => Object.setPrototypeOf(ctx, { previousState: { evil: true } }));
            await ctx.storage.set("tried", tried);
            await ctx.storage.set("after", [ctx.previousState, ctx.previousState === before,
                                            Object.isFrozen(ctx), descriptor.configurable,
                                            "set" in descriptor && descriptor.set !== undefined]);
        } };
    """

    async def main() -> dict[str, Any]:
        gate = RecordingGate("demo", previous_state={"count": 3})
        async with loaded(tmp_path, "javascript", source) as plugin:
            await plugin.activate(gate)
        return gate.data

    data = run(main)
    assert data["tried"] == dict.fromkeys(["assign", "define", "delete", "getter", "proto"], "TypeError")
    assert data["after"] == [{"count": 3}, True, True, False, False]


def test_the_python_ctx_attribute_cannot_be_replaced(tmp_path: Path) -> None:
    source = """
        def activate(ctx):
            tried = {}
            try:
                ctx.previous_state = {"evil": True}
                tried["assign"] = "allowed"
            except Exception as exc:
                tried["assign"] = str(exc)
            try:
                del ctx.previous_state
                tried["delete"] = "allowed"
            except Exception as exc:
                tried["delete"] = str(exc)
            ctx.storage.set("tried", tried)
            ctx.storage.set("after", ctx.previous_state)
    """

    async def main() -> dict[str, Any]:
        gate = RecordingGate("demo", previous_state={"count": 3})
        async with loaded(tmp_path, "python", source) as plugin:
            await plugin.activate(gate)
        return gate.data

    data = run(main)
    assert data["tried"] == dict.fromkeys(["assign", "delete"], "plugins cannot modify 'Context' objects")
    assert data["after"] == {"count": 3}


def test_the_shim_does_not_rely_on_globals_the_plugin_replaced(tmp_path: Path) -> None:
    """The plugin replaces the intrinsics a naive shim would use to read
    its state and to hand the next version its own; both still work."""
    source = """
        "use strict";
        const broken = () => { throw new Error("replaced by the plugin"); };
        JSON.stringify = broken;
        JSON.parse = broken;
        Object.keys = broken;
        Object.getPrototypeOf = () => null;
        Array.isArray = () => false;
        Reflect.apply = broken;
        Promise.resolve = broken;
        Promise.prototype.then = broken;
        Number.isFinite = () => true;
        let previous;
        module.exports = {
            activate(ctx) { previous = ctx.previousState; },
            async deactivate(ctx) {
                await null;
                return { previous, items: [1.5, "two", [true, null]], n: NaN === NaN ? 1 : 2 };
            },
        };
    """

    async def main() -> Any:
        async with loaded(tmp_path, "javascript", source) as plugin:
            await plugin.activate(RecordingGate("demo", previous_state={"count": 3, "items": ["a"]}))
            return await plugin.deactivate()

    assert run(main) == {"previous": {"count": 3, "items": ["a"]}, "items": [1.5, "two", [True, None]], "n": 2}


# ---------------------------------------------------------------------------
# the host side: ActivationContext(previous_state=...)
# ---------------------------------------------------------------------------

def gate_with(store: Store, previous_state: Any) -> ActivationContext:
    return ActivationContext(plugin_id="demo", plugin_version="2.0.0", store=store,
                             grants=GrantManager(store, lambda pid: ()), previous_state=previous_state)


def test_the_context_keeps_previous_state_as_compact_json(store: Store) -> None:
    assert gate_with(store, None).previous_state_json is None
    assert ActivationContext(plugin_id="demo", plugin_version="1.0.0", store=store,
                             grants=GrantManager(store, lambda pid: ())).previous_state_json is None
    state = {"count": 3, "items": ["h\u00e9", 1.5, None, True], "nested": {"a": []}}
    gate = gate_with(store, state)
    assert gate.previous_state_json == '{"count":3,"items":["h\u00e9",1.5,null,true],"nested":{"a":[]}}'
    state["count"] = 4  # taken when the context was made
    assert json.loads(gate.previous_state_json)["count"] == 3
    assert gate.previous_state_json is gate.previous_state_json
    assert gate_with(store, 0).previous_state_json == "0"
    assert gate_with(store, "x" * (MAX_STATE_BYTES - 2)).previous_state_json is not None


@pytest.mark.parametrize("bad, expected", [
    ({"s": {1, 2}}, "$.s: set is not a JSON value"),
    ([float("inf")], "$[0]: inf is not a JSON number"),
    ({1: "x"}, "object keys must be strings"),
    ("x" * (MAX_STATE_BYTES - 1), f"larger than {MAX_STATE_BYTES} bytes"),
])
def test_the_context_refuses_previous_state_that_could_not_have_been_handed_over(store: Store, bad: Any,
                                                                                  expected: str) -> None:
    with pytest.raises(HostrtError) as refused:
        gate_with(store, bad)
    assert refused.value.message.startswith("previous state refused: ") and expected in refused.value.message
