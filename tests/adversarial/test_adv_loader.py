"""Hostile plugin folders: what a plugin author controls before any code
runs, namely the folder's files, its manifest and the names it chooses for
its storage keys and settings.

Every folder here would, if the loader believed it, run code that is not
the plugin's own, claim another plugin's identity (and with it its grants,
storage and settings), or make the host read more than it should. Each test
asserts the exact refusal (a ManifestError naming ``plugin.json`` and the
JSON path of the problem, or the documented StorageError/SettingsError
code seen by the plugin), and the arena proves nothing leaked or changed.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from hostrt import PluginState
from hostrt.context import plugin_logger
from hostrt.errors import ManifestError, SettingsError
from hostrt.manifest import MAX_MANIFEST_BYTES

# What a folder's code would try if the loader ran it: every canary it can
# think of, kept in its own storage for the arena to find.
THIEF_PY = """
def activate(ctx):
    loot = {}
    try:
        import os
        loot["env"] = os.environ.get("HOSTRT_ARENA_SECRET")
    except Exception as exc:
        loot["env"] = "refused"
    for name, grab in [("storage", lambda: ctx.storage.get("secret")),
                       ("setting", lambda: ctx.settings.get("token"))]:
        try:
            loot[name] = grab()
        except Exception as exc:
            loot[name] = getattr(exc, "code", "refused")
    ctx.storage.set("loot", loot)
"""


def manifest(plugin_id: str, **fields: Any) -> dict[str, Any]:
    """A valid Python plugin manifest, with ``fields`` changed."""
    data: dict[str, Any] = {"schemaVersion": 1, "id": plugin_id, "name": plugin_id, "version": "1.0.0",
                            "runtime": "python", "capabilities": ["storage"]}
    data.update(fields)
    return data


def problems_of(error: Any) -> dict[str, str]:
    """The ManifestError's problems by JSON path."""
    assert isinstance(error, ManifestError), error
    return {p.json_path: p.message for p in error.problems}


def assert_invalid(arena: Any, attempt: Any, folder: str, path: str, text: str = "") -> None:
    """The folder was refused at discovery: it is listed in ``host.invalid``
    with a ManifestError naming its own plugin.json and ``path``."""
    assert attempt.state is PluginState.INVALID, (folder, attempt.state, attempt.error)
    assert folder in arena.host.invalid and folder not in arena.host.plugins
    assert attempt.error.file == str(arena.plugins / folder / "plugin.json")
    found = problems_of(attempt.error)
    assert path in found, (folder, found)
    assert text in found[path], (folder, found)
    assert attempt.loot == {}


def write_folder(arena: Any, folder: str, data: dict[str, Any] | str | bytes, *, thief: bool = True,
                 **files: str | bytes) -> Path:
    """A plugin folder with ``data`` as plugin.json (a dict is dumped) and,
    with ``thief``, the thief as plugin.py unless ``files`` say otherwise."""
    raw = json.dumps(data) if isinstance(data, dict) else data
    return arena.write_files(folder, {"plugin.json": raw, **({"plugin.py": THIEF_PY} if thief else {}), **files})


# -- main: syntax ---------------------------------------------------------------------

MAIN_TRICKS = {
    "dotdot": ("../thief-lib/thief.py", "contains '..'"),
    "dotdot-inside": ("lib/../../thief-lib/thief.py", "contains '..'"),
    "absolute": ("/tmp/thief.py", "is absolute"),
    "drive": ("C:\\thief.py", "backslashes"),
    "drive-slash": ("C:/thief.py", "must not contain ':'"),
    "unc": ("\\\\server\\share\\thief.py", "backslashes"),
    "backslash": ("lib\\thief.py", "backslashes"),
    "nul": ("plugin.py\x00.js", "NUL"),
    "stream": ("plugin.py:hidden.py", "must not contain ':'"),
    "dot-segment": ("./plugin.py", "'.' segment"),
    "empty-segment": ("lib//plugin.py", "empty segment"),
    "not-python": ("plugin.txt", "must end in one of"),
}


