"""Hot reload at its edges: dependency chains and cycles, bursts that change
several folders, grants while a version waits, crashes around a swap,
closing while reloads are under way, symlinked folders, odd manifests.

Every plugin is real code in the real runtimes; the watch tests use the
real watchdog observer. Nothing waits blindly: each test waits for a result
or a state, with a timeout.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
from typing import Any

import pytest

from hostrt import (
    CapabilityError,
    DependencyError,
    GrantError,
    HostrtError,
    LifecycleError,
    ManifestError,
    PluginError,
    PluginState,
    ReloadOutcome,
)

from test_hot_reload import LANGUAGES, MAIN, host_with, version, write
from test_watch import ARRIVES_WITHIN_S, Results


def run(coro):
    return asyncio.run(coro)


def requires(*ids: str, version_range: str = "^1.0.0") -> dict[str, Any]:
    return {"requires": [{"id": pid, "versionRange": version_range} for pid in ids]}


def states(host) -> dict[str, PluginState]:
    return {pid: record.state for pid, record in host.plugins.items()}


async def state_becomes(host, pid: str, state: PluginState) -> None:
    """Wait (bounded) until ``pid`` is in ``state``, as a lifecycle listener hears it."""
    reached = asyncio.Event()

    def listener(record, error) -> None:
        if record.id == pid and record.state is state:
            reached.set()

    remove = host.on_lifecycle(listener)
    try:
        if host.plugins[pid].state is not state:
            await asyncio.wait_for(reached.wait(), ARRIVES_WITHIN_S)
    finally:
        remove()


# -- dependencies -------------------------------------------------------------


def test_a_save_that_closes_a_dependency_cycle_is_refused(plugins_dir, tmp_path):
    write(plugins_dir, "aaa", "python", "a1", relationships=requires("bbb"))
    write(plugins_dir, "bbb", "python", "b1")

    async def main():
        async with await host_with(plugins_dir, tmp_path / "host.db") as host:
            assert states(host) == {"aaa": PluginState.ACTIVE, "bbb": PluginState.ACTIVE}
            write(plugins_dir, "bbb", "python", "b2", relationships=requires("aaa"))
            result = await host.reload("bbb")
            assert result.outcome is ReloadOutcome.KEPT and isinstance(result.error, DependencyError)
            assert "cycle" in result.error.message and "aaa" in result.error.message
            assert await version(host, "bbb") == {"tag": "b1", "reloads": 0}
            # with the cycle refused, stopping everything still works
            await asyncio.wait_for(host.deactivate_all(), ARRIVES_WITHIN_S)
            assert set(states(host).values()) == {PluginState.INACTIVE}

    run(main())


def test_a_longer_cycle_closed_by_a_save_is_refused_too(plugins_dir, tmp_path):
    write(plugins_dir, "aaa", "python", "a1", relationships=requires("bbb"))
    write(plugins_dir, "bbb", "python", "b1", relationships=requires("ccc"))
    write(plugins_dir, "ccc", "python", "c1")

    async def main():
        async with await host_with(plugins_dir, tmp_path / "host.db") as host:
            write(plugins_dir, "ccc", "python", "c2", relationships=requires("aaa"))
            result = await host.reload("ccc")
            assert result.outcome is ReloadOutcome.KEPT and isinstance(result.error, DependencyError)
            assert "cycle" in result.error.message
            assert all(f"{pid} -> " in result.error.message for pid in ("aaa", "bbb", "ccc"))
            assert set(states(host).values()) == {PluginState.ACTIVE}

    run(main())


def test_removing_the_root_of_a_chain_blocks_the_whole_chain_and_re_adding_it_restarts_it(plugins_dir, tmp_path):
    # app requires mid requires base: "app" sorts (and is kept) before the
    # plugin it needs, so restarting must follow the chain, not the names.
    write(plugins_dir, "base", "python", "b1")
    write(plugins_dir, "mid", "python", "m1", relationships=requires("base"))
    write(plugins_dir, "app", "javascript", "a1", relationships=requires("mid"))

    async def main():
        async with await host_with(plugins_dir, tmp_path / "host.db") as host:
            away = tmp_path / "base-away"
            (plugins_dir / "base").rename(away)
            results = {r.plugin_id: r for r in await host.sync_folders(["base"])}
            assert results["base"].outcome is ReloadOutcome.REMOVED
            assert states(host) == {"app": PluginState.BLOCKED, "mid": PluginState.BLOCKED}
            assert isinstance(host.plugins["app"].error, DependencyError)
            assert "'mid'" in host.plugins["app"].error.message

            away.rename(plugins_dir / "base")
            results = await host.sync_folders(["base"])
            assert {(r.plugin_id, r.outcome) for r in results} == {
                ("base", ReloadOutcome.STARTED), ("mid", ReloadOutcome.STARTED), ("app", ReloadOutcome.STARTED)}
            assert set(states(host).values()) == {PluginState.ACTIVE}
            assert await version(host, "app") == {"tag": "a1", "reloads": 0}

    run(main())


def test_a_plugin_blocked_for_good_is_not_tried_again_on_every_unrelated_save(plugins_dir, tmp_path):
    write(plugins_dir, "lib", "python", "l1", version="2.0.0")
    write(plugins_dir, "app", "python", "a1", relationships=requires("lib"))
    write(plugins_dir, "other", "python", "o1")

    async def main():
        async with await host_with(plugins_dir, tmp_path / "host.db") as host:
            assert host.plugins["app"].state is PluginState.BLOCKED
            before = host.store.audit_log(plugin_id="app", action="lifecycle")
            write(plugins_dir, "other", "python", "o2")
            results = await host.sync_folders(["other"])
            assert [r.plugin_id for r in results] == ["other"]
            assert host.store.audit_log(plugin_id="app", action="lifecycle") == before
            assert "^1.0.0" in host.plugins["app"].error.message

    run(main())


@pytest.mark.parametrize("dependent", ["app", "zed"])
def test_one_burst_changing_a_plugin_and_its_dependent_runs_both_new_versions(dependent, plugins_dir, tmp_path):
    # "app" sorts before "lib", "zed" after it: the outcome must not depend on names.
    write(plugins_dir, "lib", "python", "l1")
    write(plugins_dir, dependent, "python", "d1", relationships=requires("lib"))

    async def main():
        async with await host_with(plugins_dir, tmp_path / "host.db") as host:
            write(plugins_dir, "lib", "python", "l2", version="2.0.0")
            write(plugins_dir, dependent, "python", "d2", version="1.1.0",
                  relationships=requires("lib", version_range="^2.0.0"))
            results = await host.sync_folders(["lib", dependent])
            assert states(host) == {"lib": PluginState.ACTIVE, dependent: PluginState.ACTIVE}
            assert (await version(host, "lib"))["tag"] == "l2"
            assert (await version(host, dependent))["tag"] == "d2"
            assert host.plugins[dependent].version == "1.1.0"
            assert all(r.error is None for r in results), results

    run(main())


@pytest.mark.parametrize("dependent", ["app", "zed"])
def test_new_folders_in_one_burst_start_in_dependency_order_with_one_result_each(dependent, plugins_dir, tmp_path):
    async def main():
        async with await host_with(plugins_dir, tmp_path / "host.db") as host:
            write(plugins_dir, "lib", "javascript", "l1")
            write(plugins_dir, dependent, "python", "d1", relationships=requires("lib"))
            results = await host.sync_folders(["lib", dependent])
            assert sorted((r.plugin_id, r.outcome) for r in results) == sorted(
                [("lib", ReloadOutcome.STARTED), (dependent, ReloadOutcome.STARTED)])
            assert [e.detail["state"] for e in host.store.audit_log(plugin_id=dependent, action="lifecycle")] \
                == ["active"]
            # a reload of one of them by id reports that plugin's own result
            write(plugins_dir, dependent, "python", "d2")
            assert (await host.reload(dependent)).outcome is ReloadOutcome.RELOADED

    run(main())


def test_a_burst_that_closes_a_cycle_between_new_folders_blocks_both_and_starts_nothing(plugins_dir, tmp_path):
    async def main():
        async with await host_with(plugins_dir, tmp_path / "host.db") as host:
            write(plugins_dir, "aaa", "python", "a1", relationships=requires("bbb"))
            write(plugins_dir, "bbb", "python", "b1", relationships=requires("aaa"))
            results = await host.sync_folders(["aaa", "bbb"])
            assert {r.plugin_id: r.outcome for r in results} == {"aaa": ReloadOutcome.FAILED,
                                                                  "bbb": ReloadOutcome.FAILED}
            assert states(host) == {"aaa": PluginState.BLOCKED, "bbb": PluginState.BLOCKED}
            assert all("cycle" in host.plugins[p].error.message for p in ("aaa", "bbb"))

    run(main())


# -- grants while a new version waits -----------------------------------------


def test_a_grant_is_refused_once_no_version_on_disk_requests_it(plugins_dir, tmp_path):
    write(plugins_dir, "probe", "python", "v1")

    async def main():
        async with await host_with(plugins_dir, tmp_path / "host.db") as host:
            def grantable() -> bool:
                try:
                    host.grants.grant("probe", "storage")
                except GrantError:
                    return False
                host.grants.revoke("probe", "storage")
                return True

            waiting = {"capabilities": ["storage"], "version": "1.1.0"}
            # a version waiting for "storage": it may be granted
            write(plugins_dir, "probe", "python", "v2", **waiting)
            assert isinstance((await host.reload("probe")).error, CapabilityError)
            assert grantable()
            # the next save breaks the manifest: that version no longer waits
            (plugins_dir / "probe" / "plugin.json").write_text("{")
            assert isinstance((await host.reload("probe")).error, ManifestError)
            assert not grantable()
            # again, then a save refused for a missing dependency (requesting nothing)
            write(plugins_dir, "probe", "python", "v2", **waiting)
            await host.reload("probe")
            write(plugins_dir, "probe", "python", "v3", relationships=requires("nowhere"))
            assert isinstance((await host.reload("probe")).error, DependencyError)
            assert not grantable()
            # again, then the folder goes away while inactive and a stranger takes the id
            write(plugins_dir, "probe", "python", "v2", **waiting)
            await host.reload("probe")
            await host.deactivate("probe")
            shutil.rmtree(plugins_dir / "probe")
            await host.discover()
            write(plugins_dir, "probe", "python", "stranger")
            await host.discover()
            assert not grantable()
            assert host.grants.list("probe") == []
            assert host.plugins["probe"].state is PluginState.VALIDATED

    run(main())


def test_a_version_requesting_less_loses_the_dropped_capability_at_once(plugins_dir, tmp_path):
    probe = """
