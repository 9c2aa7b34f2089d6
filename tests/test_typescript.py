"""The JavaScript plugin API declarations (js_api/hostrt.d.ts) and the
JavaScript examples agree: tsc type-checks the examples against the
declarations, and the check is shown to catch misuse.

Needs the JavaScript tooling that `make test` installs (npm ci at the root
and in examples/npm/slugs-js, then the example bundle build).
"""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TSCONFIG = ROOT / "tsconfig.json"
DECLARATIONS = ROOT / "js_api" / "hostrt.d.ts"
TSC = ROOT / "node_modules" / ".bin" / "tsc"
BUNDLE = ROOT / "examples" / "plugins" / "slugs-js" / "plugin.js"
BUNDLE_SOURCE = ROOT / "examples" / "npm" / "slugs-js" / "src" / "plugin.js"
HELLO = ROOT / "examples" / "plugins" / "hello-js" / "plugin.js"

GOOD_PLUGIN = """\
/** @param {import("hostrt").Context} ctx */
exports.activate = async function activate(ctx) {
    const runs = (await ctx.storage.get("runs", 0)) + 1;
    await ctx.storage.set("runs", runs);
    ctx.log.info("activated", { runs });
};
"""

#: Events, host methods and commands, used as the guide shows.
GOOD_EVENTS_PLUGIN = """\
/** @typedef {{ to: string, n: number }} Greeting */
/** @typedef {{ items: string[], limit: number, offset: number, total: number, nextOffset: number | null }} Page */

/** @param {import("hostrt").Context} ctx */
exports.activate = async function activate(ctx) {
    ctx.subscriptions.push(ctx.events.on("greeting.*", /** @param {Greeting} payload */ async (payload, info) => {
        ctx.log.info(info.name + " from " + info.source, { to: payload.to, n: payload.n });
    }));
    ctx.subscriptions.push(ctx.events.on("app.started", () => {}));
    await ctx.events.emit("greeting.sent", { to: "world", n: 1 });
    await ctx.events.emit("greeting.pinged");
    /** @type {Page} */
    const page = await ctx.host.call("systems.list", { limit: 10 });
    const count = await ctx.host.call("systems.count");
    ctx.log.info("systems", { first: page.items[0] ?? null, count });
    const greet = ctx.commands.register("greet", /** @param {{ who: string }} params */ (params) => "hello " + params.who);
    await greet.registered;
    ctx.subscriptions.push(greet);
    ctx.subscriptions.push(ctx.commands.register("ping", async () => { await null; }));
    await greet.dispose();
    try {
        await ctx.events.emit("greeting.sent", { to: "again", n: 2 });
    } catch (error) {
        if (error instanceof HostrtError && error.code === "E_RATE_LIMIT") return;
        throw error;
    }
};
"""


#: State handed from one version to the next across a reload.
GOOD_STATE_PLUGIN = """\
/** @typedef {{ count: number, items: string[] }} State */

/** @type {State} */
let state = { count: 0, items: [] };

/** @param {import("hostrt").Context} ctx */
exports.activate = function activate(ctx) {
    const previous = ctx.previousState;
    if (typeof previous === "object" && previous !== null && "count" in previous && "items" in previous) {
        state = /** @type {State} */ (previous);
    }
    state.count += 1;
};

/** @type {import("hostrt").PluginModule["deactivate"]} */
exports.deactivate = async function deactivate(ctx) {
    await ctx.storage.set("count", state.count);
    return state;
};
"""