@pytest.mark.parametrize("case", list(MAIN_TRICKS))
def test_main_paths_that_leave_the_folder_are_refused_before_anything_is_read(arena, case):
    main, reason = MAIN_TRICKS[case]
    # What the tricks aim at: code in a folder that is no plugin at all.
    arena.write_files("thief-lib", {"thief.py": THIEF_PY})
    write_folder(arena, "evil", manifest("evil", main=main, runtime=None), **{"lib/plugin.py": THIEF_PY})

    async def attack(arena):
        attempt = await arena.activate("evil")
        assert_invalid(arena, attempt, "evil", "$.main", reason)

    arena.run(attack)


# -- main: on disk ------------------------------------------------------------------------


def test_main_linked_to_a_secret_outside_cannot_show_it_in_a_compile_error(arena):
    # Were the link followed, the secret would be compiled as Python, and
    # the syntax error's code frame would quote it.
    folder = write_folder(arena, "linker", manifest("linker"), thief=False)
    (folder / "plugin.py").symlink_to(Path("..") / ".." / "outside" / "secret.txt")

    async def attack(arena):
        attempt = await arena.activate("linker")
        assert attempt.failed_with(ManifestError, "resolves to a file outside the plugin folder")
        assert list(problems_of(attempt.error)) == ["$.main"]
        assert str(arena.secret_file) not in attempt.error.message

    arena.run(attack)


def test_a_directory_on_mains_path_linked_outside_is_refused(arena):
    outside_code = arena.root / "outside" / "lib"
    outside_code.mkdir()
    (outside_code / "plugin.py").write_text(THIEF_PY)
    folder = write_folder(arena, "dirlinker", manifest("dirlinker", main="lib/plugin.py", runtime=None))
    (folder / "lib").symlink_to(outside_code, target_is_directory=True)

    async def attack(arena):
        attempt = await arena.activate("dirlinker")
        assert attempt.failed_with(ManifestError, "'lib/plugin.py' resolves to a file outside the plugin folder")
        assert attempt.loot == {}

    arena.run(attack)


def test_main_linked_into_a_sibling_whose_name_shares_the_prefix_is_refused(arena):
    # "notes-evil/plugin.py" -> "notes/plugin.py" and the other way round:
    # containment compares whole path components, never string prefixes.
    arena.write_files("notes", {"plugin.json": json.dumps(manifest("notes")), "plugin.py": THIEF_PY})
    for folder, target in [("notes-evil", "notes"), ("notes.evil", "notes"), ("notes2", "notes-evil")]:
        path = write_folder(arena, folder, manifest(folder), thief=False)
        (path / "plugin.py").symlink_to(Path("..") / target / "plugin.py")

    async def attack(arena):
        for folder in ("notes-evil", "notes.evil", "notes2"):
            attempt = await arena.activate(folder)
            assert attempt.failed_with(ManifestError, "outside the plugin folder"), folder
        # the real one is fine, and only it holds its rows
        assert (await arena.activate("notes")).state is PluginState.ACTIVE
        assert arena.host.store.kv_keys("notes") == ["loot"]
        for folder in ("notes-evil", "notes.evil", "notes2"):
            assert arena.host.store.kv_keys(folder) == []

    arena.run(attack)


def test_links_that_stay_inside_the_folder_are_followed(arena):
    folder = write_folder(arena, "inside", manifest("inside", main="alias/entry.py", runtime=None),
                          **{"src/entry.py": 'def activate(ctx):\n    ctx.storage.set("ran", ctx.plugin.id)\n'})
    (folder / "alias").symlink_to("src", target_is_directory=True)

    async def attack(arena):
        attempt = await arena.activate("inside")
        assert attempt.state is PluginState.ACTIVE and attempt.loot == {"ran": "inside"}

    arena.run(attack)