def activate(ctx):
    def version(params):
        try:
            ctx.storage.set("written", "{tag}")
            return "{tag} wrote"
        except CapabilityError:
            return "{tag} refused"
    ctx.commands.register("version", version)
"""
    write(plugins_dir, "probe", "python", source=probe.format(tag="v1"), capabilities=["storage"])

    async def main():
        async with await host_with(plugins_dir, tmp_path / "host.db") as host:
            assert await version(host) == "v1 wrote"
            write(plugins_dir, "probe", "python", source=probe.format(tag="v2"))
            assert (await host.reload("probe")).outcome is ReloadOutcome.RELOADED
            assert await version(host) == "v2 refused"
            assert json.loads(host.store.kv_get("probe", "written")) == "v1"
            denied = host.store.audit_log(plugin_id="probe", action="denied")
            assert denied and denied[0].detail["capability"] == "storage"
            # the grant was kept and comes back with a version requesting it again
            assert host.grants.list("probe") == ["storage"]
            write(plugins_dir, "probe", "python", source=probe.format(tag="v3"), capabilities=["storage"])
            assert (await host.reload("probe")).outcome is ReloadOutcome.RELOADED
            assert await version(host) == "v3 wrote"

    run(main())


@pytest.mark.parametrize("require_all_grants", [True, False])
def test_a_manifest_edit_widening_a_scope_gains_nothing(require_all_grants, plugins_dir, tmp_path):
    emitter = """
