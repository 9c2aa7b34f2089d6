"""The host end to end, with real Python plugins in real folders and a real SQLite file."""

import asyncio
import logging
import time

import pytest

from hostrt import Host, HostPolicy, PluginState, SyncHost
from hostrt.errors import LifecycleError, PluginError, PluginNotFoundError

from conftest import write_plugin

STORE_ON_ACTIVATE = """
def activate(ctx):
    ctx.storage.set("activated", ctx.plugin.id)
"""


def run(coro):
    return asyncio.run(coro)


async def started(plugins_dir, db=":memory:", grant=True, **policy):
    host = Host(plugins_dir, db, policy=HostPolicy(**policy) if policy else None)
    await host.discover()
    if grant:
        for pid in host.plugins:
            host.grants.grant_requested(pid)
    return host


def test_discover_sorts_valid_and_invalid(plugins_dir):
    write_plugin(plugins_dir, "good-one", STORE_ON_ACTIVATE, capabilities=["storage"])
    bad = plugins_dir / "broken"
    bad.mkdir()
    (bad / "plugin.json").write_text('{"schemaVersion": 1, "id": "Broken!"}')
    (plugins_dir / "not-a-plugin").mkdir()
    (plugins_dir / "README.txt").write_text("ignored")
    write_plugin(plugins_dir, "good-one", STORE_ON_ACTIVATE, folder="copy-of-good")
    write_plugin(plugins_dir, ".hidden-copy", STORE_ON_ACTIVATE)

    async def main():
        host = Host(plugins_dir)
        await host.discover()
        assert list(host.plugins) == ["good-one"]
        assert host.plugins["good-one"].folder.name == "good-one"
        assert host.plugins["good-one"].state is PluginState.VALIDATED
        assert set(host.invalid) == {"broken", "copy-of-good"}
        assert host.invalid["broken"].state is PluginState.INVALID
        assert "$.id" in host.invalid["broken"].error.message
        # a copy under another folder name can never claim the id (nor its grants)
        assert "must equal the plugin's folder name 'copy-of-good'" in host.invalid["copy-of-good"].error.message
        # even while the real plugin's manifest is broken
        (plugins_dir / "good-one" / "plugin.json").write_text("{broken")
        await host.discover()
        assert list(host.plugins) == []
        assert set(host.invalid) == {"broken", "copy-of-good", "good-one"}
        await host.close()

    run(main())


def test_activate_all_runs_plugins_in_dependency_order(plugins_dir, tmp_path):
    log_src = """
def activate(ctx):
    ctx.log.info("up")
"""
    write_plugin(plugins_dir, "app-plugin", log_src, relationships={"requires": [{"id": "lib-plugin", "versionRange": "^1.0"}]},
                 load={"priority": "bootstrap"})
    write_plugin(plugins_dir, "lib-plugin", log_src, load={"priority": "low"})
    write_plugin(plugins_dir, "early", log_src, load={"priority": "high"})

    async def main():
        host = await started(plugins_dir, tmp_path / "h.db")
        states = await host.activate_all()
        assert states == {"app-plugin": PluginState.ACTIVE, "early": PluginState.ACTIVE, "lib-plugin": PluginState.ACTIVE}
        order = [e.plugin_id for e in reversed(host.store.audit_log(action="lifecycle", limit=100))
                 if e.detail["state"] == "active"]
        assert order == ["early", "lib-plugin", "app-plugin"]
        await host.deactivate_all()
        stops = [e.plugin_id for e in reversed(host.store.audit_log(action="lifecycle", limit=100))
                 if e.detail["state"] == "inactive"]
        assert stops == ["app-plugin", "lib-plugin", "early"]
        await host.close()

    run(main())