def test_a_plugin_folder_linked_from_outside_is_confined_to_where_it_really_is(arena):
    # A linked plugin folder is allowed (docs/manifest.md); its main is
    # checked against the folder's real location, so "../secret.txt" from
    # there is as far out of reach as from anywhere else.
    real = arena.root / "outside" / "linked-real"
    real.mkdir()
    (real / "plugin.json").write_text(json.dumps(manifest("linked", main="entry.py", runtime=None)))
    (real / "entry.py").symlink_to(Path("..") / "secret.txt")
    (arena.plugins / "linked").symlink_to(real, target_is_directory=True)
    # ... and a link to another plugin's folder is a copy claiming its id
    (arena.plugins / "aaa-victim").symlink_to(arena.plugins / "victim", target_is_directory=True)
    # ... and a link to a folder without plugin.json is no plugin at all
    (arena.plugins / "outside-dir").symlink_to(arena.root / "outside", target_is_directory=True)

    async def attack(arena):
        attempt = await arena.activate("linked")
        assert attempt.failed_with(ManifestError, "'entry.py' resolves to a file outside the plugin folder")
        copy = await arena.activate("aaa-victim")
        assert_invalid(arena, copy, "aaa-victim", "$.id", "must equal the plugin's folder name 'aaa-victim'")
        assert arena.host.plugins["victim"].folder == arena.plugins / "victim"
        assert "outside-dir" not in arena.host.plugins and "outside-dir" not in arena.host.invalid

    arena.run(attack)


# -- identity -----------------------------------------------------------------------------

LOOKALIKE_IDS = {
    "cyrillic-i": ("v\u0456ctim", "v\u0456ctim"),
    "fullwidth": ("\uff56\uff49\uff43\uff54\uff49\uff4d", "\uff56\uff49\uff43\uff54\uff49\uff4d"),
    "upper": ("Victim", "Victim"),
    "trailing-dot": ("victim.", "victim."),
    "slash": ("victim-slash", "victim/secret"),
    "backslash": ("victim\\secret", "victim\\secret"),
    "colon": ("victim:secret", "victim:secret"),
    "space": ("victim x", "victim x"),
    "trailing-space": ("victim ", "victim "),
    "zero-width": ("vic\u200btim", "vic\u200btim"),
    "dotdot": ("victim..x", "victim..x"),
    "underscore": ("victim_x", "victim_x"),
    "newline": ("victim-nl", "victim\n"),
}


def test_lookalike_and_separator_ids_are_refused(arena):
    for folder, plugin_id in LOOKALIKE_IDS.values():
        write_folder(arena, folder, manifest(plugin_id, capabilities=["storage", "settings.read"]))

    async def attack(arena):
        for case, (folder, _) in LOOKALIKE_IDS.items():
            attempt = await arena.activate(folder)
            text = "must not contain '..'" if case == "dotdot" else "does not match"
            assert_invalid(arena, attempt, folder, "$.id", text)
        assert list(arena.host.plugins) == ["victim"]

    arena.run(attack)


@pytest.mark.parametrize("folder, plugin_id, text", [
    ("aaa-copy", "victim", "must equal the plugin's folder name 'aaa-copy'"),
    ("zzz-copy", "victim", "must equal the plugin's folder name 'zzz-copy'"),
    ("host", "host", "is reserved"),
    ("victim-evil", "victim", "must equal the plugin's folder name"),
])
def test_an_id_claimed_by_another_folder_or_the_host_is_refused(arena, folder, plugin_id, text):
    write_folder(arena, folder, manifest(plugin_id, capabilities=["storage", "settings.read"]))

    async def attack(arena):
        attempt = await arena.activate(folder)
        assert_invalid(arena, attempt, folder, "$.id", text)
        # the real victim keeps its folder, its grants and its rows (the
        # arena checks the last two)
        assert arena.host.plugins["victim"].folder == arena.plugins / "victim"

    arena.run(attack)


# -- wrong JSON types, field by field ----------------------------------------------------------