def activate(ctx):
    def version(params):
        out = {{}}
        for name in ("probe.tick", "victim.secret"):
            try:
                ctx.events.emit(name, {{"from": "{tag}"}})
                out[name] = "sent"
            except CapabilityError:
                out[name] = "refused"
            except Exception:
                out[name] = "failed"
        return out
    ctx.commands.register("version", version)
"""
    write(plugins_dir, "probe", "python", source=emitter.format(tag="v1"), events=[{"name": "probe.tick"}],
          capabilities=["events.publish:probe.tick"])
    write(plugins_dir, "victim", "python", "x1", events=[{"name": "victim.secret"}])

    async def main():
        async with await host_with(plugins_dir, tmp_path / "host.db", require_all_grants=require_all_grants) as host:
            heard = []
            host.on("*", lambda event: heard.append((event.name, event.source)))
            write(plugins_dir, "probe", "python", source=emitter.format(tag="v2"), events=[{"name": "probe.tick"}],
                  capabilities=["events.publish:*", "storage"])
            result = await host.reload("probe")
            if require_all_grants:
                assert result.outcome is ReloadOutcome.KEPT and isinstance(result.error, CapabilityError)
                assert "events.publish:*" in result.error.message
            else:
                assert result.outcome is ReloadOutcome.RELOADED
            sent = await version(host)
            assert sent["probe.tick"] == "sent" and sent["victim.secret"] != "sent"
            await host.events_idle()
            assert ("victim.secret", "probe") not in heard
            # the host cannot grant what no version requests, the wide scope
            # only while a version waits for it
            with pytest.raises(GrantError):
                host.grants.grant("probe", "settings.write")
            assert host.grants.list("probe") == ["events.publish:probe.tick"]

    run(main())


# -- crashes and calls around a swap -----------------------------------------

#: A JavaScript plugin whose timer runs past the time limit after activate.
RUNAWAY_TIMER = """
exports.activate = (ctx) => {
  ctx.subscriptions.push(ctx.commands.register("version", () => ({ tag: "runaway", reloads: 0 })));
  setTimeout(() => { for (;;) {} }, 0);
};
"""


def test_a_version_that_crashes_right_after_the_swap_fails_and_blocks_its_dependents(plugins_dir, tmp_path):
    write(plugins_dir, "probe", "javascript", "v1", limits={"timeoutMs": 200})
    write(plugins_dir, "user", "python", "u1", relationships=requires("probe"))

    async def main():
        async with await host_with(plugins_dir, tmp_path / "host.db") as host:
            write(plugins_dir, "probe", "javascript", source=RUNAWAY_TIMER, limits={"timeoutMs": 200})
            assert (await host.reload("probe")).outcome is ReloadOutcome.RELOADED
            await state_becomes(host, "probe", PluginState.FAILED)
            assert isinstance(host.plugins["probe"].error, PluginError)
            # a plugin never runs on top of a failed one it requires
            await state_becomes(host, "user", PluginState.BLOCKED)
            assert "requires 'probe'" in host.plugins["user"].error.message
            assert {c.plugin_id for c in host.commands()} == set()
            # the fix starts both again
            write(plugins_dir, "probe", "javascript", "v3", limits={"timeoutMs": 200})
            results = {r.plugin_id: r.outcome for r in await host.sync_folders(["probe"])}
            assert results == {"probe": ReloadOutcome.STARTED, "user": ReloadOutcome.STARTED}
            assert await version(host) == {"tag": "v3", "reloads": 0}

    run(main())


def test_a_python_version_whose_command_breaks_its_time_limit_blocks_its_dependents(plugins_dir, tmp_path):
    looping = """
