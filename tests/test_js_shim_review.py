"""Attacks on the bootstrap shim's memory and time guarantees found in a
review of the shim, kept as regression tests: builtins that make V8 abort
the process or loop where no termination reaches, ICU copies outside every
limit, and address space reserved by resizable buffers.

Every attack runs in a child process: some abort the process with a fatal
V8 error, some leave a thread spinning that no termination reaches, and some
make the process grow by gigabytes. The child reports what it saw; the test
decides.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

MIB = 1024 * 1024
TESTS = Path(__file__).parent


def run_child(tmp_path: Path, body: str, *, timeout: float = 120) -> tuple[int, list[str], str]:
    """Run ``body`` (the inside of ``async def main()``, with ``active``,
    ``make_source``, ``ROOT`` and the plugin API at hand) in a fresh
    interpreter. Returns the exit code, the lines it printed and its stderr."""
    script = textwrap.dedent("""
        import asyncio, json, os, resource, sys, time
        sys.path.insert(0, TESTS_DIR)
        from pathlib import Path
        from conftest import RecordingGate
        from test_js_runtime import active, make_source
        from hostrt.errors import PluginError
        from hostrt.runtimes.js import JavaScriptRuntime
        ROOT = Path(ROOT_DIR)

        def peak_rss() -> int:
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

        async def main():
        BODY
        asyncio.run(main())
    """)
    script = (script.replace("TESTS_DIR", repr(str(TESTS))).replace("ROOT_DIR", repr(str(tmp_path)))
              .replace("\nBODY\n", "\n" + textwrap.indent(textwrap.dedent(body).strip("\n"), "    ") + "\n"))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout)
    return out.returncode, out.stdout.strip().splitlines(), out.stderr


def probe_source(expr: str) -> str:
    return ("module.exports = { activate() {}, probe() {\n"
            f"  try {{ const r = ({expr}); return ['ran', typeof r]; }}\n"
            "  catch (e) { return [e.name, String(e.message)]; }\n} };\n")


# --------------------------------------------------------------------------
# 1. builtins that still build a huge array in one C++ call

#: Each makes V8 abort the whole process ("Fatal JavaScript out of memory:
#: invalid array length" or "Fatal JavaScript invalid size error") from a
#: 16 MiB plugin. A string of 2**28 characters costs the plugin almost
#: nothing until it is flattened; the arrays are built from it in C++.
ONE_STEP_BUILTINS = {
    "sort-array-like": "Array.prototype.sort.call({ length: 2 ** 31 })",
    "sort-string-object": "Array.prototype.sort.call(new String('x'.repeat(2 ** 28)))",
    "split-into-characters": "'x'.repeat(2 ** 28).split('')",
    "split-on-a-separator": "'x,'.repeat(2 ** 27).split(',')",
    "match-global": "'x'.repeat(2 ** 28).match(/x/g)",
    "replace-global-with-a-function": "'x'.repeat(2 ** 28).replace(/x/g, (m) => m)",
}


@pytest.mark.parametrize("expr", list(ONE_STEP_BUILTINS.values()), ids=list(ONE_STEP_BUILTINS))
def test_builtins_that_build_huge_arrays_in_one_step_do_not_abort_the_host(tmp_path: Path, expr: str) -> None:
    code, lines, stderr = run_child(tmp_path, f"""
        async with active(ROOT, {probe_source(expr)!r}, timeout_ms=5000, memory_mb=16) as (plugin, _):
            try:
                print(json.dumps(await plugin.call_export("probe")))
            except PluginError as exc:
                print(json.dumps(["stopped", exc.code]))
    """)
    fatal = [line for line in stderr.splitlines() if "Fatal" in line]
    assert code == 0, f"the host process died (exit code {code}): {fatal or stderr[-600:]}"
    outcome = json.loads(lines[-1])
    assert outcome[0] in ("RangeError", "stopped"), outcome


# --------------------------------------------------------------------------
# 2. builtin loops no termination reaches

#: Loops inside V8 builtins (Torque and C++) over a length the plugin
#: chooses, with no element to visit, so no JavaScript runs and no stack
#: guard is ever checked: V8's TerminateExecution never lands.
ENDLESS_BUILTIN_LOOPS = {
    "includes-on-an-array-like": "Array.prototype.includes.call({ length: 2 ** 53 - 1 }, 1)",
    "for-each-that-never-calls-back": "Array.prototype.forEach.call({ length: 2 ** 53 - 1 }, () => {})",
    "index-of-on-a-sparse-array": "new Array(2 ** 32 - 1).indexOf(1)",
    "concat-of-a-spreadable-array-like": "[].concat({ length: 2 ** 32 - 1, [Symbol.isConcatSpreadable]: true })",
}


@pytest.mark.parametrize("expr", list(ENDLESS_BUILTIN_LOOPS.values()), ids=list(ENDLESS_BUILTIN_LOOPS))
def test_builtin_loops_over_a_huge_length_end_with_their_plugin(tmp_path: Path, expr: str) -> None:
    code, lines, stderr = run_child(tmp_path, f"""
        plugin = await JavaScriptRuntime().load(make_source(ROOT, {probe_source(expr)!r}, timeout_ms=500))
        await plugin.activate(RecordingGate("demo"))
        try:
            print(json.dumps(await plugin.call_export("probe")))
        except PluginError as exc:
            print(json.dumps(["stopped", exc.code]))
        try:
            await asyncio.wait_for(plugin.close(), 5)
            print("closed")
        except asyncio.TimeoutError:
            print("close() still waiting for the isolate thread after 5 s")
        sys.stdout.flush()
        os._exit(0)  # a thread stuck in V8 would keep the interpreter from exiting
    """, timeout=60)
    assert code == 0, stderr[-600:]
    assert json.loads(lines[0])[0] in ("RangeError", "stopped"), lines
    assert lines[-1] == "closed", lines[-1]


# --------------------------------------------------------------------------
# 3. memory outside both of the plugin's limits

def test_intl_list_format_does_not_grow_the_host_past_the_plugin_limits(tmp_path: Path) -> None:
    source = """
        module.exports = { activate() {}, probe() {
            const s = "x".repeat(1e6);
            s.indexOf("y");  // flattened once: 1 MB of heap
            const list = new Array(100).fill(s);
            try { return ["ran", new Intl.ListFormat("en", { type: "unit", style: "narrow" }).format(list).length]; }
            catch (e) { return [e.name, e.message]; }
        } };
    """
    code, lines, stderr = run_child(tmp_path, f"""
        async with active(ROOT, {source!r}, timeout_ms=5000, memory_mb=16) as (plugin, _):
            before = peak_rss()
            try:
                outcome = await plugin.call_export("probe")
            except PluginError as exc:
                outcome = ["stopped", exc.code]  # reported at once; ICU keeps going
        # Closing joins the isolate's thread: whatever ICU was doing is over.
        print(json.dumps([outcome, peak_rss() - before]))
    """)
    assert code == 0, stderr[-600:]
    _outcome, growth = json.loads(lines[-1])
    allowance = 2 * 16 * MIB + 4 * MIB + 64 * MIB  # the engine's RSS backstop for a 16 MiB plugin
    assert growth < allowance, f"the host grew by {growth >> 20} MiB"


def test_resizable_buffers_cannot_take_the_address_space_of_other_plugins(tmp_path: Path) -> None:
    hog = """
        const keep = [];
        module.exports = { activate() {}, hog() {
            for (let e = 34; e >= 12; e--) {
                try { for (;;) keep.push(new ArrayBuffer(0, { maxByteLength: 2 ** e })); } catch (e) {}
            }
            return keep.length;
        } };
    """
    victim = """
        module.exports = { activate() {}, work() {
            try { return new ArrayBuffer(16, { maxByteLength: 1024 }).maxByteLength; }
            catch (e) { return e.name + ": " + e.message; }
        } };
    """
    code, lines, stderr = run_child(tmp_path, f"""
        async with active(ROOT, {hog!r}, plugin_id="hog", memory_mb=16) as (hog, _):
            held = await hog.call_export("hog")
            async with active(ROOT, {victim!r}, plugin_id="victim", memory_mb=16) as (victim, _):
                print(json.dumps([held, await victim.call_export("work")]))
    """)
    assert code == 0, stderr[-600:]
    held, seen = json.loads(lines[-1])
    assert seen == 1024, f"after the other plugin made {held} resizable buffers: {seen}"

