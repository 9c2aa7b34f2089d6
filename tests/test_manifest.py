"""plugin.json: parsing, validation, error reporting, path safety, schema."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import hostrt
from hostrt.errors import ManifestError
from hostrt.manifest import (
    Manifest,
    hostrt_version,
    json_path,
    load_manifest,
    manifest_json_schema,
    resolve_main,
    validate_manifest,
)

from conftest import finishes

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = ROOT / "docs" / "plugin.schema.json"

# The DESIGN.md example.
EXAMPLE: dict[str, Any] = {
    "schemaVersion": 1,
    "id": "hello-js",
    "name": "Hello JS",
    "version": "1.2.0",
    "description": "Greets on app start",
    "author": "Jane Doe",
    "main": "plugin.js",
    "runtime": "javascript",
    "apiVersion": 1,
    "engines": {"hostrt": ">=0.1"},
    "capabilities": [
        "storage",
        "settings.read",
        "events.publish:greeting.*",
        "events.subscribe:app.started",
        "host.call:getSystems",
    ],
    "events": [{"name": "greeting.sent", "schema": {"type": "object"}, "maxPayloadBytes": 4096}],
    "commands": [{"name": "greet", "paramsSchema": {"type": "object"}, "description": "Say hello"}],
    "settings": {"type": "object", "properties": {"name": {"type": "string", "default": "world"}}},
    "relationships": {
        "requires": [{"id": "base-lib", "versionRange": "^1.0"}],
        "optional": [],
        "conflicts": [],
        "before": [],
        "after": [],
    },
    "load": {"priority": "default"},
    "limits": {"timeoutMs": 1000, "memoryMb": 64},
}

MINIMAL: dict[str, Any] = {
    "schemaVersion": 1,
    "id": "hello-py",
    "name": "Hello",
    "version": "1.0.0",
    "runtime": "python",
}

DELETE = object()


def manifest(*, base: dict[str, Any] = MINIMAL, **changes: Any) -> dict[str, Any]:
    """``base`` with top-level fields replaced (or removed with DELETE)."""
    data = copy.deepcopy(base)
    for key, value in changes.items():
        if value is DELETE:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def write_plugin(folder: Path, content: dict[str, Any] | str | bytes, main: str = "plugin.py") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(content, dict):
        content = json.dumps(content)
    if isinstance(content, str):
        content = content.encode()
    (folder / "plugin.json").write_bytes(content)
    if main:
        target = folder / main
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("def activate(ctx):\n    pass\n")
    return folder


def problems_of(exc: ManifestError) -> dict[str, str]:
    return {p.json_path: p.message for p in exc.problems}


@dataclass(frozen=True)
class Bad:
    label: str
    content: dict[str, Any] | str | bytes
    path: str
    fragment: str


_MINIMAL_TEXT = json.dumps(MINIMAL, indent=2)

BAD = [
    # unknown fields
    Bad("unknown top-level field", manifest(sizeLimit=10), "$.sizeLimit", "unknown field 'sizeLimit'"),
    Bad("unknown nested field", manifest(events=[{"name": "a.b", "size": 1}]), "$.events[0].size",
        "unknown field 'size'"),
    Bad("typo gets a suggestion", manifest(capabilites=[]), "$.capabilites",
        "did you mean 'capabilities'?"),
    Bad("snake_case name is not accepted", manifest(schema_version=1), "$.schema_version",
        "unknown field 'schema_version'"),
    Bad("required field missing", manifest(id=DELETE), "$.id", "required field 'id' is missing"),
    # ids
    Bad("id uppercase", manifest(id="Hello"), "$.id", "'Hello' does not match ^[a-z0-9]"),
    Bad("id leading dot", manifest(id=".hello"), "$.id", "'.hello' does not match"),
    Bad("id trailing dash", manifest(id="hello-"), "$.id", "'hello-' does not match"),
    Bad("id with ..", manifest(id="a..b"), "$.id", "'a..b' must not contain '..'"),
    Bad("id with .-", manifest(id="a.-b"), "$.id", "must not contain '.-'"),
    Bad("id with -.", manifest(id="a-.b"), "$.id", "must not contain '-.'"),
    Bad("id too long", manifest(id="a" * 129), "$.id", "does not match"),
    Bad("id too short", manifest(id="ab"), "$.id", "does not match"),
    Bad("id with slash", manifest(id="a/b"), "$.id", "does not match"),
    # versions
    Bad("version with two parts", manifest(version="1.0"), "$.version",
        "'1.0' is not a semantic version (MAJOR.MINOR.PATCH)"),
    Bad("version with leading zero", manifest(version="01.0.0"), "$.version", "not a semantic version"),
    Bad("version with v prefix", manifest(version="v1.0.0"), "$.version", "not a semantic version"),
    # JSON types: no coercion
    Bad("string for int", manifest(limits={"timeoutMs": "1000"}), "$.limits.timeoutMs",
        "expected an integer, got string '1000'"),
    Bad("int for string", manifest(name=5), "$.name", "expected a string, got integer 5"),
    Bad("bool for int", manifest(schemaVersion=True), "$.schemaVersion",
        "expected an integer, got boolean true"),
    Bad("float for int", manifest(events=[{"name": "a", "maxPayloadBytes": 4096.0}]),
        "$.events[0].maxPayloadBytes", "expected an integer, got number 4096.0"),
    Bad("object expected", manifest(engines=">=0.1"), "$.engines", "expected an object, got string"),
    Bad("array expected", manifest(capabilities="storage"), "$.capabilities",
        "expected an array, got string 'storage'"),
    Bad("null for required string", manifest(name=None), "$.name", "expected a string, got null"),
    # format versions
    Bad("schemaVersion 2", manifest(schemaVersion=2), "$.schemaVersion", "must be 1, got 2"),
    Bad("apiVersion 2", manifest(apiVersion=2), "$.apiVersion", "must be 1, got 2"),
    # text fields
    Bad("empty name", manifest(name=""), "$.name", "must not be empty"),
    Bad("blank name", manifest(name="   "), "$.name", "must not be blank"),
    Bad("name with newline", manifest(name="a\nb"), "$.name", "control characters"),
    Bad("name too long", manifest(name="n" * 101), "$.name", "at most 100 characters, got 101"),
    Bad("description too long", manifest(description="d" * 1001), "$.description", "at most 1000"),
    Bad("author too long", manifest(author="a" * 201), "$.author", "at most 200"),
    # capabilities
    Bad("unknown capability", manifest(capabilities=["network"]), "$.capabilities[0]",
        "unknown capability 'network'"),
    Bad("scoped capability without scope", manifest(capabilities=["storage", "events.publish"]),
        "$.capabilities[1]", "capability 'events.publish' needs a scope"),
    Bad("scoped capability with empty scope", manifest(capabilities=["host.call:"]),
        "$.capabilities[0]", "needs a scope"),
    Bad("scope on unscoped capability", manifest(capabilities=["storage:notes"]),
        "$.capabilities[0]", "capability 'storage' takes no scope"),
    Bad("bad scope characters", manifest(capabilities=["events.publish:a b"]),
        "$.capabilities[0]", "may use only letters"),
    Bad("duplicate capability", manifest(capabilities=["storage", "settings.read", "storage"]),
        "$.capabilities[2]", "duplicate capability 'storage' (also at index 0)"),
    # events and commands
    Bad("invalid event name", manifest(events=[{"name": "greeting sent"}]), "$.events[0].name",
        "'greeting sent' is not a valid name"),
    Bad("wildcard event name", manifest(events=[{"name": "greeting.*"}]), "$.events[0].name",
        "no wildcards"),
    Bad("duplicate event", manifest(events=[{"name": "a.b"}, {"name": "a.b"}]), "$.events[1].name",
        "duplicate event 'a.b' (also at index 0)"),
    Bad("invalid event schema", manifest(events=[{"name": "a", "schema": {"type": "objekt"}}]),
        "$.events[0].schema.type", "'objekt' is not valid"),
    Bad("invalid nested params schema",
        manifest(commands=[{"name": "go", "paramsSchema": {"properties": {"n": {"minimum": "x"}}}}]),
        "$.commands[0].paramsSchema.properties.n.minimum", "'x' is not of type 'number'"),
    Bad("invalid regex in result schema",
        manifest(commands=[{"name": "go", "resultSchema": {"pattern": "("}}]),
        "$.commands[0].resultSchema.pattern", "invalid regular expression"),
    Bad("duplicate command", manifest(commands=[{"name": "go"}, {"name": "go"}]),
        "$.commands[1].name", "duplicate command 'go'"),
    Bad("maxPayloadBytes 0", manifest(events=[{"name": "a", "maxPayloadBytes": 0}]),
        "$.events[0].maxPayloadBytes", "must be at least 1, got 0"),
    Bad("maxPayloadBytes negative", manifest(events=[{"name": "a", "maxPayloadBytes": -5}]),
        "$.events[0].maxPayloadBytes", "must be at least 1, got -5"),
    Bad("maxPayloadBytes too big", manifest(events=[{"name": "a", "maxPayloadBytes": 2 * 1024 * 1024 + 1}]),
        "$.events[0].maxPayloadBytes", "must be at most 2097152"),
    Bad("command maxPayloadBytes too big", manifest(commands=[{"name": "a", "maxPayloadBytes": 2 * 1024 * 1024 + 1}]),
        "$.commands[0].maxPayloadBytes", "must be at most 2097152"),
    Bad("command maxPayloadBytes 0", manifest(commands=[{"name": "a", "maxPayloadBytes": 0}]),
        "$.commands[0].maxPayloadBytes", "must be at least 1, got 0"),
    # main and runtime
    Bad("main with ..", manifest(main="../plugin.py"), "$.main", "contains '..'"),
    Bad("main with inner ..", manifest(main="lib/../plugin.py"), "$.main", "contains '..'"),
    Bad("absolute main", manifest(main="/etc/plugin.py"), "$.main", "is absolute"),
    Bad("backslash main", manifest(main="lib\\plugin.py"), "$.main", "forward slashes"),
    Bad("UNC main", manifest(main="\\\\server\\share\\plugin.py"), "$.main", "UNC"),
    Bad("drive letter main", manifest(main="C:/plugin.py"), "$.main", "drive letters"),
    Bad("NUL in main", manifest(main="plugin\x00.py"), "$.main", "NUL"),
    Bad("empty segment in main", manifest(main="lib//plugin.py"), "$.main", "empty segment"),
    Bad("dot segment in main", manifest(main="./plugin.py"), "$.main", "write 'plugin.py'"),
    Bad("empty main", manifest(main=""), "$.main", "must not be empty"),
    Bad("unknown extension", manifest(main="plugin.rb", runtime=DELETE), "$.main", "must end in one of"),
    Bad("runtime contradicts extension", manifest(main="plugin.js", runtime="python"), "$.runtime",
        "runtime 'python' does not match main 'plugin.js', a javascript file"),
    Bad("neither runtime nor main", manifest(runtime=DELETE), "$.runtime",
        'set "runtime" (\'javascript\' or \'python\') or "main"'),
    Bad("unknown runtime", manifest(runtime="ruby"), "$.runtime",
        "must be 'javascript' or 'python', got string 'ruby'"),
    # load and limits
    Bad("bad load priority", manifest(load={"priority": "urgent"}), "$.load.priority",
        "must be 'bootstrap', 'high', 'default' or 'low'"),
    Bad("timeout 0", manifest(limits={"timeoutMs": 0}), "$.limits.timeoutMs", "must be at least 1"),
    Bad("timeout too long", manifest(limits={"timeoutMs": 60001}), "$.limits.timeoutMs",
        "must be at most 60000, got 60001"),
    Bad("memory too big", manifest(limits={"memoryMb": 4097}), "$.limits.memoryMb", "must be at most 4096"),
    # versions of others
    Bad("invalid version range", manifest(relationships={"requires": [{"id": "base-lib", "versionRange": "^^1"}]}),
        "$.relationships.requires[0].versionRange", "'^^1' is not a valid version range"),
    Bad("requirement without range", manifest(relationships={"requires": [{"id": "base-lib"}]}),
        "$.relationships.requires[0].versionRange", "required field 'versionRange' is missing"),
    Bad("engines exclude this hostrt", manifest(engines={"hostrt": ">=99"}), "$.engines.hostrt",
        f"this plugin needs hostrt >=99, but hostrt {hostrt_version()} is installed"),
    Bad("engines not a range", manifest(engines={"hostrt": "latest"}), "$.engines.hostrt",
        "not a valid version range"),
    # relationships
    Bad("self-requirement", manifest(relationships={"requires": [{"id": "hello-py", "versionRange": "*"}]}),
        "$.relationships.requires[0].id", "cannot name itself ('hello-py')"),
    Bad("self-conflict", manifest(relationships={"conflicts": [{"id": "hello-py"}]}),
        "$.relationships.conflicts[0].id", "cannot name itself"),
    Bad("invalid id in before", manifest(relationships={"before": ["Base"]}),
        "$.relationships.before[0]", "'Base' does not match"),
    Bad("both before and after", manifest(relationships={"before": ["base-lib"], "after": ["base-lib"]}),
        "$.relationships.after[0]", "'base-lib' is also listed in 'before'"),
    Bad("required and optional", manifest(relationships={
        "requires": [{"id": "base-lib", "versionRange": "^1"}],
        "optional": [{"id": "base-lib", "versionRange": "^1"}]}),
        "$.relationships.optional[0].id", "also listed in 'requires'"),
    Bad("duplicate after", manifest(relationships={"after": ["base-lib", "base-lib"]}),
        "$.relationships.after[1]", "listed twice"),
    # settings
    Bad("settings default does not match", manifest(settings={
        "type": "object", "properties": {"greeting": {"type": "string", "default": 5}}}),
        "$.settings.properties.greeting.default", "default does not match its schema: 5 is not of type 'string'"),
    Bad("settings default checked through $ref", manifest(settings={
        "type": "object", "$defs": {"small": {"type": "integer", "maximum": 3}},
        "properties": {"n": {"$ref": "#/$defs/small", "default": 10}}}),
        "$.settings.properties.n.default", "10 is greater than the maximum of 3"),
    Bad("settings not an object schema", manifest(settings={"type": "string"}), "$.settings.type",
        'settings must be an object schema ("type": "object")'),
    Bad("settings invalid schema", manifest(settings={"type": "object", "required": "name"}),
        "$.settings.required", "is not of type 'array'"),
    # the file itself
    Bad("duplicate JSON key", _MINIMAL_TEXT.replace('"name"', '"name": "A",\n  "name"'), "$.name",
        "duplicate key 'name'"),
    Bad("duplicate nested JSON key",
        json.dumps(manifest(load={"priority": "high"})).replace('"priority"', '"priority": "low", "priority"'),
        "$.load.priority", "duplicate key 'priority'"),
    Bad("top level is an array", "[]", "$", "a manifest must be a JSON object, got an array"),
    Bad("top level is a string", '"plugin"', "$", "must be a JSON object, got string 'plugin'"),
    Bad("invalid JSON", '{\n  "id": "a",\n  "name" "b"\n}', "$",
        "invalid JSON: Expecting ':' delimiter (line 3, column 10)"),
    Bad("trailing comma", '{"id": "abc",}', "$", "invalid JSON"),
    Bad("NaN is not JSON", '{"schemaVersion": NaN}', "$.schemaVersion", "NaN is not valid JSON"),
    Bad("empty file", "", "$", "invalid JSON"),
    Bad("not UTF-8", b'{"name": "caf\xe9"}', "$", "not valid UTF-8"),
    Bad("too large", " " * (256 * 1024) + "{}", "$", "larger than 262144 bytes"),
    Bad("too deeply nested", manifest(settings=json.loads('{"type": "object", "x": ' + "[" * 70 + "]" * 70 + "}")),
        "$.settings.x" + "[0]" * 63, "nested more than 64 levels deep"),
]


def test_bad_table_is_distinct() -> None:
    assert len({b.label for b in BAD}) == len(BAD) >= 20


@pytest.mark.parametrize("bad", BAD, ids=lambda b: b.label)
def test_bad_manifest_is_rejected(tmp_path: Path, bad: Bad) -> None:
    folder = write_plugin(tmp_path / "plugin", bad.content)
    with pytest.raises(ManifestError) as info:
        load_manifest(folder)
    err = info.value
    assert err.file == str(folder / "plugin.json")
    assert err.code == "E_MANIFEST"
    found = problems_of(err)
    assert bad.path in found, f"no problem at {bad.path}; got {err.problems}"
    assert bad.fragment in found[bad.path]
    assert f"{bad.path}: " in str(err)


def test_every_problem_is_reported_at_once() -> None:
    data = manifest(
        id="Bad",
        version="1",
        sizeLimit=1,
        limits={"timeoutMs": "5", "memoryMb": 0},
        events=[{"name": "a b", "schema": {"type": 1}}],
        capabilities=["nope"],
        main="../x.py",
    )
    with pytest.raises(ManifestError) as info:
        validate_manifest(data, "somewhere/plugin.json")
    assert info.value.file == "somewhere/plugin.json"
    assert set(problems_of(info.value)) == {
        "$.id", "$.version", "$.sizeLimit", "$.limits.timeoutMs", "$.limits.memoryMb",
        "$.events[0].name", "$.events[0].schema.type", "$.capabilities[0]", "$.main",
    }


def test_duplicate_keys_and_schema_problems_are_reported_together(tmp_path: Path) -> None:
    text = json.dumps(manifest(version="1.0")).replace('"id"', '"id": "x", "id"')
    folder = write_plugin(tmp_path / "p", text)
    with pytest.raises(ManifestError) as info:
        load_manifest(folder)
    assert set(problems_of(info.value)) == {"$.id", "$.version"}


def test_error_to_dict_lists_problems(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as info:
        validate_manifest(manifest(sizeLimit=1), "p/plugin.json")
    assert info.value.to_dict() == {
        "code": "E_MANIFEST",
        "message": "p/plugin.json: invalid manifest\n  $.sizeLimit: unknown field 'sizeLimit'",
        "file": "p/plugin.json",
        "problems": [{"path": "$.sizeLimit", "message": "unknown field 'sizeLimit'"}],
    }


def test_missing_manifest(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError) as info:
        load_manifest(tmp_path / "empty")
    assert info.value.file == str(tmp_path / "empty" / "plugin.json")
    assert problems_of(info.value) == {"$": "'plugin.json' does not exist"}


def test_manifest_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "p" / "plugin.json").mkdir(parents=True)
    with pytest.raises(ManifestError, match="not a regular file"):
        load_manifest(tmp_path / "p")


def test_non_dict_passed_to_validate_manifest() -> None:
    with pytest.raises(ManifestError) as info:
        validate_manifest([], "x")  # type: ignore[arg-type]
    assert problems_of(info.value) == {"$": "a manifest must be a JSON object, got an array"}


# --- good manifests ----------------------------------------------------------


def test_design_example_round_trips(tmp_path: Path) -> None:
    folder = write_plugin(tmp_path / "hello-js", EXAMPLE, main="plugin.js")
    m = load_manifest(folder)
    assert m.id == "hello-js"
    assert m.schema_version == 1 and m.api_version == 1
    assert m.runtime_name == "javascript" and m.main_path == "plugin.js"
    assert m.semver.release == (1, 2, 0)
    assert m.events[0].payload_schema == {"type": "object"}
    assert m.events[0].max_payload_bytes == 4096
    assert m.commands[0].params_schema == {"type": "object"}
    assert m.commands[0].result_schema is None
    assert m.relationships.requires[0].range.contains("1.4.0")
    assert m.load.priority == "default"
    assert (m.limits.timeout_ms, m.limits.memory_mb) == (1000, 64)
    assert m.model_dump(by_alias=True, exclude_unset=True) == EXAMPLE
    again = validate_manifest(m.model_dump(by_alias=True, mode="json"), "again")
    assert again == m


def test_defaults(tmp_path: Path) -> None:
    m = validate_manifest(manifest(events=[{"name": "tick"}], commands=[{"name": "go"}]), "x")
    assert m.main is None and m.main_path == "plugin.py" and m.runtime_name == "python"
    assert m.api_version == 1
    assert m.engines.hostrt == ">=0.1"
    assert m.capabilities == [] and m.settings is None
    assert m.events[0].payload_schema == {} and m.events[0].max_payload_bytes == 65536
    assert m.commands[0].params_schema == {}
    assert m.relationships.requires == [] and m.relationships.before == []
    assert m.load.priority == "default"
    assert m.limits.timeout_ms is None and m.limits.memory_mb is None
    assert m.relationships.conflicts == []


@pytest.mark.parametrize(
    ("main", "runtime"),
    [("index.js", "javascript"), ("dist/main.cjs", "javascript"), ("src/plugin.py", "python")],
)
def test_runtime_is_inferred_from_main(main: str, runtime: str) -> None:
    m = validate_manifest(manifest(runtime=DELETE, main=main), "x")
    assert m.runtime is None
    assert m.runtime_name == runtime and m.main_path == main


def test_javascript_default_main() -> None:
    assert validate_manifest(manifest(runtime="javascript"), "x").main_path == "plugin.js"


def test_manifest_is_immutable() -> None:
    m = validate_manifest(MINIMAL, "x")
    with pytest.raises(Exception):
        m.id = "other-id"  # type: ignore[misc]


def test_utf8_bom_is_tolerated(tmp_path: Path) -> None:
    folder = write_plugin(tmp_path / "p", b"\xef\xbb\xbf" + json.dumps(MINIMAL).encode())
    assert load_manifest(folder).id == "hello-py"


def test_conflict_without_range_matches_any_version() -> None:
    m = validate_manifest(manifest(relationships={"conflicts": [{"id": "other-lib"}]}), "x")
    assert m.relationships.conflicts[0].version_range is None
    assert m.relationships.conflicts[0].range.contains("99.0.0")


def test_hostrt_version_is_the_package_version() -> None:
    assert hostrt_version() == hostrt.__version__


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        ((), "$"),
        (("events", 0, "schema", "type"), "$.events[0].schema.type"),
        (("settings", "properties", "a b"), '$.settings.properties["a b"]'),
        (("settings", "$defs"), "$.settings.$defs"),
    ],
)
def test_json_path(loc: tuple[int | str, ...], path: str) -> None:
    assert json_path(loc) == path


# --- main on disk ----------------------------------------------------------------


def plugins_root(tmp_path: Path) -> Path:
    root = tmp_path / "plugins"
    root.mkdir()
    return root


def assert_main_rejected(folder: Path, fragment: str) -> None:
    m = load_manifest(folder)
    with pytest.raises(ManifestError) as info:
        resolve_main(folder, m)
    assert info.value.file == str(folder / "plugin.json")
    found = problems_of(info.value)
    assert list(found) == ["$.main"]
    assert fragment in found["$.main"]


def test_resolve_main_returns_the_real_file(tmp_path: Path) -> None:
    folder = write_plugin(plugins_root(tmp_path) / "foo", manifest(main="src/plugin.py"), main="src/plugin.py")
    assert resolve_main(folder, load_manifest(folder)) == (folder / "src" / "plugin.py").resolve()


def test_main_missing(tmp_path: Path) -> None:
    folder = write_plugin(plugins_root(tmp_path) / "foo", MINIMAL, main="")
    assert_main_rejected(folder, "'plugin.py' does not exist")


def test_main_is_a_directory(tmp_path: Path) -> None:
    folder = write_plugin(plugins_root(tmp_path) / "foo", MINIMAL, main="")
    (folder / "plugin.py").mkdir()
    assert_main_rejected(folder, "is not a regular file")


def test_main_symlinked_to_a_file_outside(tmp_path: Path) -> None:
    outside = tmp_path / "secret.py"
    outside.write_text("x = 1\n")
    folder = write_plugin(plugins_root(tmp_path) / "foo", MINIMAL, main="")
    (folder / "plugin.py").symlink_to(outside)
    assert_main_rejected(folder, "outside the plugin folder")


def test_main_inside_a_symlinked_directory_pointing_outside(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "plugin.py").write_text("x = 1\n")
    folder = write_plugin(plugins_root(tmp_path) / "foo", manifest(main="lib/plugin.py"), main="")
    (folder / "lib").symlink_to(elsewhere, target_is_directory=True)
    assert_main_rejected(folder, "outside the plugin folder")


def test_main_in_sibling_folder_sharing_the_name_prefix(tmp_path: Path) -> None:
    root = plugins_root(tmp_path)
    evil = write_plugin(root / "foo-evil", MINIMAL)
    folder = write_plugin(root / "foo", MINIMAL, main="")
    # A string-prefix check would accept ".../plugins/foo-evil/plugin.py".
    (folder / "plugin.py").symlink_to(Path("..") / "foo-evil" / "plugin.py")
    assert str((folder / "plugin.py").resolve()).startswith(str(folder.resolve()))
    assert (folder / "plugin.py").resolve().parent == evil.resolve()
    assert_main_rejected(folder, "outside the plugin folder")


def test_symlink_that_stays_inside_is_accepted(tmp_path: Path) -> None:
    folder = write_plugin(plugins_root(tmp_path) / "foo", MINIMAL, main="impl/real.py")
    (folder / "plugin.py").symlink_to(Path("impl") / "real.py")
    assert resolve_main(folder, load_manifest(folder)) == (folder / "impl" / "real.py").resolve()


def test_symlinked_plugin_folder_is_followed(tmp_path: Path) -> None:
    real = write_plugin(tmp_path / "real", MINIMAL)
    link = plugins_root(tmp_path) / "foo"
    link.symlink_to(real, target_is_directory=True)
    assert resolve_main(link, load_manifest(link)) == (real / "plugin.py").resolve()


def test_symlink_loop_is_reported(tmp_path: Path) -> None:
    folder = write_plugin(plugins_root(tmp_path) / "foo", MINIMAL, main="")
    (folder / "plugin.py").symlink_to(folder / "loop.py")
    (folder / "loop.py").symlink_to(folder / "plugin.py")
    assert_main_rejected(folder, "'plugin.py' cannot be resolved")


def test_manifest_symlinked_outside_is_rejected(tmp_path: Path) -> None:
    outside = tmp_path / "other.json"
    outside.write_text(json.dumps(MINIMAL))
    folder = plugins_root(tmp_path) / "foo"
    folder.mkdir()
    (folder / "plugin.json").symlink_to(outside)
    with pytest.raises(ManifestError) as info:
        load_manifest(folder)
    assert problems_of(info.value) == {"$": "'plugin.json' resolves to a file outside the plugin folder"}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_manifest_fifo_does_not_hang(tmp_path: Path) -> None:
    folder = tmp_path / "foo"
    folder.mkdir()
    os.mkfifo(folder / "plugin.json")
    with pytest.raises(ManifestError, match="not a regular file"):
        load_manifest(folder)


# --- JSON Schema -------------------------------------------------------------------


def test_schema_is_current() -> None:
    expected = manifest_json_schema()
    actual = json.loads(SCHEMA_FILE.read_text(encoding="utf-8")) if SCHEMA_FILE.exists() else None
    assert actual == expected, "docs/plugin.schema.json is out of date: run `make schema`"


def test_schema_command_prints_the_committed_schema() -> None:
    out = subprocess.run(
        [str(Path(sys.executable).with_name("hostrt")), "schema"], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert out == json.dumps(manifest_json_schema(), indent=2, sort_keys=True) + "\n"
    assert out == SCHEMA_FILE.read_text(encoding="utf-8")


def test_dollar_schema_key_is_allowed_for_editors(tmp_path: Path) -> None:
    data = {"$schema": "../docs/plugin.schema.json", "schemaVersion": 1, "id": "abc", "name": "A",
            "version": "1.0.0", "runtime": "python"}
    assert validate_manifest(data, "abc/plugin.json").id == "abc"


def test_schema_is_valid_and_accepts_the_example() -> None:
    schema = manifest_json_schema()
    assert schema["$id"] == "https://hostrt.dev/schemas/plugin.schema.json"
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(EXAMPLE, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(manifest(sizeLimit=1), schema)


def test_model_accepts_only_json_names() -> None:
    assert Manifest.model_validate(MINIMAL).schema_version == 1
    snake = manifest(schemaVersion=DELETE, schema_version=1)
    with pytest.raises(ValidationError):
        Manifest.model_validate(snake)


# --- hostile manifests -------------------------------------------------------------
#
# Everything below is written as an attacker who has read hostrt's source would
# write plugin.json. Work that would hang without a protection runs in a thread
# joined with a generous timeout.


def rejected(tmp_path: Path, content: dict[str, Any] | str | bytes) -> dict[str, str]:
    folder = write_plugin(tmp_path / "plugin", content)
    with pytest.raises(ManifestError) as info:
        finishes(lambda: load_manifest(folder))
    return problems_of(info.value)


def settings_with(prop: dict[str, Any]) -> dict[str, Any]:
    return manifest(settings={"type": "object", "properties": {"name": prop}})


#: (where the schema goes, the JSON path of its root)
SCHEMA_SITES = [
    (lambda s: manifest(settings={**s, "type": "object"}), "$.settings"),
    (lambda s: manifest(events=[{"name": "a.b", "schema": s}]), "$.events[0].schema"),
    (lambda s: manifest(commands=[{"name": "go", "paramsSchema": s}]), "$.commands[0].paramsSchema"),
    (lambda s: manifest(commands=[{"name": "go", "resultSchema": s}]), "$.commands[0].resultSchema"),
]

HOSTILE_SCHEMAS = [
    ({"type": "string", "pattern": "a{4294967296}"}, ".pattern", "repetition count"),
    ({"type": "string", "pattern": "(" * 1200 + ")" * 1200}, ".pattern", "nested more than"),
    ({"type": "string", "pattern": "(?=x)"}, ".pattern", "RE2"),
    ({"patternProperties": {"(a)\\1": {}}}, '.patternProperties["(a)\\\\1"]', "RE2"),
    ({"$ref": "file:///etc/passwd"}, ".$ref", "only references inside this schema"),
    ({"$ref": "http://127.0.0.1:9/x"}, ".$ref", "only references inside this schema"),
    ({"$dynamicRef": "#nothing"}, ".$dynamicRef", "does not resolve"),
    ({"allOf": [{"$ref": "#/allOf/0"}]}, ".allOf[0].$ref", "reference cycle"),
    ({"$schema": "http://json-schema.org/draft-04/schema#"}, ".$schema", "draft 2020-12"),
    ({"properties": {"a": {"$schema": "https://json-schema.org/draft/2020-12/schema"}}}, ".properties.a.$schema",
     "only allowed at the root"),
    ({"$id": "https://evil.example/"}, ".$id", "$id may only be '#'"),
    ({"description": "x" * 70_000}, "", "larger than 65536 bytes"),
]


@pytest.mark.parametrize("site, root", SCHEMA_SITES, ids=["settings", "event", "params", "result"])
@pytest.mark.parametrize("schema, suffix, fragment", HOSTILE_SCHEMAS, ids=lambda v: repr(v)[:30])
def test_every_embedded_schema_goes_through_the_schema_rules(
    tmp_path: Path, site: Any, root: str, schema: Any, suffix: str, fragment: str
) -> None:
    found = rejected(tmp_path, site(schema))
    where = root + suffix
    assert where in found, found
    assert fragment in found[where]


def test_settings_root_schema_may_name_draft_2020_12_but_nothing_else(tmp_path: Path) -> None:
    ok = manifest(settings={"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object"})
    assert validate_manifest(ok, "x").settings is not None
    found = rejected(tmp_path, manifest(settings={"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"}))
    assert "$.settings.$schema" in found


def test_settings_pattern_problem_is_reported_at_its_json_path(tmp_path: Path) -> None:
    found = rejected(tmp_path, settings_with({"type": "string", "pattern": "a{4294967296}", "default": "a"}))
    assert list(found) == ["$.settings.properties.name.pattern"]


def test_a_catastrophic_default_check_is_quick(tmp_path: Path) -> None:
    found = rejected(tmp_path, settings_with({"type": "string", "pattern": "^(a+)+$", "default": "a" * 5000 + "b"}))
    assert "does not match" in found["$.settings.properties.name.default"]


def test_quadratic_default_check_is_quick(tmp_path: Path) -> None:
    default = [{"a": i} for i in range(5000)] + [{"a": 0}]
    found = rejected(tmp_path, settings_with({"type": "array", "uniqueItems": True, "default": default}))
    assert "non-unique" in found["$.settings.properties.name.default"]


def test_host_files_are_never_read_for_defaults(tmp_path: Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"const": "TOPSECRET"}))
    found = rejected(tmp_path, settings_with({"$ref": secret.as_uri(), "default": "guess"}))
    assert "TOPSECRET" not in json.dumps(found)
    assert "$.settings.properties.name.$ref" in found


@pytest.mark.parametrize(
    "raw, path, fragment",
    [
        ('"default": 1e400', "$.settings.properties.name.default", "too large"),
        ('"default": -1e400', "$.settings.properties.name.default", "-Infinity"),
        ('"default": 123456789e999999', "$.settings.properties.name.default", "too large"),
        ('"default": NaN', "$.settings.properties.name.default", "NaN is not valid JSON"),
        ('"default": -Infinity', "$.settings.properties.name.default", "-Infinity is not valid JSON"),
        ('"default": ' + "9" * 5000, "$.settings.properties.name.default", "5000 digits"),
        ('"default": "a\\ud800b"', "$.settings.properties.name.default", "lone surrogate"),
        ('"default": {"\\udc00": 1}', '$.settings.properties.name.default["\\udc00"]', "lone surrogate"),
    ],
    ids=lambda v: repr(v)[:30],
)
def test_numbers_and_strings_python_would_mangle_are_refused_with_their_path(
    tmp_path: Path, raw: str, path: str, fragment: str
) -> None:
    text = json.dumps(settings_with({"default": 0})).replace('"default": 0', raw)
    found = rejected(tmp_path, text)
    assert path in found, found
    assert fragment in found[path]


def test_small_numbers_underflowing_to_zero_are_fine(tmp_path: Path) -> None:
    text = json.dumps(settings_with({"type": "number", "default": 0})).replace('"default": 0', '"default": 1e-400')
    folder = write_plugin(tmp_path / "plugin", text)
    assert load_manifest(folder).settings["properties"]["name"]["default"] == 0.0


INVISIBLE = {
    "LS": "\u2028", "PS": "\u2029", "RLO": "\u202e", "LRI": "\u2066", "ZWSP": "\u200b", "ZWJ": "\u200d",
    "BOM": "\ufeff", "NEL": "\x85", "CR": "\r", "TAB": "\t", "ESC": "\x1b", "NUL": "\x00", "DEL": "\x7f",
    "soft-hyphen": "\xad",
}


@pytest.mark.parametrize("char", list(INVISIBLE.values()), ids=list(INVISIBLE))
@pytest.mark.parametrize("field", ["name", "author", "description"])
def test_text_fields_refuse_invisible_and_line_breaking_characters(tmp_path: Path, char: str, field: str) -> None:
    found = rejected(tmp_path, manifest(**{field: f"Evil{char}gnp.exe"}))
    assert f"$.{field}" in found
    assert f"U+{ord(char):04X}" in found[f"$.{field}"]


@pytest.mark.parametrize("char", ["\r", "\u2028", "\u202e", "\t"], ids=repr)
def test_event_and_command_descriptions_follow_the_same_rule(tmp_path: Path, char: str) -> None:
    found = rejected(tmp_path, manifest(events=[{"name": "a.b", "description": f"x{char}y"}],
                                        commands=[{"name": "go", "description": f"x{char}y"}]))
    assert {"$.events[0].description", "$.commands[0].description"} <= set(found)


def test_descriptions_may_have_line_feeds_names_may_not(tmp_path: Path) -> None:
    ok = validate_manifest(manifest(description="line one\nline two", name="Caf\u00e9 \u2603 \U0001F600"), "x")
    assert ok.description == "line one\nline two"
    found = rejected(tmp_path, manifest(author="Jane\nDoe"))
    assert "single line" in found["$.author"]


@pytest.mark.parametrize(
    "extra",
    [
        {"settings": {"type": "object", "properties": {"x": {"type": "string", "pattern": "a{4294967296}"}}}},
        {"events": [{"name": "a.b", "schema": {"type": "string", "pattern": "(" * 1200 + ")" * 1200}}]},
    ],
    ids=["overflow", "recursion"],
)
def test_patterns_python_re_would_crash_on_are_manifest_errors(tmp_path: Path, extra: dict[str, Any]) -> None:
    assert rejected(tmp_path, manifest(**extra))


def test_unexpected_failures_inside_validation_are_manifest_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import hostrt.manifest as module

    def explode(schema: Any) -> Any:
        raise OverflowError("boom with a /secret/host/path")

    monkeypatch.setattr(module, "schema_problem_locations", explode)
    found = rejected(tmp_path, manifest(events=[{"name": "a.b", "schema": {}}]))
    assert found == {"$": "the manifest could not be validated (OverflowError)"}
    with pytest.raises(ManifestError):
        validate_manifest(manifest(events=[{"name": "a.b", "schema": {}}]), "x")


def test_shared_python_data_cannot_make_validation_explode() -> None:
    node: Any = {}
    for _ in range(60):
        node = {"a": node, "b": node}  # 2**60 paths through 61 dicts
    with pytest.raises(ManifestError, match="more than"):
        finishes(lambda: validate_manifest(manifest(settings=node), "x"))
    with pytest.raises(ManifestError):
        validate_manifest(manifest(settings={"type": "object", "properties": {"x": {"default": float("inf")}}}), "x")


# Random manifests: hostile values in every field, hostile schemas, random bytes.

json_leaves = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    | st.sampled_from(["", "1.0.0", "^1", "storage", "events.publish:*", "plugin.py", "python", "a.b", "#", "#/$defs/a",
                       "file:///etc/passwd", "(a+)+$", "a{4294967296}", "\ud800", "\u202e", "1e400"])
)
json_like = st.recursive(
    json_leaves,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["type", "properties", "pattern", "$ref", "default", "items", "allOf", "name", "id", "x",
                         "$defs", "patternProperties", "uniqueItems", "required", "enum", "$id", "$schema"])
        | st.text(max_size=6), children, max_size=5),
    max_leaves=25,
)
FIELDS = ["schemaVersion", "id", "name", "version", "description", "author", "main", "runtime", "apiVersion",
          "engines", "capabilities", "events", "commands", "settings", "relationships", "load", "limits", "$schema"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=5), json_like, max_size=5),
       schema=json_like)
def test_random_manifests_only_ever_raise_manifest_errors(tmp_path: Path, changes: dict[str, Any], schema: Any) -> None:
    data = {**copy.deepcopy(EXAMPLE), "settings": {"type": "object", "properties": {"x": schema}}, **changes}
    for target in (data, {**data, "events": [{"name": "a.b", "schema": schema}]}):
        try:
            text = json.dumps(target)
        except (TypeError, ValueError):
            continue
        folder = write_plugin(tmp_path / "fuzz", text)
        try:
            load_manifest(folder)
        except ManifestError:
            pass
        try:
            validate_manifest(target, "x")
        except ManifestError:
            pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_random_bytes_only_ever_raise_manifest_errors(tmp_path: Path, raw: bytes) -> None:
    folder = write_plugin(tmp_path / "fuzz", raw)
    try:
        load_manifest(folder)
    except ManifestError:
        pass