EVENT = {"name": "evil.note"}
COMMAND = {"name": "evil.run"}
WRONG_TYPES: list[tuple[dict[str, Any], str]] = [
    ({"schemaVersion": "1"}, "$.schemaVersion"),
    ({"schemaVersion": 1.0}, "$.schemaVersion"),
    ({"schemaVersion": True}, "$.schemaVersion"),
    ({"schemaVersion": 10**30}, "$.schemaVersion"),
    ({"name": ["evil"]}, "$.name"),
    ({"name": {"en": "evil"}}, "$.name"),
    ({"version": 1}, "$.version"),
    ({"version": [1, 0, 0]}, "$.version"),
    ({"runtime": ["python"]}, "$.runtime"),
    ({"runtime": "Python"}, "$.runtime"),
    ({"main": 1}, "$.main"),
    ({"apiVersion": "1"}, "$.apiVersion"),
    ({"author": {}}, "$.author"),
    ({"description": []}, "$.description"),
    ({"capabilities": "storage"}, "$.capabilities"),
    ({"capabilities": {"0": "storage"}}, "$.capabilities"),
    ({"capabilities": [["storage"]]}, "$.capabilities[0]"),
    ({"capabilities": [None]}, "$.capabilities[0]"),
    ({"events": EVENT}, "$.events"),
    ({"events": [["evil.note"]]}, "$.events[0]"),
    ({"events": [{**EVENT, "maxPayloadBytes": "10"}]}, "$.events[0].maxPayloadBytes"),
    ({"events": [{**EVENT, "maxPayloadBytes": 10**40}]}, "$.events[0].maxPayloadBytes"),
    ({"events": [{**EVENT, "maxPayloadBytes": 2.5}]}, "$.events[0].maxPayloadBytes"),
    ({"events": [{**EVENT, "schema": []}]}, "$.events[0].schema"),
    ({"commands": [{"name": 1}]}, "$.commands[0].name"),
    ({"commands": [{**COMMAND, "paramsSchema": "object"}]}, "$.commands[0].paramsSchema"),
    ({"settings": []}, "$.settings"),
    ({"settings": "object"}, "$.settings"),
    ({"limits": []}, "$.limits"),
    ({"limits": {"timeoutMs": "100"}}, "$.limits.timeoutMs"),
    ({"limits": {"timeoutMs": 10**30}}, "$.limits.timeoutMs"),
    ({"limits": {"timeoutMs": -1}}, "$.limits.timeoutMs"),
    ({"limits": {"memoryMb": 1e300}}, "$.limits.memoryMb"),
    ({"limits": {"memoryMb": False}}, "$.limits.memoryMb"),
    ({"relationships": []}, "$.relationships"),
    ({"relationships": {"requires": {"id": "victim", "versionRange": "*"}}}, "$.relationships.requires"),
    ({"relationships": {"before": [1]}}, "$.relationships.before[0]"),
    ({"relationships": {"after": "victim"}}, "$.relationships.after"),
    ({"load": {"priority": 1}}, "$.load.priority"),
    ({"load": "high"}, "$.load"),
    ({"engines": "*"}, "$.engines"),
    ({"engines": {"hostrt": 1}}, "$.engines.hostrt"),
    ({"$schema": 1}, "$.$schema"),
]


def test_wrong_json_types_are_refused_at_their_path_for_every_field_class(arena):
    for index, (fields, _) in enumerate(WRONG_TYPES):
        write_folder(arena, f"types-{index}", manifest(f"types-{index}", **fields))

    async def attack(arena):
        for index, (fields, path) in enumerate(WRONG_TYPES):
            attempt = await arena.activate(f"types-{index}")
            assert_invalid(arena, attempt, f"types-{index}", path)

    arena.run(attack)


# -- raw text: what the JSON parser sees ---------------------------------------------------

