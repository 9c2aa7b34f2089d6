"""The arena itself: it must notice a leak, a write it did not expect and
a broken victim, or the attacks' passing would prove nothing."""

from __future__ import annotations

import json

import pytest

from hostrt import PluginCompileError, PluginState


def test_a_contained_attack_passes(arena):
    async def attack(arena):
        attempt = await arena.attack("walker", """
            def gen():
                yield 1

            def activate(ctx):
                g = gen()
                ctx.storage.set("loot", str(g.gi_frame.f_globals))
        """, capabilities=["storage"])
        assert attempt.failed_with(PluginCompileError, '"gi_frame" is a restricted name')
        assert attempt.state is PluginState.FAILED and attempt.loot == {}

    arena.run(attack)


def test_the_arena_notices_a_leaked_canary(arena):
    async def attack(arena):
        # the test (not a plugin) puts the canary where a plugin's data goes
        await arena.attack("leaky", "def activate(ctx):\n    pass\n", capabilities=["storage"])
        arena.host.store.kv_set("leaky", "loot", json.dumps(arena.canaries["storage"]), quota_bytes=1 << 20)

    with pytest.raises(AssertionError, match="the storage canary leaked"):
        arena.run(attack)


def test_the_arena_notices_a_file_written_and_a_victim_harmed(arena, tmp_path):
    async def writes_a_file(arena):
        (tmp_path / "outside" / "dropped.txt").write_text("x")

    with pytest.raises(AssertionError, match="dropped.txt was written"):
        arena.run(writes_a_file)


def test_the_arena_notices_a_changed_victim(tmp_path):
    from adversarial.arena import Arena

    arena = Arena(tmp_path)

    async def harms_the_victim(arena):
        arena.host.store.kv_set("victim", "secret", '"gone"', quota_bytes=1 << 20)

    with pytest.raises(AssertionError):
        arena.run(harms_the_victim)
