"""Hot reload: ``Host.reload`` swaps a running plugin for the version on
disk, atomically, keeping the running one whenever the new one fails.

These tests call ``reload`` directly (the watcher's part is in
tests/test_watch.py); every plugin is real code in the real runtimes, and
the store is a real SQLite file.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from hostrt import (
    CapabilityError,
    DependencyError,
    Host,
    HostPolicy,
    ManifestError,
    PluginCompileError,
    PluginError,
    PluginState,
    ReloadOutcome,
)

from conftest import manifest_dict

LANGUAGES = ("python", "javascript")

#: A plugin answering the command "version" with its tag and how many
#: reloads its state has lived through (handed over by deactivate).
VERSIONED = {
    "python": """
STATE = {{"reloads": 0}}

def activate(ctx):
    previous = ctx.previous_state
    if previous is not None:
        STATE["reloads"] = previous["reloads"] + 1
    {extra}
    def version(params):
        return {{"tag": "{tag}", "reloads": STATE["reloads"]}}
    ctx.commands.register("version", version)

def deactivate(ctx):
    return {{"reloads": STATE["reloads"]}}
""",
    "javascript": """
let reloads = 0;
exports.activate = async (ctx) => {{
  if (ctx.previousState !== undefined) reloads = ctx.previousState.reloads + 1;
  {extra}
  ctx.subscriptions.push(ctx.commands.register("version", () => ({{ tag: "{tag}", reloads }})));
}};
exports.deactivate = () => ({{ reloads }});
""",
}

#: Source that does not compile, with the bad line's number.
SYNTAX_ERROR = {
    "python": ("def activate(ctx):\n    pass\n\ndef broken(:\n    pass\n", 4),
    "javascript": ("exports.activate = () => {};\n\nconst broken = ;\n", 3),
}

#: ``extra`` code for activate that fails, on line 5 (Python) or 4 (JavaScript).
FAILING_ACTIVATE = {
    "python": ('raise RuntimeError("new version refuses to start")', 7),
    "javascript": ('throw new Error("new version refuses to start");', 4),
}

MAIN = {"python": "plugin.py", "javascript": "plugin.js"}


def run(coro):
    return asyncio.run(coro)


def write(plugins: Path, pid: str, language: str, tag: str = "v1", *, extra: str = "",
          source: str | None = None, **manifest: Any) -> Path:
    """Write (or overwrite) plugin ``pid`` in ``language``."""
    folder = plugins / pid
    folder.mkdir(parents=True, exist_ok=True)
    data = manifest_dict(pid, commands=[{"name": "version"}], **manifest)
    if language == "javascript":
        data.update(runtime="javascript", main="plugin.js")
    (folder / "plugin.json").write_text(json.dumps(data))
    text = source if source is not None else textwrap.dedent(VERSIONED[language]).format(tag=tag, extra=extra)
    (folder / MAIN[language]).write_text(text.lstrip("\n"))
    return folder


async def host_with(plugins: Path, db: Path, **policy: Any) -> Host:
    host = Host(plugins, db, policy=HostPolicy(**policy) if policy else None)
    await host.discover()
    for pid in host.plugins:
        host.grants.grant_requested(pid)
    await host.activate_all()
    return host


def stored(host: Host, key: str, pid: str = "probe") -> Any:
    text = host.store.kv_get(pid, key)
    return None if text is None else json.loads(text)


async def version(host: Host, pid: str = "probe") -> dict[str, Any]:
    return await host.invoke(pid, "version")


@pytest.mark.parametrize("language", LANGUAGES)
def test_an_edit_swaps_in_the_new_version_with_state_storage_settings_and_grants(language, plugins_dir, tmp_path):
    settings = {"type": "object", "properties": {"greeting": {"type": "string", "default": "hi"}}}
    write(plugins_dir, "probe", language, "v1", capabilities=["storage"], settings=settings)

    async def main():
        async with await host_with(plugins_dir, tmp_path / "host.db") as host:
            assert await version(host) == {"tag": "v1", "reloads": 0}
            host.store.kv_set("probe", "kept", '"yes"', quota_bytes=1000)
            host.set_setting("probe", "greeting", "hello")
            write(plugins_dir, "probe", language, "v2", capabilities=["storage"], settings=settings,
                  version="1.1.0")
            result = await host.reload("probe")
            assert result.outcome is ReloadOutcome.RELOADED and result.error is None
            assert (result.previous_version, result.version, result.state) == ("1.0.0", "1.1.0", PluginState.ACTIVE)
            assert result.seconds > 0
            assert await version(host) == {"tag": "v2", "reloads": 1}
            assert host.plugins["probe"].version == "1.1.0"
            # a third version: the state keeps travelling
            write(plugins_dir, "probe", language, "v3", capabilities=["storage"], settings=settings)
            assert (await host.reload("probe")).outcome is ReloadOutcome.RELOADED
            assert await version(host) == {"tag": "v3", "reloads": 2}
            assert stored(host, "kept") == "yes"
            assert host.get_settings("probe") == {"greeting": "hello"}
            assert host.grants.list("probe") == ["storage"]
            reloads = host.store.audit_log(plugin_id="probe", action="reload")
            assert [e.detail["outcome"] for e in reloads] == ["reloaded", "reloaded"]

    run(main())


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_syntax_error_keeps_the_running_version_and_a_fix_recovers(language, plugins_dir, tmp_path):
    write(plugins_dir, "probe", language, "v1")

    async def main():
        async with await host_with(plugins_dir, tmp_path / "host.db") as host:
            await version(host)
            source, line = SYNTAX_ERROR[language]
            write(plugins_dir, "probe", language, source=source)
            result = await host.reload("probe")
            assert result.outcome is ReloadOutcome.KEPT and result.state is PluginState.ACTIVE
            assert isinstance(result.error, PluginCompileError)
            assert (result.error.file, result.error.line) == (f"probe/{MAIN[language]}", line)
            assert "probe" in str(result)
            # the old version still serves, and never went through deactivate
            assert await version(host) == {"tag": "v1", "reloads": 0}
            write(plugins_dir, "probe", language, "v2")
            result = await host.reload("probe")
            assert result.outcome is ReloadOutcome.RELOADED
            assert await version(host) == {"tag": "v2", "reloads": 1}

    run(main())


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_failing_activate_restores_the_previous_version_with_its_state(language, plugins_dir, tmp_path):
    write(plugins_dir, "probe", language, "v1", capabilities=["storage"])

    async def main():
        async with await host_with(plugins_dir, tmp_path / "host.db") as host:
            extra, line = FAILING_ACTIVATE[language]
            write(plugins_dir, "probe", language, "v2", extra=extra, capabilities=["storage"])
            result = await host.reload("probe")
            assert result.outcome is ReloadOutcome.RESTORED and result.state is PluginState.ACTIVE
            assert isinstance(result.error, PluginError)
            assert "refuses to start" in result.error.message
            assert (result.error.file, result.error.line) == (f"probe/{MAIN[language]}", line)
            # the version running is the one loaded before (from memory: the
            # file on disk is the failing one), and it got its state back
            assert await version(host) == {"tag": "v1", "reloads": 1}
            assert host.plugins["probe"].version == "1.0.0"
            assert host.plugins["probe"].error is None

    run(main())


def test_when_neither_version_starts_the_plugin_fails_and_its_dependents_are_blocked(plugins_dir, tmp_path):
    # The new version sets a flag and fails; the old one refuses to start
    # once the flag is set, so the restore fails too.
    old = ('if ctx.storage.get("poisoned"):\n'
           '        raise RuntimeError("poisoned")')
    write(plugins_dir, "probe", "python", "v1", extra=old, capabilities=["storage"])
    write(plugins_dir, "user", "python", "u1",
          relationships={"requires": [{"id": "probe", "versionRange": "^1.0.0"}]})

    async def main():
        async with await host_with(plugins_dir, tmp_path / "host.db") as host:
            assert host.plugins["user"].state is PluginState.ACTIVE
            new = ('ctx.storage.set("poisoned", True)\n'
                   '    raise RuntimeError("new version refuses to start")')
            write(plugins_dir, "probe", "python", "v2", extra=new, capabilities=["storage"])
            results = {r.plugin_id: r for r in await host.sync_folders(["probe"])}
            assert results["probe"].outcome is ReloadOutcome.FAILED
            assert "refuses to start" in results["probe"].error.message
            assert host.plugins["probe"].state is PluginState.FAILED
            user = host.plugins["user"]
            assert user.state is PluginState.BLOCKED and isinstance(user.error, DependencyError)
            assert "requires 'probe', which is failed" in user.error.message
            # fixing the plugin starts it, and the blocked dependent with it
            host.store.kv_delete("probe", "poisoned")
            write(plugins_dir, "probe", "python", "v3", capabilities=["storage"])
            results = {r.plugin_id: r for r in await host.sync_folders(["probe"])}
            assert results["probe"].outcome is ReloadOutcome.STARTED
            assert results["user"].outcome is ReloadOutcome.STARTED
            assert await version(host, "user") == {"tag": "u1", "reloads": 0}

    run(main())


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_top_level_error_or_a_bad_manifest_keeps_the_running_version(language, plugins_dir, tmp_path):
    write(plugins_dir, "probe", language, "v1")

    async def main():
        async with await host_with(plugins_dir, tmp_path / "host.db") as host:
            broken_top = {"python": 'x = 1\nraise ValueError("top level")\n',
                          "javascript": 'const x = 1;\nthrow new Error("top level");\n'}[language]
            write(plugins_dir, "probe", language, source=broken_top)
            result = await host.reload("probe")
            assert result.outcome is ReloadOutcome.KEPT
            assert isinstance(result.error, PluginError) and result.error.line == 2
            assert await version(host) == {"tag": "v1", "reloads": 0}

            write(plugins_dir, "probe", language, "v2")
            manifest = plugins_dir / "probe" / "plugin.json"
            data = json.loads(manifest.read_text())
            data["version"] = "not-a-version"
            manifest.write_text(json.dumps(data))
            result = await host.reload("probe")
            assert result.outcome is ReloadOutcome.KEPT and isinstance(result.error, ManifestError)
            assert "$.version" in result.error.message and "plugin.json" in result.error.message
            assert await version(host) == {"tag": "v1", "reloads": 0}
            assert "probe" not in host.invalid  # the running version is what counts

    run(main())


def test_new_capabilities_are_never_gained_silently(plugins_dir, tmp_path):
    write(plugins_dir, "probe", "python", "v1")
    grabbing = 'ctx.storage.set("grabbed", True)'

    async def main():
        async with await host_with(plugins_dir, tmp_path / "host.db") as host:
            write(plugins_dir, "probe", "python", "v2", extra=grabbing, capabilities=["storage"], version="1.1.0")
            result = await host.reload("probe")
            assert result.outcome is ReloadOutcome.KEPT and isinstance(result.error, CapabilityError)
            assert "storage" in result.error.message and "1.1.0" in result.error.message
            assert await version(host) == {"tag": "v1", "reloads": 0}
            assert stored(host, "grabbed") is None
            assert host.grants.list("probe") == []
            # what the waiting version requests may now be granted; a grant
            # beyond it may not
            with pytest.raises(Exception, match="requests"):
                host.grants.grant("probe", "settings.write")
            assert host.grants.grant("probe", "storage")
            result = await host.reload("probe")
            assert result.outcome is ReloadOutcome.RELOADED
            assert stored(host, "grabbed") is True

    run(main())


def test_grant_requested_grants_and_reports_what_a_new_version_asks_for(plugins_dir, tmp_path):
    write(plugins_dir, "probe", "python", "v1")

    async def main():
        async with await host_with(plugins_dir, tmp_path / "host.db") as host:
            write(plugins_dir, "probe", "python", "v2", capabilities=["storage", "settings.read"])
            result = await host.reload("probe", grant_requested=True)
            assert result.outcome is ReloadOutcome.RELOADED
            assert result.granted == ("storage", "settings.read")
            assert host.grants.list("probe") == ["settings.read", "storage"]
            audit = host.store.audit_log(plugin_id="probe", action="reload")[0]
            assert audit.detail["granted"] == ["storage", "settings.read"]

    run(main())


def test_without_require_all_grants_a_new_version_runs_but_its_ungranted_calls_fail(plugins_dir, tmp_path):
    write(plugins_dir, "probe", "python", "v1")
    grabbing = ('try:\n'
                '        ctx.storage.set("grabbed", True)\n'
                '    except CapabilityError:\n'
                '        STATE["refused"] = True')

    async def main():
        async with await host_with(plugins_dir, tmp_path / "host.db", require_all_grants=False) as host:
            write(plugins_dir, "probe", "python", "v2", extra=grabbing, capabilities=["storage"])
            result = await host.reload("probe")
            assert result.outcome is ReloadOutcome.RELOADED
            assert host.grants.missing("probe") == ["storage"]
            assert stored(host, "grabbed") is None

    run(main())


def test_events_and_commands_follow_the_new_version(plugins_dir, tmp_path):
    v1 = """