VALID = json.dumps(manifest("raw"))[1:-1]  # the members, to wrap
RAW_MANIFESTS: dict[str, tuple[str | bytes, str, str]] = {
    "nan": ('{' + VALID + ', "limits": {"timeoutMs": NaN}}', "$.limits.timeoutMs", "NaN is not valid JSON"),
    "infinity": ('{' + VALID + ', "limits": {"memoryMb": Infinity}}', "$.limits.memoryMb", "Infinity"),
    "minus-infinity": ('{' + VALID + ', "x": -Infinity}', "$.x", "-Infinity is not valid JSON"),
    "overflow": ('{' + VALID + ', "limits": {"timeoutMs": 1e400}}', "$.limits.timeoutMs", "too large"),
    "huge-int": ('{' + VALID + ', "limits": {"timeoutMs": 1' + "0" * 5000 + '}}', "$.limits.timeoutMs",
                 "5001 digits"),
    "duplicate-id": ('{' + VALID + ', "id": "victim"}', "$.id", "duplicate key 'id'"),
    "duplicate-capabilities": ('{' + VALID + ', "capabilities": ["storage", "host.call:*"]}', "$.capabilities",
                               "duplicate key"),
    "utf16": (('{' + VALID + '}').encode("utf-16"), "$", "not valid UTF-8"),
    "latin1": (('{' + VALID.replace('"name": "raw"', '"name": "r\xe9sum\xe9"') + '}').encode("latin-1"), "$",
               "not valid UTF-8"),
    "lone-surrogate": ('{' + VALID.replace('"name": "raw"', '"name": "\\ud800"') + '}', "$.name",
                       "lone surrogate"),
    "trailing-garbage": ('{' + VALID + '} {"id": "victim"}', "$", "invalid JSON: Extra data"),
    "empty": ("", "$", "invalid JSON"),
    "array": ("[" + json.dumps(manifest("raw")) + "]", "$", "must be a JSON object"),
    "null": ("null", "$", "must be a JSON object"),
    "deep": ('{' + VALID + ', "settings": ' + "[" * 100_000 + "]" * 100_000 + '}', "$",
             "nested more than 64 levels deep"),
    "deep-objects": ('{' + VALID + ', "x": ' + '{"a": ' * 64 + "1" + "}" * 64 + '}', "$.x" + ".a" * 64,
                     "nested more than 64"),
    "single-quotes": ("{'id': 'raw'}", "$", "invalid JSON"),
    "comment": ('{' + VALID + ' /* host.call:* */}', "$", "invalid JSON"),
}


@pytest.mark.parametrize("case", list(RAW_MANIFESTS))
def test_hostile_manifest_text_is_refused_with_its_path(arena, case):
    raw, path, text = RAW_MANIFESTS[case]
    write_folder(arena, "raw", raw)

    async def attack(arena):
        attempt = await arena.activate("raw")
        assert_invalid(arena, attempt, "raw", path, text)

    arena.run(attack)


def test_a_byte_order_mark_is_tolerated(arena):
    # Some editors write one; it is no attack, and must not make a valid
    # manifest invalid (nor be taken into the first key's name).
    write_folder(arena, "bom", "\ufeff" + json.dumps(manifest("bom")),
                 **{"plugin.py": "\ufeffdef activate(ctx):\n    ctx.storage.set('ran', 1)\n"})

    async def attack(arena):
        attempt = await arena.activate("bom")
        assert attempt.state is PluginState.ACTIVE and attempt.loot == {"ran": 1}

    arena.run(attack)


def test_a_100_mb_manifest_is_refused_after_reading_its_limit(arena):
    # Valid JSON followed by 100 MB of whitespace: only the size limit
    # stands between it and a parser holding all of it.
    folder = write_folder(arena, "huge", "")
    with open(folder / "plugin.json", "wb") as handle:
        handle.write(json.dumps(manifest("huge")).encode())
        chunk = b" " * (1 << 20)
        for _ in range(100):
            handle.write(chunk)
    arena.forget(folder / "plugin.json")  # not kept in memory twice: the arena sees it unchanged

    async def attack(arena):
        attempt = await arena.activate("huge")
        assert_invalid(arena, attempt, "huge", "$", f"larger than {MAX_MANIFEST_BYTES} bytes")

    arena.run(attack)


def test_a_manifest_that_is_a_fifo_or_a_directory_does_not_hang_discovery(arena):
    fifo = arena.plugins / "fifo"
    fifo.mkdir()
    os.mkfifo(fifo / "plugin.json")
    (arena.plugins / "dir" / "plugin.json").mkdir(parents=True)

    async def attack(arena):
        attempt = await arena.activate("fifo")
        assert_invalid(arena, attempt, "fifo", "$", "not a regular file")
        attempt = await arena.activate("dir")
        assert_invalid(arena, attempt, "dir", "$", "not a regular file")

    arena.run(attack)


# -- storage keys and setting names aimed at another plugin ----------------------------------