def activate(ctx):
    def version(params):
        while True:
            pass
    ctx.commands.register("version", version)
"""
    write(plugins_dir, "probe", "python", "v1", limits={"timeoutMs": 200})
    write(plugins_dir, "user", "javascript", "u1", relationships=requires("probe"))

    async def main():
        async with await host_with(plugins_dir, tmp_path / "host.db") as host:
            write(plugins_dir, "probe", "python", source=looping, limits={"timeoutMs": 200})
            assert (await host.reload("probe")).outcome is ReloadOutcome.RELOADED
            with pytest.raises(PluginError):
                await version(host)
            await state_becomes(host, "probe", PluginState.FAILED)
            await state_becomes(host, "user", PluginState.BLOCKED)
            write(plugins_dir, "probe", "python", "v3", limits={"timeoutMs": 200})
            results = {r.plugin_id: r.outcome for r in await host.sync_folders(["probe"])}
            assert results == {"probe": ReloadOutcome.STARTED, "user": ReloadOutcome.STARTED}

    run(main())


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_command_running_during_a_reload_finishes_on_the_old_version(language, plugins_dir, tmp_path):
    slow = {
        "python": """
import time
def activate(ctx):
    def version(params):
        ctx.storage.set("running", True)
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            pass
        return "{tag}"
    ctx.commands.register("version", version)