def test_missing_grants_block_until_granted(plugins_dir):
    write_plugin(plugins_dir, "needs-storage", STORE_ON_ACTIVATE, capabilities=["storage", "settings.read"])

    async def main():
        host = await started(plugins_dir, grant=False)
        record = await host.activate("needs-storage")
        assert record.state is PluginState.BLOCKED
        assert record.error.code == "E_CAPABILITY"
        assert "settings.read" in record.error.message and "storage" in record.error.message
        assert host.store.kv_keys("needs-storage") == []
        host.grants.grant_requested("needs-storage")
        record = await host.activate("needs-storage")
        assert record.state is PluginState.ACTIVE and record.error is None
        assert host.store.kv_get("needs-storage", "activated") == '"needs-storage"'
        await host.close()

    run(main())


def test_a_failing_plugin_does_not_stop_the_others_or_lose_data(plugins_dir):
    write_plugin(plugins_dir, "crasher", """
def activate(ctx):
    ctx.storage.set("before-crash", 1)
    values = {}
    return values["missing"]
""", capabilities=["storage"])
    write_plugin(plugins_dir, "healthy", STORE_ON_ACTIVATE, capabilities=["storage"])

    async def main():
        host = await started(plugins_dir)
        states = await host.activate_all()
        assert states == {"crasher": PluginState.FAILED, "healthy": PluginState.ACTIVE}
        error = host.plugins["crasher"].error
        assert error.code == "E_PLUGIN"
        assert error.file == "crasher/plugin.py" and error.line == 5
        assert "KeyError" in error.message and "missing" in error.message
        assert str(plugins_dir) not in error.message + error.plugin_traceback
        # what the plugin stored before failing is kept
        assert host.store.kv_get("crasher", "before-crash") == "1"
        assert host.store.kv_get("healthy", "activated") == '"healthy"'
        await host.close()

    run(main())


def test_timeout_marks_failed_and_host_carries_on(plugins_dir):
    write_plugin(plugins_dir, "spinner", """
def activate(ctx):
    while True:
        try:
            pass
        except BaseException:
            pass
""", limits={"timeoutMs": 200})
    write_plugin(plugins_dir, "healthy", STORE_ON_ACTIVATE, capabilities=["storage"])

    async def main():
        host = await started(plugins_dir)
        t0 = time.monotonic()
        record = await host.activate("spinner")
        elapsed = time.monotonic() - t0
        assert record.state is PluginState.FAILED and record.error.code == "E_TIMEOUT"
        assert elapsed < 0.2 + 1.0
        assert (await host.activate("healthy")).state is PluginState.ACTIVE
        await host.close()

    run(main())


def test_revoke_while_active_fails_the_next_call(plugins_dir):
    write_plugin(plugins_dir, "writer", """
def activate(ctx):
    ctx.storage.set("phase", "activate")

def deactivate(ctx):
    try:
        ctx.storage.set("phase", "deactivate")
    except CapabilityError as exc:
        ctx.log.warn("refused: " + str(exc))
        raise
""", capabilities=["storage"])

    async def main():
        host = await started(plugins_dir)
        assert (await host.activate("writer")).state is PluginState.ACTIVE
        host.grants.revoke("writer", "storage")
        record = await host.deactivate("writer")
        assert record.state is PluginState.INACTIVE
        assert "lacks capability 'storage'" in record.error.message
        assert host.store.kv_get("writer", "phase") == '"activate"'
        denied = host.store.audit_log(plugin_id="writer", action="denied")
        assert [e.detail["capability"] for e in denied] == ["storage"]
        await host.close()

    run(main())


def test_deactivate_disposes_subscriptions_and_closes_the_context(plugins_dir):
    write_plugin(plugins_dir, "subs", """
saved = []

class Marker:
    def __init__(self, ctx, name):
        self.ctx = ctx
        self.name = name
    def dispose(self):
        self.ctx.storage.set("disposed." + self.name, True)

def activate(ctx):
    saved.append(ctx)
    ctx.subscriptions.append(Marker(ctx, "one"))
    ctx.subscriptions.append(Marker(ctx, "two"))

def deactivate(ctx):
    ctx.storage.set("deactivated", True)
""", capabilities=["storage"])

    async def main():
        host = await started(plugins_dir)
        await host.activate("subs")
        await host.deactivate("subs")
        assert host.store.kv_keys("subs") == ["deactivated", "disposed.one", "disposed.two"]
        await host.close()

    run(main())


