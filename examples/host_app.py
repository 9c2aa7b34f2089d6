"""A small host application embedding hostrt.

Run with ``make demo``. It discovers the example plugins, grants what they
request, activates them in dependency order, shows what each did, emits a
host event, lets a plugin page through a host method, invokes plugin
commands (one of which publishes an event others handle), restarts to show
that storage and grants persist, shows a revoked grant blocking a plugin,
hot-reloads a watched copy of a plugin (a new version with its state handed
over, a typo that leaves the running version serving, the fix), and shuts
down cleanly. Exits non-zero if anything is not as
expected, so the demo doubles as a smoke test.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import sys
import tempfile
from pathlib import Path

from hostrt import Host, PayloadError, PluginState, ReloadOutcome, ReloadResult
from hostrt.codeframe import code_frame

PLUGINS = Path(__file__).parent / "plugins"
APP_VERSION = "2.4.1"
#: What the host application owns and lets plugins read through a method.
DOCUMENTS = [{"id": n, "title": title} for n, title in enumerate(
    ["Roadmap", "Release checklist", "Budget 2027", "Team offsite", "Style guide", "Onboarding", "Changelog"], 1)]


class PluginLogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        plugin = getattr(record, "plugin_id", None)
        fields = getattr(record, "plugin_fields", None)
        head = f"  [{plugin}]" if plugin else f"  ({record.name})"
        text = f"{head} {record.levelname.lower()}: {record.getMessage()}"
        return text + (f"  {fields}" if fields else "")


def setup_logging() -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(PluginLogFormatter())
    plugins = logging.getLogger("hostrt.plugins")
    plugins.setLevel(logging.INFO)
    plugins.addHandler(handler)
    plugins.propagate = False


def show_states(host: Host) -> None:
    for pid, record in host.plugins.items():
        line = f"  {pid:<10} {record.version:<7} {record.state.value}"
        if record.error is not None:
            line += f"  ({record.error.code}: {record.error.message})"
        print(line)
    for name, record in host.invalid.items():
        print(f"  {name:<10} invalid: {record.error}")


def build_host(db: Path, plugins: Path = PLUGINS) -> Host:
    """The host with the event and the method this application offers."""
    host = Host(plugins, db)
    host.declare_event("app.started", description="The application finished starting.", schema={
        "type": "object",
        "properties": {"app": {"type": "string"}, "version": {"type": "string", "pattern": "^[0-9]+[.][0-9]+[.][0-9]+$"}},
        "required": ["app", "version"],
        "additionalProperties": False,
    })

    async def documents(params: dict, page) -> list[dict]:
        # A paged method: hostrt takes limit/offset out of params, caps the
        # limit at max_page_size, and cuts the page out of the list.
        return DOCUMENTS

    host.expose("workspace.documents", documents, max_page_size=3, description="The workspace's documents.")
    return host


async def run_once(db: Path, label: str) -> Host:
    print(f"\n== {label}")
    host = build_host(db)
    await host.discover()
    print("discovered:")
    show_states(host)
    for pid in host.plugins:
        added = host.grants.grant_requested(pid, actor="demo")
        if added:
            print(f"granted {pid}: {', '.join(added)}")
    print("activating in dependency order:")
    await host.activate_all()
    show_states(host)
    return host


async def events_and_commands(host: Host) -> list[str]:
    failures = []
    print("\n== events, host methods and commands")
    print("the host emits app.started:")
    report = await host.emit("app.started", {"app": "notebook", "version": APP_VERSION})
    print(f"  delivered to {', '.join(report.delivered)}; failed: {list(report.failed) or 'none'}")
    if sorted(report.delivered) != ["digest-py"]:
        failures.append(f"app.started reached {report.delivered}")
    print("commands the active plugins offer:")
    for command in host.commands():
        print(f"  {command.plugin_id}: {command.name} - {command.description}")
    print("the host invokes notes.add (notes-py publishes notes.added to its subscribers):")
    number = await host.invoke("notes-py", "notes.add", {"text": "Plan the #launch party for the #release"})
    await host.events_idle()  # digest-py (Python) and hello-js (JavaScript) handle it
    print(f"  note number {number}")
    found = await host.invoke("notes-py", "notes.search", {"tag": "release"})
    print(f"the host invokes notes.search for #release: {found}")
    if len(found) < 3:
        failures.append("notes.search did not find the new note")
    print("a payload that breaks the event's schema never reaches a subscriber:")
    try:
        await host.emit("app.started", {"app": "notebook", "version": "latest"})
        failures.append("an invalid app.started payload was accepted")
    except PayloadError as exc:
        print(f"  {exc.code}: {exc}")
    return failures


async def hot_reload(db: Path, workdir: Path) -> list[str]:
    """Watch a copy of the plugins folder and save new versions of hello-js."""
    failures = []
    print("\n== hot reload (a watched copy of the plugins folder)")
    plugins = workdir / "plugins"
    shutil.copytree(PLUGINS, plugins)
    host = build_host(db, plugins)
    await host.discover()
    await host.activate_all()
    await host.invoke("notes-py", "notes.add", {"text": "Try #hot reload"})
    await host.events_idle()
    results: asyncio.Queue[ReloadResult] = asyncio.Queue()
    main_js = plugins / "hello-js" / "plugin.js"
    original = main_js.read_text()

    async def save(text: str, expected: ReloadOutcome) -> None:
        main_js.write_text(text)
        result = await asyncio.wait_for(results.get(), 10)
        print(f"  {result.plugin_id}: {result.outcome}" + ("" if result.error else " (new version active)"))
        if result.error is not None:
            print(f"  {result.error.code}: {result.error.message}")
            print("\n".join("    " + line for line in (code_frame(plugins, result.error) or "").splitlines()))
        if result.outcome is not expected:
            failures.append(f"a save of hello-js ended {result.outcome}, not {expected}")

    async with host.watch(on_reload=results.put):
        print("saving hello-js with a new greeting (deactivate hands its count to the new version):")
        await save(original.replace("`hello, ${name}!`", "`hi again, ${name}!`"), ReloadOutcome.RELOADED)
        print("saving hello-js with a typo (the running version keeps serving):")
        await save(original.replace("let welcomed = 0;", "let welcomed = ;"), ReloadOutcome.KEPT)
        print("saving the fix:")
        await save(original, ReloadOutcome.RELOADED)
    await host.close()
    return failures


async def main() -> int:
    setup_logging()
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="hostrt-demo-") as tmp:
        db = Path(tmp) / "host.db"

        host = await run_once(db, "first run")
        failures += [pid for pid, r in host.plugins.items() if r.state is not PluginState.ACTIVE]
        print("plugin storage after the first run:")
        for pid in host.plugins:
            keys = host.store.kv_keys(pid)
            print(f"  {pid}: {len(keys)} keys, {host.store.kv_usage(pid)} bytes ({', '.join(keys[:6])})")
        failures += await events_and_commands(host)
        print("deactivating (dependents first):")
        await host.close()

        host = await run_once(db, "second run (restart: storage, settings and grants persist)")
        if host.store.kv_get("hello-py", "activations") != "2":
            failures.append("hello-py did not count two activations")

        print("\n== the user revokes settings.write from notes-py while it is active")
        host.grants.revoke("notes-py", "settings.write", actor="demo")
        await host.deactivate("notes-py")
        await host.activate("notes-py")
        show_states(host)
        if host.plugins["notes-py"].state is not PluginState.BLOCKED:
            failures.append("notes-py was not blocked after the revoke")

        print("\n== the user changes a setting and grants again")
        host.set_setting("hello-py", "shout", True)
        host.grants.grant("notes-py", "settings.write", actor="demo")
        await host.deactivate("hello-py")
        await host.activate_all()
        show_states(host)
        failures += [pid for pid, r in host.plugins.items() if r.state is not PluginState.ACTIVE]

        print("\naudit log (newest first):")
        for entry in host.store.audit_log(limit=8):
            print(f"  {entry.plugin_id or '-':<10} {entry.action:<14} {entry.detail}")
        print("\nshutting down:")
        await host.close()

        failures += await hot_reload(db, Path(tmp))

    if failures:
        print(f"\ndemo FAILED: {failures}", file=sys.stderr)
        return 1
    print("\ndemo finished: all plugins behaved as expected")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