""",
        "javascript": """
exports.activate = (ctx) => {{
  ctx.subscriptions.push(ctx.commands.register("version", async () => {{
    await ctx.storage.set("running", true);
    const end = Date.now() + 300;
    while (Date.now() < end) {{}}
    return "{tag}";
  }}));
}};
""",
    }[language]
    write(plugins_dir, "probe", language, source=slow.format(tag="v1"), capabilities=["storage"])

    async def main():
        async with await host_with(plugins_dir, tmp_path / "host.db") as host:
            call = asyncio.create_task(host.invoke("probe", "version"))
            while host.store.kv_get("probe", "running") is None:  # the command is under way
                await asyncio.wait_for(asyncio.sleep(0.005), ARRIVES_WITHIN_S)
            write(plugins_dir, "probe", language, source=slow.format(tag="v2"), capabilities=["storage"])
            result = await host.reload("probe")
            assert result.outcome is ReloadOutcome.RELOADED
            assert await asyncio.wait_for(call, ARRIVES_WITHIN_S) == "v1"
            assert await version(host) == "v2"

    run(main())


def test_subscribers_hear_the_new_version_of_a_reloaded_publisher(plugins_dir, tmp_path):
    publisher = """
def activate(ctx):
    ctx.commands.register("version", lambda params: ctx.events.emit("pub.tick", {{"v": "{tag}"}}))
"""
    subscriber = """