def test_deactivating_a_dependency_stops_its_dependents_first(plugins_dir):
    write_plugin(plugins_dir, "base-lib", "def activate(ctx):\n    pass\n")
    write_plugin(plugins_dir, "consumer", "def activate(ctx):\n    pass\n",
                 relationships={"requires": [{"id": "base-lib", "versionRange": "^1.0"}]})

    async def main():
        host = await started(plugins_dir)
        assert (await host.activate("consumer")).state is PluginState.ACTIVE
        assert host.plugins["base-lib"].state is PluginState.ACTIVE  # activated first, on demand
        await host.deactivate("base-lib")
        assert host.plugins["consumer"].state is PluginState.INACTIVE
        await host.close()

    run(main())


def test_cycles_and_missing_dependencies_block_by_name(plugins_dir):
    write_plugin(plugins_dir, "ping", "def activate(ctx):\n    pass\n",
                 relationships={"requires": [{"id": "pong", "versionRange": "*"}]})
    write_plugin(plugins_dir, "pong", "def activate(ctx):\n    pass\n",
                 relationships={"requires": [{"id": "ping", "versionRange": "*"}]})
    write_plugin(plugins_dir, "orphan", "def activate(ctx):\n    pass\n",
                 relationships={"requires": [{"id": "nowhere", "versionRange": "^1"}]})
    write_plugin(plugins_dir, "fine", "def activate(ctx):\n    pass\n")

    async def main():
        host = await started(plugins_dir)
        states = await host.activate_all()
        assert states["fine"] is PluginState.ACTIVE
        for pid in ("ping", "pong", "orphan"):
            assert states[pid] is PluginState.BLOCKED
        assert "ping" in host.plugins["ping"].error.message and "pong" in host.plugins["ping"].error.message
        assert "'nowhere'" in host.plugins["orphan"].error.message
        # asking for one of them directly names the cycle too
        record = await host.activate("ping")
        assert record.state is PluginState.BLOCKED and "cycle" in record.error.message
        await host.close()

    run(main())


def test_unknown_invalid_and_disabled_plugins(plugins_dir, tmp_path):
    write_plugin(plugins_dir, "switchable", "def activate(ctx):\n    pass\n")
    db = tmp_path / "h.db"

    async def main():
        host = await started(plugins_dir, db)
        with pytest.raises(PluginNotFoundError):
            await host.activate("ghost")
        await host.activate("switchable")
        record = await host.disable("switchable")
        assert record.state is PluginState.DISABLED
        with pytest.raises(LifecycleError, match="disabled"):
            await host.activate("switchable")
        await host.close()
        # disabled is remembered across a restart
        host = await started(plugins_dir, db)
        assert host.plugins["switchable"].state is PluginState.DISABLED
        assert (await host.activate_all())["switchable"] is PluginState.DISABLED
        await host.enable("switchable")
        assert (await host.activate("switchable")).state is PluginState.ACTIVE
        await host.close()

    run(main())


def test_storage_settings_and_grants_survive_a_restart(plugins_dir, tmp_path):
    write_plugin(plugins_dir, "counter", """
def activate(ctx):
    n = ctx.storage.get("n", 0) + 1
    ctx.storage.set("n", n)
    ctx.log.info("run " + str(n) + " as " + ctx.settings.get("who"))
""", capabilities=["storage", "settings.read"],
        settings={"type": "object", "properties": {"who": {"type": "string", "default": "nobody"}}})
    db = tmp_path / "h.db"

    async def once(grant):
        host = await started(plugins_dir, db, grant=grant)
        if grant:
            host.set_setting("counter", "who", "ada")
        record = await host.activate("counter")
        assert record.state is PluginState.ACTIVE, record.error
        await host.close()

    run(once(True))
    run(once(False))  # grants come from the file, not from this run
    host = Host(plugins_dir, db)
    assert host.store.kv_get("counter", "n") == "2"
    assert host.store.settings_get_all("counter") == {"who": "ada"}
    run(host.close())