HOSTILE_KEYS = [
    "victim/secret", "../victim", "../victim/secret", "victim:secret", "victim\x00secret", "secret\x00",
    "secret'--", "secret\" OR 1=1 --", "'; DROP TABLE kv; --", "%", "sec%", "*", "", " secret",
    "secret ", "secret\n", "ｓｅｃｒｅｔ", "x" * 101, "victim\\secret",
]

KEY_THIEF_PY = """
KEYS = %r

def attempt(fn):
    try:
        return ["ok", fn()]
    except Exception as exc:
        return [getattr(exc, "code", "other"), None]

def activate(ctx):
    ctx.storage.set("a_1", 1)
    ctx.storage.set("ab1", 2)
    out = {}
    for key in KEYS:
        out[key] = [
            attempt(lambda: ctx.storage.get(key)),
            attempt(lambda: ctx.storage.set(key, "overwritten")),
            attempt(lambda: ctx.storage.delete(key)),
            attempt(lambda: ctx.storage.keys(key)),
            attempt(lambda: ctx.settings.get(key)),
            attempt(lambda: ctx.settings.set(key, "overwritten")),
        ]
    # wildcards of LIKE, had the store used it: "_" is an allowed key
    # character and must match itself only
    out["prefix _"] = attempt(lambda: ctx.storage.keys("_"))
    out["prefix a_"] = attempt(lambda: ctx.storage.keys("a_"))
    out["prefix all"] = attempt(lambda: ctx.storage.keys())
    out["settings"] = attempt(lambda: ctx.settings.all())
    out["secret"] = attempt(lambda: ctx.storage.get("secret"))
    out["token"] = attempt(lambda: ctx.settings.get("token"))
    ctx.storage.set("outcomes", out)
"""


def test_storage_keys_and_setting_names_cannot_reach_another_plugin(arena):
    async def attack(arena):
        attempt = await arena.attack(
            "keythief", KEY_THIEF_PY % (HOSTILE_KEYS,),
            capabilities=["storage", "settings.read", "settings.write"],
            settings={"type": "object", "properties": {"own": {"type": "string", "default": "mine"}},
                      "additionalProperties": {"type": "string"}})
        assert attempt.state is PluginState.ACTIVE, attempt.error
        out = attempt.loot["outcomes"]
        refused_storage = [["E_STORAGE", None]] * 4
        refused_settings = [["E_SETTINGS", None]] * 2
        for key in HOSTILE_KEYS:
            expected = refused_storage + refused_settings
            if key == "":
                expected[3] = ["ok", ["a_1", "ab1"]]  # the empty prefix lists the plugin's own keys
            assert out[key] == expected, (key, out[key])
        assert out["prefix _"] == ["ok", []]
        assert out["prefix a_"] == ["ok", ["a_1"]]
        assert out["prefix all"] == ["ok", ["a_1", "ab1"]]
        assert out["settings"] == ["ok", {"own": "mine"}]
        # its own "secret" and "token" are its own (empty), not the victim's
        assert out["secret"] == ["ok", None] and out["token"] == ["ok", None]
        assert set(attempt.loot) == {"a_1", "ab1", "outcomes"}
        assert arena.host.store.settings_get_all("keythief") == {}

    arena.run(attack)


def test_sibling_ids_sharing_a_prefix_share_no_rows_settings_or_logger(arena):
    # a handler on the victim's logger: it must hear the victim only
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    source = """
def activate(ctx):
    ctx.log.info("sibling " + ctx.plugin.id, {"plugin_id": "victim"})
    ctx.storage.set("keys", ctx.storage.keys())
    ctx.storage.set("secret", ctx.storage.get("secret", "none"))
    ctx.storage.set("token", ctx.settings.get("token"))
"""
    settings = {"type": "object", "properties": {"token": {"type": "string"}}}

    async def attack(arena):
        plugin_logger("victim").addHandler(handler)
        try:
            for sibling in ("victim-x", "victim.x", "victimx", "victi"):
                attempt = await arena.attack(sibling, source, capabilities=["storage", "settings.read"],
                                             settings=settings)
                assert attempt.state is PluginState.ACTIVE, attempt.error
                assert attempt.loot == {"keys": [], "secret": "none", "token": None}
                assert attempt.logs == [f"sibling {sibling}"]
        finally:
            plugin_logger("victim").removeHandler(handler)
        assert seen == []
        assert "victim" not in arena.logs_of("victim.x")

    arena.run(attack)