def activate(ctx):
    ctx.commands.register("version", lambda params: "v1")
    ctx.commands.register("old-only", lambda params: "old")
"""
    v2 = """
def activate(ctx):
    ctx.commands.register("version", lambda params: "v2")
    ctx.events.emit("probe.fresh", {"n": 1})
"""
    folder = write(plugins_dir, "probe", "python", source=v1,
                   events=[{"name": "probe.stale"}])
    data = json.loads((folder / "plugin.json").read_text())
    data["commands"] = [{"name": "version"}, {"name": "old-only"}]
    (folder / "plugin.json").write_text(json.dumps(data))

    async def main():
        async with await host_with(plugins_dir, tmp_path / "host.db") as host:
            heard = []
            host.on("probe.*", lambda event: heard.append((event.name, event.payload)))
            assert {c.name for c in host.commands()} == {"version", "old-only"}
            assert host.bus.declaration("probe.stale") is not None
            write(plugins_dir, "probe", "python", source=v2, events=[{"name": "probe.fresh"}],
                  capabilities=["events.publish:probe.fresh"])
            result = await host.reload("probe", grant_requested=True)
            assert result.outcome is ReloadOutcome.RELOADED
            await host.events_idle()
            assert heard == [("probe.fresh", {"n": 1})]
            assert {c.name for c in host.commands()} == {"version"}
            assert await host.invoke("probe", "version") == "v2"
            assert host.bus.declaration("probe.stale") is None
            assert host.bus.declaration("probe.fresh").owner == "probe"

    run(main())


def test_removing_and_adding_folders(plugins_dir, tmp_path):
    write(plugins_dir, "probe", "javascript", "v1")
    write(plugins_dir, "user", "python", "u1", relationships={"requires": [{"id": "probe", "versionRange": "^1.0.0"}]})

    async def main():
        async with await host_with(plugins_dir, tmp_path / "host.db") as host:
            host.store.kv_set("probe", "kept", "1", quota_bytes=1000)
            folder = plugins_dir / "probe"
            moved = tmp_path / "probe-away"
            folder.rename(moved)
            results = {r.plugin_id: r for r in await host.sync_folders(["probe"])}
            assert results["probe"].outcome is ReloadOutcome.REMOVED
            assert "probe" not in host.plugins
            user = host.plugins["user"]
            assert user.state is PluginState.BLOCKED and "'probe', which was removed" in user.error.message
            # its data is the host's, not the folder's: it survives
            assert stored(host, "kept") == 1
            # back again: started, and the dependent with it
            moved.rename(folder)
            results = {r.plugin_id: r for r in await host.sync_folders(["probe"])}
            assert results["probe"].outcome is ReloadOutcome.STARTED
            assert results["user"].outcome is ReloadOutcome.STARTED
            assert await version(host) == {"tag": "v1", "reloads": 0}
            # a brand-new folder starts only when asked to
            write(plugins_dir, "extra", "python", "e1")
            results = await host.sync_folders(["extra"], start_new=False)
            assert [(r.plugin_id, r.outcome) for r in results] == [("extra", ReloadOutcome.UPDATED)]
            assert host.plugins["extra"].state is PluginState.VALIDATED
            with pytest.raises(Exception):
                await host.reload("nowhere")

    run(main())


def test_a_dependent_whose_range_the_new_version_leaves_is_blocked(plugins_dir, tmp_path):
    write(plugins_dir, "probe", "python", "v1")
    write(plugins_dir, "user", "python", "u1", relationships={"requires": [{"id": "probe", "versionRange": "^1.0.0"}]})

    async def main():
        async with await host_with(plugins_dir, tmp_path / "host.db") as host:
            write(plugins_dir, "probe", "python", "v2", version="1.5.0")
            await host.reload("probe")
            assert host.plugins["user"].state is PluginState.ACTIVE
            write(plugins_dir, "probe", "python", "v3", version="2.0.0")
            result = await host.reload("probe")
            assert result.outcome is ReloadOutcome.RELOADED
            user = host.plugins["user"]
            assert user.state is PluginState.BLOCKED and isinstance(user.error, DependencyError)
            assert "^1.0.0" in user.error.message and "2.0.0" in user.error.message

    run(main())


def test_stopped_plugins_are_only_refreshed_and_failed_ones_are_retried(plugins_dir, tmp_path):
    write(plugins_dir, "probe", "python", "v1")
    source, _ = SYNTAX_ERROR["python"]
    write(plugins_dir, "broken", "python", source=source)

    async def main():
        async with await host_with(plugins_dir, tmp_path / "host.db") as host:
            assert host.plugins["broken"].state is PluginState.FAILED
            await host.deactivate("probe")
            write(plugins_dir, "probe", "python", "v2", version="1.2.0")
            result = await host.reload("probe")
            assert (result.outcome, result.state, result.version) == (ReloadOutcome.UPDATED, PluginState.VALIDATED,
                                                                      "1.2.0")
            write(plugins_dir, "broken", "python", "fixed")
            result = await host.reload("broken")
            assert result.outcome is ReloadOutcome.STARTED
            assert await version(host, "broken") == {"tag": "fixed", "reloads": 0}

    run(main())