def test_plugin_log_and_print_reach_standard_logging(plugins_dir, caplog):
    write_plugin(plugins_dir, "chatty", """
print("printed", 42)

def activate(ctx):
    ctx.log.warn("warned", {"k": "v"})
""")
    caplog.set_level(logging.DEBUG, logger="hostrt.plugins")

    async def main():
        host = await started(plugins_dir)
        await host.activate("chatty")
        await host.close()

    run(main())
    messages = [(r.name, r.levelname, r.getMessage()) for r in caplog.records if r.name.startswith("hostrt.plugins")]
    assert ("hostrt.plugins.chatty", "INFO", "printed 42") in messages
    assert ("hostrt.plugins.chatty", "WARNING", "warned") in messages


def test_sync_host_has_the_same_lifecycle(plugins_dir):
    write_plugin(plugins_dir, "sync-one", STORE_ON_ACTIVATE, capabilities=["storage"])
    with SyncHost(plugins_dir) as host:
        host.discover()
        host.grants.grant_requested("sync-one")
        assert host.activate_all() == {"sync-one": PluginState.ACTIVE}
        assert host.deactivate("sync-one").state is PluginState.INACTIVE
        assert host.activate("sync-one").state is PluginState.ACTIVE
    with pytest.raises(RuntimeError, match="closed"):
        host.discover()


def test_activating_an_invalid_plugin_says_why(plugins_dir):
    bad = plugins_dir / "half-written"
    bad.mkdir()
    (bad / "plugin.json").write_text('{"schemaVersion": 1, "id": "half-written"')

    async def main():
        host = Host(plugins_dir)
        await host.discover()
        with pytest.raises(LifecycleError, match="plugin folder 'half-written' is invalid"):
            await host.activate("half-written")
        await host.close()

    run(main())


def test_an_unsafe_settings_schema_fails_only_that_plugin(plugins_dir):
    """A plugin whose settings cannot be evaluated ends failed; the rest run."""
    write_plugin(plugins_dir, "fine-one", STORE_ON_ACTIVATE, capabilities=["storage"])
    write_plugin(plugins_dir, "odd-one", "def activate(ctx):\n    pass\n",
                 settings={"type": "object", "properties": {"n": {"type": "integer", "default": 1}}})

    async def main():
        host = await started(plugins_dir)
        # the manifest passed validation; break the schema behind its back
        object.__setattr__(host.plugins["odd-one"].manifest, "settings", {"$ref": "file:///etc/passwd"})
        states = await host.activate_all()
        assert states == {"fine-one": PluginState.ACTIVE, "odd-one": PluginState.FAILED}
        assert host.plugins["odd-one"].error.code == "E_SETTINGS"
        await host.close()

    run(main())


def test_lifecycle_listeners_hear_every_change_and_cannot_break_the_host(plugins_dir):
    write_plugin(plugins_dir, "good", "def activate(ctx):\n    pass\n")
    write_plugin(plugins_dir, "bad", "def activate(ctx):\n    raise ValueError('no')\n")

    async def main():
        host = await started(plugins_dir)
        heard = []

        def broken(record, error):
            raise RuntimeError("listener bug")

        remove = host.on_lifecycle(lambda record, error: heard.append((record.id, record.state.value, error)))
        host.on_lifecycle(broken)
        await host.activate_all()
        assert host.plugins["good"].state is PluginState.ACTIVE
        assert [(pid, state) for pid, state, _ in heard] == [
            ("bad", "loading"), ("bad", "failed"), ("good", "loading"), ("good", "active")]
        assert isinstance(heard[1][2], PluginError) and heard[3][2] is None
        remove()
        await host.deactivate("good")
        assert len(heard) == 4
        await host.close()

    run(main())