@pytest.mark.parametrize("swapped", ["file", "directory"])
def test_plugin_json_swapped_for_a_link_after_it_was_checked_is_not_read(arena, monkeypatch, swapped):
    """The folder's author can swap plugin.json, or a directory on the path
    it links to, for a link to anywhere between the check that it lies
    inside the folder and its reading. The swap is made right after the
    check here (the attacker winning the race every time): had the link
    been followed, the outside file's JSON would be validated and its keys
    quoted in the errors."""
    import hostrt.manifest as manifest_module

    stolen = arena.root / "outside" / "conf" / "plugin.json"
    stolen.parent.mkdir()
    stolen.write_text(json.dumps({arena.canaries["file"]: "api key"}))
    folder = write_folder(arena, "swapper", "", **{"conf/plugin.json": json.dumps(manifest("swapper"))})
    arena.forget(folder / "plugin.json")  # a link from here on, checked by the arena as a link
    (folder / "plugin.json").unlink()
    (folder / "plugin.json").symlink_to(Path("conf") / "plugin.json")
    checked = manifest_module._resolve_inside
    armed: list[bool] = []

    def swap() -> None:
        if swapped == "file":
            (folder / "conf" / "plugin.json").rename(folder / "conf" / "kept.json")
            (folder / "conf" / "plugin.json").symlink_to(stolen)
        else:
            (folder / "conf").rename(folder / "kept")
            (folder / "conf").symlink_to(stolen.parent, target_is_directory=True)

    def swap_back() -> None:
        if swapped == "file":
            (folder / "conf" / "plugin.json").unlink()
            (folder / "conf" / "kept.json").rename(folder / "conf" / "plugin.json")
        else:
            (folder / "conf").unlink()
            (folder / "kept").rename(folder / "conf")

    def check_then_swap(plugin_dir: Path, relative: str, *args: Any) -> Path:
        path = checked(plugin_dir, relative, *args)
        if armed and Path(plugin_dir).name == "swapper" and relative == "plugin.json":
            armed.clear()
            swap()
        return path

    monkeypatch.setattr(manifest_module, "_resolve_inside", check_then_swap)

    async def attack(arena):
        assert (await arena.activate("swapper")).state is PluginState.ACTIVE  # unswapped, it is fine
        await arena.host.deactivate("swapper")
        armed.append(True)
        attempt = await arena.activate("swapper")
        assert not armed
        assert_invalid(arena, attempt, "swapper", "$", "replaced after it was checked")
        swap_back()  # or the arena's check of the files around the host would see the link

    arena.run(attack)


def test_a_setting_nested_to_the_documents_limit_is_a_settings_error(arena):
    """A setting value sits one level inside the settings document: a value
    that was itself just within the nesting limit used to pass its own
    check and then fail the document's with a bare ValueError, which the
    plugin saw as an internal host error (and the host's set_setting as a
    ValueError)."""
    source = """
def nest(depth):
    value = []
    for _ in range(depth):
        value = [value]
    return value

def activate(ctx):
    out = {}
    for depth in (62, 63, 64):
        try:
            ctx.settings.set("deep", nest(depth))
            out[str(depth)] = "stored"
        except Exception as exc:
            out[str(depth)] = getattr(exc, "code", "other")
    ctx.storage.set("outcomes", out)
"""

    async def attack(arena):
        attempt = await arena.attack("nester", source, capabilities=["storage", "settings.write"],
                                     settings={"type": "object", "additionalProperties": True})
        assert attempt.loot["outcomes"] == {"62": "stored", "63": "E_SETTINGS", "64": "E_SETTINGS"}
        with pytest.raises(SettingsError):
            arena.host.set_setting("nester", "deep", json.loads("[" * 64 + "]" * 64))  # nest(63)
        assert arena.host.get_settings("nester")["deep"] == json.loads("[" * 63 + "]" * 63)  # nest(62)

    arena.run(attack)