exports.activate = (ctx) => {
  const heard = [];
  ctx.subscriptions.push(ctx.events.on("pub.tick", (p) => { heard.push(p.v); }));
  ctx.subscriptions.push(ctx.commands.register("version", () => heard));
};
"""
    pub = {"events": [{"name": "pub.tick"}], "capabilities": ["events.publish:pub.tick"]}
    write(plugins_dir, "pub", "python", source=publisher.format(tag="1"), **pub)
    write(plugins_dir, "sub", "javascript", source=subscriber, capabilities=["events.subscribe:pub.tick"])

    async def main():
        async with await host_with(plugins_dir, tmp_path / "host.db") as host:
            await version(host, "pub")
            write(plugins_dir, "pub", "python", source=publisher.format(tag="2"), **pub)
            assert (await host.reload("pub")).outcome is ReloadOutcome.RELOADED
            await version(host, "pub")
            await host.events_idle()
            assert await version(host, "sub") == ["1", "2"]

    run(main())


def test_a_new_version_may_change_its_runtime_and_main_and_a_failure_restores_the_old_runtime(plugins_dir, tmp_path):
    write(plugins_dir, "probe", "python", "p1", capabilities=["storage"], events=[{"name": "probe.old"}])

    async def main():
        async with await host_with(plugins_dir, tmp_path / "host.db") as host:
            write(plugins_dir, "probe", "javascript", "j2", capabilities=["storage"], version="2.0.0")
            (plugins_dir / "probe" / "plugin.js").rename(plugins_dir / "probe" / "main.js")
            data = json.loads((plugins_dir / "probe" / "plugin.json").read_text())
            (plugins_dir / "probe" / "plugin.json").write_text(json.dumps({**data, "main": "main.js"}))
            result = await host.reload("probe")
            assert result.outcome is ReloadOutcome.RELOADED, result
            assert await version(host) == {"tag": "j2", "reloads": 1}
            assert host.plugins["probe"].manifest.runtime_name == "javascript"
            assert host.bus.declaration("probe.old") is None

            # back to Python, in a version whose activate fails: the
            # JavaScript version, its manifest, commands and grants come back
            extra = 'raise RuntimeError("no")'
            write(plugins_dir, "probe", "python", "p3", extra=extra, version="3.0.0",
                  capabilities=["settings.read"], events=[{"name": "probe.new"}])
            result = await host.reload("probe", grant_requested=True)
            assert result.outcome is ReloadOutcome.RESTORED and result.version == "2.0.0"
            assert result.granted == ("settings.read",)
            record = host.plugins["probe"]
            assert (record.version, record.manifest.runtime_name, record.manifest.main) == ("2.0.0", "javascript",
                                                                                            "main.js")
            assert record.manifest.capabilities == ["storage"]
            assert [str(c) for c in host.grants.effective("probe")] == ["storage"]
            assert host.bus.declaration("probe.new") is None
            assert [c.name for c in host.commands()] == ["version"]
            assert await version(host) == {"tag": "j2", "reloads": 2}
            audit = host.store.audit_log(plugin_id="probe", action="reload")[0].detail
            assert (audit["outcome"], audit["version"], audit["previous"]) == ("restored", "2.0.0", "2.0.0")
            assert audit["error"]["file"] == "probe/plugin.py"

    run(main())


# -- files that try to lead out of the folder ---------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_main_swapped_for_a_symlink_out_of_the_folder_is_refused(language, plugins_dir, tmp_path):
    write(plugins_dir, "probe", language, "v1")
    outside = tmp_path / "outside"
    outside.mkdir()
    write(outside, "probe", language, "stolen")

    async def main():
        async with await host_with(plugins_dir, tmp_path / "host.db") as host:
            target = plugins_dir / "probe" / MAIN[language]
            target.unlink()
            target.symlink_to(outside / "probe" / MAIN[language])
            result = await host.reload("probe")
            assert result.outcome is ReloadOutcome.KEPT and isinstance(result.error, HostrtError)
            assert "outside" in result.error.message and str(outside) not in result.error.message
            assert await version(host) == {"tag": "v1", "reloads": 0}

    run(main())


@pytest.mark.parametrize("content", [b"{" + b" " * (300 * 1024) + b"}", b'{"id": "\xff\xfe"}'],
                         ids=["huge", "not-utf8"])
def test_a_huge_or_undecodable_manifest_keeps_the_running_version(content, plugins_dir, tmp_path):
    write(plugins_dir, "probe", "python", "v1")

    async def main():
        async with await host_with(plugins_dir, tmp_path / "host.db") as host:
            (plugins_dir / "probe" / "plugin.json").write_bytes(content)
            result = await host.reload("probe")
            assert result.outcome is ReloadOutcome.KEPT and isinstance(result.error, ManifestError)
            assert await version(host) == {"tag": "v1", "reloads": 0}

    run(main())


@pytest.mark.parametrize("how", ["failed", "blocked", "disabled", "invalid"])
def test_a_folder_removed_while_its_plugin_does_not_run_is_forgotten(how, plugins_dir, tmp_path):
    extra = 'raise RuntimeError("no")' if how == "failed" else ""
    write(plugins_dir, "probe", "python", "v1", extra=extra,
          **({"relationships": requires("nowhere")} if how == "blocked" else {}))

    async def main():
        async with await host_with(plugins_dir, tmp_path / "host.db") as host:
            if how == "disabled":
                await host.disable("probe")
            if how == "invalid":
                await host.deactivate("probe")
                (plugins_dir / "probe" / "plugin.json").write_text("[]")
                await host.reload("probe")
                assert "probe" in host.invalid
            else:
                assert host.plugins["probe"].state is PluginState(how)
            shutil.rmtree(plugins_dir / "probe")
            results = await host.sync_folders(["probe"])
            assert [(r.plugin_id, r.outcome) for r in results] == [("probe", ReloadOutcome.REMOVED)]
            assert "probe" not in host.plugins and "probe" not in host.invalid
            with pytest.raises(Exception):
                await host.reload("probe")

    run(main())


# -- closing ------------------------------------------------------------------


def test_a_sync_queued_behind_close_starts_nothing(plugins_dir, tmp_path):
    write(plugins_dir, "probe", "python", "v1")

    async def main():
        host = await host_with(plugins_dir, tmp_path / "host.db")
        write(plugins_dir, "late", "javascript", "l1")
        write(plugins_dir, "probe", "python", "v2")
        reloading = asyncio.create_task(host.reload("probe"))
        await asyncio.sleep(0)  # the reload holds the lock
        closing = asyncio.create_task(host.close())
        await asyncio.sleep(0)
        syncing = asyncio.create_task(host.sync_folders(["late"]))
        outcomes = await asyncio.wait_for(asyncio.gather(reloading, closing, syncing, return_exceptions=True),
                                          ARRIVES_WITHIN_S)
        assert outcomes[0].outcome is ReloadOutcome.RELOADED
        assert outcomes[1] is None
        assert isinstance(outcomes[2], LifecycleError) and "closed" in outcomes[2].message
        assert all(record.state is not PluginState.ACTIVE for record in host.plugins.values()), states(host)
        with pytest.raises(LifecycleError):
            await host.activate("probe")

    run(main())


def watchdog_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if type(t).__module__.startswith("watchdog")}


def test_closing_the_host_stops_its_watch(plugins_dir, tmp_path):
    write(plugins_dir, "probe", "python", "v1")

    async def main():
        results = Results()
        before = watchdog_threads()
        host = await host_with(plugins_dir, tmp_path / "host.db")
        async with host.watch(debounce_s=0.02, on_reload=results):
            write(plugins_dir, "probe", "python", "v2")
            assert (await results.next("probe")).outcome is ReloadOutcome.RELOADED
            assert watchdog_threads() - before
            await asyncio.wait_for(host.close(), ARRIVES_WITHIN_S)
            assert not watchdog_threads() - before
            with pytest.raises(LifecycleError):
                await host.sync_folders(["probe"])
        assert host.plugins["probe"].state is PluginState.INACTIVE

    run(main())


def test_the_host_may_be_closed_from_an_on_reload_callback(plugins_dir, tmp_path):
    write(plugins_dir, "probe", "python", "v1")

    async def main():
        closed = asyncio.Event()
        host = await host_with(plugins_dir, tmp_path / "host.db")

        async def close_on_reload(result) -> None:
            await host.close()
            closed.set()

        async with host.watch(debounce_s=0.02, on_reload=close_on_reload):
            write(plugins_dir, "probe", "python", "v2")
            await asyncio.wait_for(closed.wait(), ARRIVES_WITHIN_S)
        assert host.plugins["probe"].state is PluginState.INACTIVE

    run(main())


# -- the watch and symlinked plugin folders ------------------------------------


def test_the_watch_follows_plugin_folders_that_are_symlinks(plugins_dir, tmp_path):
    # A plugin folder may be a symlink (docs/manifest.md); the watch must see
    # it appear, be swapped for another and go.
    sources = tmp_path / "sources"
    write(sources, "linked", "javascript", "one")
    (sources / "two").mkdir()
    write(sources / "two", "linked", "javascript", "two")

    async def main():
        results = Results()
        async with await host_with(plugins_dir, tmp_path / "host.db") as host:
            async with host.watch(debounce_s=0.05, on_reload=results):
                (plugins_dir / "linked").symlink_to(sources / "linked")
                result = await results.next("linked")
                assert result.outcome is ReloadOutcome.STARTED, result
                assert await version(host, "linked") == {"tag": "one", "reloads": 0}

                (plugins_dir / "linked").unlink()
                (plugins_dir / "linked").symlink_to(sources / "two" / "linked")
                result = await results.next("linked")
                assert result.outcome is ReloadOutcome.RELOADED, result
                assert await version(host, "linked") == {"tag": "two", "reloads": 1}

                os.unlink(plugins_dir / "linked")
                result = await results.next("linked")
                assert result.outcome is ReloadOutcome.REMOVED, result
                assert "linked" not in host.plugins

    run(main())


# -- what hostrt dev shows ----------------------------------------------------


@pytest.mark.parametrize("file, source, line, shown", [
    # Python numbers lines at \n, \r\n and \r only: a form feed or a file
    # separator is whitespace to it, not a line break
    ("p/plugin.py", "# a\x0cb\x1c\x85\n\ndef activate(ctx):\n    raise RuntimeError('x')\n", 4,
     "    raise RuntimeError('x')"),
    ("p/plugin.py", "x = 1\r\ny = 2\rz = (\n", 3, "z = ("),
    # JavaScript also breaks lines at U+2028 and U+2029
    ("p/plugin.js", "// a\u2028b\x0c\nthrow new Error('x');\n", 3, "throw new Error('x');"),
])
def test_the_code_frame_marks_the_line_the_runtime_counted(file, source, line, shown, tmp_path):
    from hostrt.codeframe import code_frame

    (tmp_path / "p").mkdir()
    (tmp_path / file).write_text(source, newline="")
    frame = code_frame(tmp_path, PluginError("p", "x", file=file, line=line, column=1))
    marked = [row for row in frame.split("\n") if row.startswith(">")]
    assert marked == [f"> {line} | {shown}"], frame


def test_the_caret_points_at_the_column_past_tabs(tmp_path):
    from hostrt.codeframe import code_frame

    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "plugin.py").write_text("def activate(ctx):\n\tx = (]\n")
    frame = code_frame(tmp_path, PluginError("p", "x", file="p/plugin.py", line=2, column=7)).split("\n")
    source_row, caret_row = frame[1], frame[2]
    assert source_row == "> 2 |     x = (]"
    assert caret_row.index("^") == source_row.index("]")


def test_a_frame_line_holding_control_characters_stays_one_console_line(tmp_path):
    import io

    from hostrt.dev import DevConsole

    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "plugin.py").write_text("x = 1  # \x0c\x1c\x1b[2J\n")
    out = io.StringIO()
    DevConsole(tmp_path, out).error(PluginError("p", "boom", file="p/plugin.py", line=1))
    lines = out.getvalue().splitlines()
    assert [line.split("] ", 1)[1] for line in lines[-1:]] == ["    > 1 | x = 1  # \\x0c\\x1c\\x1b[2J"]
    assert all("\x1b" not in line and "\x0c" not in line for line in lines)


def test_a_version_waiting_for_a_dependency_may_be_granted_what_it_requests(plugins_dir, tmp_path):
    write(plugins_dir, "probe", "python", "v1")

    async def main():
        async with await host_with(plugins_dir, tmp_path / "host.db") as host:
            # refused for its dependency first, but it also asks for storage:
            # the grant can be given while it waits, so one fix suffices
            write(plugins_dir, "probe", "python", "v2", capabilities=["storage"], relationships=requires("lib"))
            result = await host.reload("probe")
            assert result.outcome is ReloadOutcome.KEPT and isinstance(result.error, DependencyError)
            assert host.grants.grant("probe", "storage")
            write(plugins_dir, "lib", "python", "l1")
            results = {r.plugin_id: r for r in await host.sync_folders(["lib", "probe"])}
            assert results["lib"].outcome is ReloadOutcome.STARTED
            assert results["probe"].outcome is ReloadOutcome.RELOADED
            assert await version(host) == {"tag": "v2", "reloads": 1}
            # nothing beyond what some version requests was ever grantable
            with pytest.raises(GrantError):
                host.grants.grant("probe", "settings.write")

    run(main())


def test_a_dependent_saved_with_a_new_major_of_its_requirement_keeps_its_state(plugins_dir, tmp_path):
    write(plugins_dir, "lib", "python", "l1")
    write(plugins_dir, "app", "python", "a1", relationships=requires("lib"))

    async def main():
        async with await host_with(plugins_dir, tmp_path / "host.db") as host:
            # one burst: lib 2.0.0, and app now requiring ^2.0.0
            write(plugins_dir, "lib", "python", "l2", version="2.0.0")
            write(plugins_dir, "app", "python", "a2", relationships=requires("lib", version_range="^2.0.0"))
            results = {r.plugin_id: r for r in await host.sync_folders(["app", "lib"])}
            assert results["lib"].outcome is ReloadOutcome.RELOADED
            assert results["app"].outcome is ReloadOutcome.RELOADED
            assert await version(host, "app") == {"tag": "a2", "reloads": 1}  # state handed over
            # a burst in which the dependent's new version is refused: the
            # old one does not accept lib 3.0.0 and is blocked
            write(plugins_dir, "lib", "python", "l3", version="3.0.0")
            (plugins_dir / "app" / "plugin.py").write_text("def activate(ctx):\n    oops(\n")
            results = {r.plugin_id: r for r in await host.sync_folders(["app", "lib"])}
            assert results["app"].outcome is ReloadOutcome.KEPT
            app = host.plugins["app"]
            assert app.state is PluginState.BLOCKED and "^2.0.0" in app.error.message

    run(main())