def tsc(config: Path) -> subprocess.CompletedProcess:
    if not TSC.exists():
        pytest.fail(f"{TSC.relative_to(ROOT)} is missing: run `make test`, which installs the JavaScript tooling")
    return subprocess.run(
        [str(TSC), "-p", str(config), "--noEmit", "--pretty", "false"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )


def check_one(tmp_path: Path, source: str) -> subprocess.CompletedProcess:
    """tsc over one plugin file, with the repository's compiler options."""
    plugin = tmp_path / "plugin.js"
    plugin.write_text(source, encoding="utf-8")
    config = tmp_path / "tsconfig.json"
    config.write_text(json.dumps({
        "extends": str(TSCONFIG),
        "include": [],
        "files": [str(plugin), str(DECLARATIONS)],
    }), encoding="utf-8")
    return tsc(config)


def test_examples_type_check_against_the_declarations():
    listed = tsc(TSCONFIG)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    files = subprocess.run(
        [str(TSC), "-p", str(TSCONFIG), "--listFilesOnly"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    ).stdout.splitlines()
    checked = {Path(f).resolve() for f in files}
    assert {DECLARATIONS, HELLO, BUNDLE_SOURCE} <= checked
    assert BUNDLE not in checked, "the generated bundle must not be type-checked"


@pytest.mark.parametrize("source", [GOOD_PLUGIN, GOOD_EVENTS_PLUGIN, GOOD_STATE_PLUGIN],
                         ids=["storage", "events", "state"])
def test_a_correct_plugin_passes(tmp_path, source):
    result = check_one(tmp_path, source)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("await ctx.storage.get(42);", "Argument of type 'number' is not assignable to parameter of type 'string'"),
        ("ctx.nope();", "Property 'nope' does not exist on type 'Context'"),
        ("await ctx.storage.set('when', new Date());", "not assignable to parameter of type 'JSONValue'"),
        ("await ctx.settings.set('f', () => 1);", "not assignable to parameter of type 'JSONValue'"),
        ("ctx.log.info('x', 'not an object');", "not assignable to parameter of type 'JSONObject'"),
        ("ctx.subscriptions.push({ close() {} });", "'close' does not exist in type 'Disposable'"),
        ("ctx.plugin.id = 'other';", "read-only property"),
        ("ctx.previousState = { count: 1 };", "read-only property"),
        ("ctx.previousState.count;", "'ctx.previousState' is of type 'unknown'"),
        ("await fetch('https://example.org/');", "Cannot find name 'fetch'"),
        ("new SharedArrayBuffer(8);", "Cannot find name 'SharedArrayBuffer'"),
        ("new FinalizationRegistry(() => {});", "Cannot find name 'FinalizationRegistry'"),
        ("WebAssembly.compile(new Uint8Array(8));", "Cannot find name 'WebAssembly'"),
        ("process.exit(1);", "Cannot find name 'process'"),
        ("await ctx.events.emit('greeting.sent', new Date());",
         "not assignable to parameter of type 'JSONValue | undefined'"),
        ("ctx.events.on(42, () => {});", "Argument of type 'number' is not assignable to parameter of type 'string'"),
        ("ctx.events.on('greeting.*', 'handler');", "not assignable to parameter of type 'EventHandler<JSONValue>'"),
        ("ctx.events.on('greeting.*', (payload, info) => info.nope);", "'nope' does not exist on type 'EventInfo'"),
        ("ctx.events.on('greeting.*', () => {}).registered = null;", "read-only property"),
        ("ctx.subscriptions.push(ctx.events);", "Property 'dispose' is missing in type 'Events'"),
        ("await ctx.host.call('app.x', {}, 'extra');", "Expected 1-2 arguments, but got 3"),
        ("await ctx.host.call('app.x', () => 1);", "not assignable to parameter of type 'JSONValue | undefined'"),
        ("ctx.commands.register('greet', () => new Map());", "'Map<any, any>' is not assignable to type"),
        ("ctx.commands.register('greet', (params) => params.who);", "Property 'who' does not exist"),
    ],
)
def test_misuse_of_the_api_fails_the_check(tmp_path, line, message):
    source = GOOD_PLUGIN.replace('    ctx.log.info("activated", { runs });\n',
                                 f'    ctx.log.info("activated", {{ runs }});\n    {line}\n')
    assert line in source
    result = check_one(tmp_path, source)
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"tsc accepted {line!r}:\n{output}"
    assert "plugin.js(6," in output, output  # names the file and the line of the misuse
    assert message in output, output


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        ("new Map()", "Type 'Map<any, any>' is not assignable to type"),
        ("() => 1", "is not assignable to type"),
    ],
)
def test_deactivate_must_return_json(tmp_path, returned, message):
    source = (GOOD_PLUGIN + "\n/** @type {import(\"hostrt\").PluginModule[\"deactivate\"]} */\n"
              f"exports.deactivate = async function deactivate(ctx) {{ return {returned}; }};\n")
    result = check_one(tmp_path, source)
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"tsc accepted deactivate returning {returned}:\n{output}"
    assert message in output, output


def test_the_bundle_is_built_and_not_committed():
    git = shutil.which("git")
    assert git is not None, "git is needed to check what is committed"
    relative = str(BUNDLE.relative_to(ROOT))
    tracked = subprocess.run([git, "ls-files", "--error-unmatch", relative],
                             cwd=ROOT, capture_output=True, text=True)
    assert tracked.returncode != 0, f"{relative} is build output and must not be committed"
    ignored = subprocess.run([git, "check-ignore", "-q", relative], cwd=ROOT)
    assert ignored.returncode == 0, f"{relative} should be listed in .gitignore"
    assert BUNDLE.exists(), f"{relative} was not built: run `make test`, which builds it"
    text = BUNDLE.read_text(encoding="utf-8")
    assert "module.exports" in text
    assert 'require("slugify")' not in text, "the dependency must be bundled, not required"


def test_the_bundle_loads_as_commonjs_without_require():
    node = shutil.which("node")
    assert node is not None, "node is needed: run `make test` on a machine with Node.js"
    # Run the bundle as the isolate does: a plain script with module, exports
    # and a require that throws, and nothing of Node's in scope.
    script = """
        const vm = require("vm");
        const source = require("fs").readFileSync(process.argv[1], "utf8");
        const module = { exports: {} };
        const scope = { module, exports: module.exports,
                        require(name) { throw new Error("require(" + name + ") called"); } };
        vm.runInNewContext(source, scope, { filename: "plugin.js" });
        console.log(JSON.stringify(Object.keys(module.exports).map((k) => [k, typeof module.exports[k]])));
    """
    result = subprocess.run([node, "-e", script, str(BUNDLE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout) == [["activate", "function"]]
