"""The plugin manifest, ``plugin.json``: models, loading and validation.

Every field of the manifest is a strict pydantic model field: unknown fields
are errors, and no value is coerced (``"1"`` is not ``1``, ``true`` is not
``1``). JSON names are camelCase; Python attributes are their snake_case
equivalents (``maxPayloadBytes`` is ``max_payload_bytes``).

:func:`load_manifest` reports *every* problem it finds at once, each with a
JSON path such as ``$.events[0].schema.type``, so an author can fix a
manifest in one round instead of one error at a time.

``hostrt schema`` prints the manifest's JSON Schema (the source of
``docs/plugin.schema.json``).
"""

from __future__ import annotations

import difflib
import errno
import importlib.metadata
import json
import math
import os
import re
import stat
import unicodedata
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import WithJsonSchema
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from .capabilities import MAX_SCOPE_LENGTH, is_valid_name, parse_capability
from .errors import ManifestError, ManifestProblem
from .jsonvalue import MAX_INT_DIGITS
from .schemas import (
    SchemaEvaluationError,
    UnsafeSchemaError,
    compile_schema,
    json_path,
    schema_problem_locations,
)
from .semver import Version, VersionRange

__all__ = [
    "CommandDecl",
    "Conflict",
    "Dependency",
    "Engines",
    "EventDecl",
    "Limits",
    "LoadOptions",
    "Manifest",
    "Relationships",
    "hostrt_version",
    "json_path",
    "load_manifest",
    "manifest_json_schema",
    "resolve_main",
    "validate_manifest",
]

MANIFEST_FILE = "plugin.json"
MAX_MANIFEST_BYTES = 256 * 1024
#: Deeper nesting than this is refused before validation: no real manifest
#: needs it, and it keeps recursive validators far from Python's stack limit.
MAX_DEPTH = 64
SCHEMA_ID = "https://hostrt.dev/schemas/plugin.schema.json"
ID_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,126}[a-z0-9]$"
DEFAULT_MAX_PAYLOAD_BYTES = 65536
#: The largest payload limit a declaration may set: what one value may
#: take on the JavaScript bridge (see ChannelLimits.max_value_chars), so
#: every declared size can be sent from every runtime.
MAX_PAYLOAD_BYTES = 2 * 1024 * 1024
MAX_MAIN_LENGTH = 512

Runtime = Literal["javascript", "python"]
Loc = tuple[int | str, ...]

#: The entry file used when ``main`` is omitted.
DEFAULT_MAIN: dict[str, str] = {"javascript": "plugin.js", "python": "plugin.py"}
#: File extensions that identify each runtime.
RUNTIME_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "javascript": (".js", ".cjs"),
    "python": (".py",),
}

_ID_RE = re.compile(ID_PATTERN)


def hostrt_version() -> str:
    """The installed hostrt version, which ``engines.hostrt`` must contain."""
    import hostrt  # at call time: hostrt/__init__.py may import this module

    version = getattr(hostrt, "__version__", None)
    return version if isinstance(version, str) else _distribution_version()


@lru_cache(maxsize=1)
def _distribution_version() -> str:
    try:
        return importlib.metadata.version("hostrt")
    except importlib.metadata.PackageNotFoundError:
        return "0.1.0"


# --- errors with locations ----------------------------------------------------


def _invalid(message: str) -> PydanticCustomError:
    # The message goes through the context, not the template, so braces in
    # it (JSON Schema messages quote objects) are not taken as placeholders.
    return PydanticCustomError("manifest", "{message}", {"message": message})


def _fail(problems: list[tuple[Loc, str]], value: Any) -> NoReturn:
    """Raise several errors at locations relative to the value being
    validated; pydantic prefixes the location of that value."""
    raise ValidationError.from_exception_data(
        "Manifest",
        [InitErrorDetails(type=_invalid(msg), loc=loc, input=value) for loc, msg in problems],
    )


def _duplicates(keys: list[Any]) -> list[tuple[int, int]]:
    """``(index, index of first occurrence)`` for every repeated key."""
    first: dict[Any, int] = {}
    repeats = []
    for index, key in enumerate(keys):
        if key in first:
            repeats.append((index, first[key]))
        else:
            first[key] = index
    return repeats


# --- value checks shared by several fields ---------------------------------


#: Ids no plugin may take.
RESERVED_IDS = frozenset({"host"})


def _check_id(value: str) -> str:
    if not _ID_RE.fullmatch(value):
        raise _invalid(
            f"{value!r} does not match {ID_PATTERN} (3 to 128 lowercase letters, "
            "digits, '.' and '-', starting and ending with a letter or digit)"
        )
    # Ids become logger names and storage keys, where "a..b", "a.-b" and
    # "a-.b" would be easy to confuse with legitimate ids.
    for bad in ("..", ".-", "-."):
        if bad in value:
            raise _invalid(f"{value!r} must not contain '{bad}'")
    if value in RESERVED_IDS:
        raise _invalid(f"{value!r} is reserved: events from the host name it as their source")
    return value


def _parsed_by(parse: Callable[[str], Any]) -> Callable[[str], str]:
    """A field check that accepts what ``parse`` accepts, with its message."""

    def check(value: str) -> str:
        try:
            parse(value)
        except ValueError as exc:
            raise _invalid(str(exc)) from None
        return value

    return check


_check_version = _parsed_by(Version.parse)
_check_range = _parsed_by(VersionRange.parse)
_check_capability = _parsed_by(parse_capability)


def _check_name(value: str) -> str:
    if not is_valid_name(value):
        raise _invalid(
            f"{value!r} is not a valid name (dot-separated parts of letters, digits, "
            f"'_' and '-', at most {MAX_SCOPE_LENGTH} characters, no wildcards)"
        )
    return value


def _check_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Every embedded schema goes through :func:`hostrt.schemas.schema_problems`:
    the meta-schema, local references only, RE2 patterns, size, cycles."""
    if problems := schema_problem_locations(schema):
        _fail(problems, schema)
    return schema


#: Unicode categories refused in names, authors and descriptions: control
#: characters (Cc), format characters such as bidi overrides and zero-width
#: characters (Cf), line and paragraph separators (Zl, Zp) and lone
#: surrogates (Cs). They forge extra lines in logs and listings, hide or
#: reorder text ("Evil\u202egnp.exe" shows as "Evilexe.png"), or cannot be
#: encoded at all.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def _plain_text(value: str, *, multiline: bool) -> str:
    for index, char in enumerate(value):
        if multiline and char == "\n":
            continue
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            name = unicodedata.name(char, "")
            what = f"U+{ord(char):04X}" + (f" ({name})" if name else "")
            allowed = "only '\\n' line breaks are allowed" if multiline else "it must be a single line"
            raise _invalid(
                f"must not contain {what} at index {index}: line breaks, control characters and "
                f"invisible formatting characters (bidi overrides, zero-width characters) are refused; {allowed}"
            )
    return value


def _single_line(value: str) -> str:
    return _plain_text(value, multiline=False)


def _description_text(value: str | None) -> str | None:
    return None if value is None else _plain_text(value, multiline=True)


def _runtime_for(main: str) -> Runtime | None:
    for runtime, extensions in RUNTIME_EXTENSIONS.items():
        if main.endswith(extensions):
            return runtime  # type: ignore[return-value]
    return None


def _check_main(main: str) -> str:
    """Syntax rules that keep ``main`` a plain relative path on every OS.

    Resolution on disk (symlinks) is checked later by :func:`resolve_main`.
    """
    if not main:
        raise _invalid("must not be empty")
    if any(unicodedata.category(c) == "Cc" for c in main):
        raise _invalid(f"{main!r} must not contain NUL or other control characters")
    if "\\" in main:
        raise _invalid(f"{main!r} must use forward slashes: backslashes and UNC paths are not allowed")
    if ":" in main:
        raise _invalid(f"{main!r} must not contain ':' (drive letters such as 'C:' are not allowed)")
    if main.startswith("/"):
        raise _invalid(f"{main!r} is absolute; give a path relative to the plugin folder")
    segments = main.split("/")
    if "" in segments:
        raise _invalid(f"{main!r} has an empty segment ('//' or a trailing '/')")
    if ".." in segments:
        raise _invalid(f"{main!r} contains '..'; the entry file must stay inside the plugin folder")
    if "." in segments:
        raise _invalid(f"{main!r} contains a '.' segment; write {'/'.join(s for s in segments if s != '.')!r}")
    if _runtime_for(main) is None:
        known = ", ".join(ext for exts in RUNTIME_EXTENSIONS.values() for ext in exts)
        raise _invalid(f"{main!r} must end in one of {known}")
    return main


def _exactly(expected: int) -> AfterValidator:
    def check(value: int) -> int:
        if value != expected:
            raise _invalid(f"must be {expected}, got {value}")
        return value

    return AfterValidator(check)


def _string_schema(description: str, **extra: Any) -> WithJsonSchema:
    return WithJsonSchema({"type": "string", "description": description, **extra})


PluginId = Annotated[
    str,
    AfterValidator(_check_id),
    _string_schema("A plugin id; must not contain '..', '.-' or '-.'.", pattern=ID_PATTERN),
]
SemverString = Annotated[
    str, AfterValidator(_check_version), _string_schema("A semantic version (SemVer 2.0.0).")
]
RangeString = Annotated[
    str,
    AfterValidator(_check_range),
    _string_schema("An npm-style version range, e.g. '^1.2', '>=1.0 <2', '1.x || 2.x'."),
]
CapabilityString = Annotated[
    str,
    AfterValidator(_check_capability),
    _string_schema("A capability, 'name' or 'name:scope' (scopes may use '*')."),
]
Name = Annotated[
    str,
    AfterValidator(_check_name),
    _string_schema("A dot-separated name without wildcards.", maxLength=MAX_SCOPE_LENGTH),
]
JsonSchema = Annotated[dict[str, Any], AfterValidator(_check_json_schema)]


# --- models ---------------------------------------------------------------


def _drop_property_titles(schema: dict[str, Any]) -> None:
    # Pydantic derives titles such as "Paramsschema" from the names; the
    # property keys already say it better.
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)


class _Strict(BaseModel):
    model_config = ConfigDict(
        json_schema_extra=_drop_property_titles,
        strict=True,
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        # Only the camelCase names are accepted from JSON.
        populate_by_name=False,
    )


class EventDecl(_Strict):
    """An event the plugin may emit. Payloads are validated against
    `schema` and limited to `maxPayloadBytes` (UTF-8 bytes of compact JSON)."""

    name: Name
    payload_schema: JsonSchema = Field(
        default_factory=dict, alias="schema", description="JSON Schema of the payload."
    )
    max_payload_bytes: int = Field(DEFAULT_MAX_PAYLOAD_BYTES, ge=1, le=MAX_PAYLOAD_BYTES)
    description: str | None = Field(None, max_length=1000)

    @field_validator("description")
    @classmethod
    def _description_is_text(cls, description: str | None) -> str | None:
        return _description_text(description)


class CommandDecl(_Strict):
    """A command the plugin registers, which the host can invoke by name."""

    name: Name
    params_schema: JsonSchema = Field(
        default_factory=dict, description="JSON Schema of the parameters."
    )
    result_schema: JsonSchema | None = Field(None, description="JSON Schema of the result.")
    max_payload_bytes: int = Field(
        DEFAULT_MAX_PAYLOAD_BYTES, ge=1, le=MAX_PAYLOAD_BYTES,
        description="Largest parameters and largest result, each in UTF-8 bytes of compact JSON.",
    )
    description: str | None = Field(None, max_length=1000)

    @field_validator("description")
    @classmethod
    def _description_is_text(cls, description: str | None) -> str | None:
        return _description_text(description)


class Dependency(_Strict):
    """Another plugin, and the versions of it that this plugin works with."""

    id: PluginId
    version_range: RangeString

    @property
    def range(self) -> VersionRange:
        return VersionRange.parse(self.version_range)


class Conflict(_Strict):
    """A plugin that must not be active at the same time (any version when
    `versionRange` is omitted)."""

    id: PluginId
    version_range: RangeString | None = None

    @property
    def range(self) -> VersionRange:
        return VersionRange.parse(self.version_range or "*")


class Relationships(_Strict):
    """How this plugin relates to other plugins."""

    requires: list[Dependency] = Field(default_factory=list)
    optional: list[Dependency] = Field(default_factory=list)
    conflicts: list[Conflict] = Field(default_factory=list)
    before: list[PluginId] = Field(
        default_factory=list, description="Plugins to activate after this one."
    )
    after: list[PluginId] = Field(
        default_factory=list, description="Plugins to activate before this one."
    )

    def entries(self) -> list[tuple[Loc, str]]:
        """``(location, id)`` for every id named here."""
        found: list[tuple[Loc, str]] = []
        for key in ("requires", "optional", "conflicts"):
            found += [((key, i, "id"), item.id) for i, item in enumerate(getattr(self, key))]
        for key in ("before", "after"):
            found += [((key, i), item) for i, item in enumerate(getattr(self, key))]
        return found

    @field_validator("requires", "optional", "conflicts", "before", "after")
    @classmethod
    def _no_repeats(cls, items: list[Any]) -> list[Any]:
        ids = [item if isinstance(item, str) else item.id for item in items]
        if repeats := _duplicates(ids):
            is_model = bool(items) and not isinstance(items[0], str)
            _fail(
                [
                    ((i, "id") if is_model else (i,), f"{ids[i]!r} is listed twice (also at index {first})")
                    for i, first in repeats
                ],
                items,
            )
        return items

    @field_validator("optional", "after")
    @classmethod
    def _not_in_both(cls, items: list[Any], info: ValidationInfo) -> list[Any]:
        # requires/optional and before/after are pairs; one id in both halves
        # is a contradiction (and for before/after a certain cycle).
        other = "requires" if info.field_name == "optional" else "before"
        earlier = info.data.get(other)
        if not earlier:
            return items
        earlier_ids = {e if isinstance(e, str) else e.id for e in earlier}
        problems: list[tuple[Loc, str]] = []
        for i, item in enumerate(items):
            plugin_id = item if isinstance(item, str) else item.id
            if plugin_id in earlier_ids:
                loc: Loc = (i,) if isinstance(item, str) else (i, "id")
                problems.append((loc, f"{plugin_id!r} is also listed in {other!r}"))
        if problems:
            _fail(problems, items)
        return items


class LoadOptions(_Strict):
    """When to activate the plugin relative to others without an explicit
    ordering between them."""

    priority: Literal["bootstrap", "high", "default", "low"] = "default"


class Limits(_Strict):
    """Resource limits the plugin asks for; the host's policy caps them."""

    timeout_ms: int | None = Field(
        None, ge=1, le=60_000, description="Wall-clock budget per call into the plugin."
    )
    memory_mb: int | None = Field(None, ge=1, le=4096, description="Heap limit.")


class Engines(_Strict):
    """Versions of hostrt the plugin works with."""

    hostrt: RangeString = ">=0.1"

    @field_validator("hostrt")
    @classmethod
    def _includes_installed(cls, text: str) -> str:
        installed = hostrt_version()
        # A development build of the host still counts as its release line.
        if not VersionRange.parse(text).contains(installed, include_prerelease=True):
            raise _invalid(f"this plugin needs hostrt {text}, but hostrt {installed} is installed")
        return text


class Manifest(_Strict):
    """A plugin manifest (plugin.json)."""

    # Editors use "$schema" to find the schema; it carries no meaning here.
    schema_ref: str | None = Field(
        None, alias="$schema", max_length=500, description="Optional URL of this schema, for editors."
    )
    schema_version: Annotated[int, _exactly(1)] = Field(
        json_schema_extra={"const": 1}, description="The manifest format; always 1."
    )
    id: PluginId
    name: str = Field(min_length=1, max_length=100)
    version: SemverString
    description: str | None = Field(None, max_length=1000)
    author: str | None = Field(None, max_length=200)
    # main comes before runtime: the runtime check reads the validated main.
    main: str | None = Field(
        None,
        max_length=MAX_MAIN_LENGTH,
        description="Entry file, relative to the plugin folder, with '/' separators.",
    )
    runtime: Runtime | None = Field(
        None, validate_default=True, description="Inferred from main's extension when omitted."
    )
    api_version: Annotated[int, _exactly(1)] = Field(1, json_schema_extra={"const": 1})
    engines: Engines = Field(default_factory=Engines)
    capabilities: list[CapabilityString] = Field(default_factory=list)
    events: list[EventDecl] = Field(default_factory=list)
    commands: list[CommandDecl] = Field(default_factory=list)
    settings: JsonSchema | None = Field(
        None, description="JSON Schema (type object) of the plugin's settings."
    )
    relationships: Relationships = Field(default_factory=Relationships)
    load: LoadOptions = Field(default_factory=LoadOptions)
    limits: Limits = Field(default_factory=Limits)

    @field_validator("name")
    @classmethod
    def _name_is_text(cls, name: str) -> str:
        if not name.strip():
            raise _invalid("must not be blank")
        return _single_line(name)

    @field_validator("author")
    @classmethod
    def _author_is_text(cls, author: str | None) -> str | None:
        return None if author is None else _single_line(author)

    @field_validator("description")
    @classmethod
    def _description_is_text(cls, description: str | None) -> str | None:
        return _description_text(description)

    @field_validator("main")
    @classmethod
    def _main_is_safe(cls, main: str | None) -> str | None:
        return None if main is None else _check_main(main)

    @field_validator("runtime")
    @classmethod
    def _runtime_matches_main(cls, runtime: Runtime | None, info: ValidationInfo) -> Runtime | None:
        if "main" not in info.data:
            return runtime  # main is invalid and reported on its own
        main = info.data["main"]
        if main is None:
            if runtime is None:
                raise _invalid(
                    "set \"runtime\" ('javascript' or 'python') or \"main\" "
                    "(the entry file, e.g. 'plugin.js' or 'plugin.py')"
                )
            return runtime
        inferred = _runtime_for(main)
        if runtime is not None and runtime != inferred:
            raise _invalid(f"runtime {runtime!r} does not match main {main!r}, a {inferred} file")
        return runtime

    @field_validator("capabilities")
    @classmethod
    def _unique_capabilities(cls, capabilities: list[str]) -> list[str]:
        if repeats := _duplicates(capabilities):
            _fail(
                [
                    ((i,), f"duplicate capability {capabilities[i]!r} (also at index {first})")
                    for i, first in repeats
                ],
                capabilities,
            )
        return capabilities

    @field_validator("events", "commands")
    @classmethod
    def _unique_names(cls, decls: list[Any], info: ValidationInfo) -> list[Any]:
        names = [decl.name for decl in decls]
        if repeats := _duplicates(names):
            kind = info.field_name[:-1] if info.field_name else "name"
            _fail(
                [
                    ((i, "name"), f"duplicate {kind} {names[i]!r} (also at index {first})")
                    for i, first in repeats
                ],
                decls,
            )
        return decls

    @field_validator("settings")
    @classmethod
    def _settings_object(cls, settings: dict[str, Any] | None) -> dict[str, Any] | None:
        if settings is None:
            return None
        if settings.get("type") != "object":
            _fail([(("type",), 'settings must be an object schema ("type": "object")')], settings)
        if problems := _default_problems(settings):
            _fail(problems, settings)
        return settings

    @field_validator("relationships")
    @classmethod
    def _not_self(cls, relationships: Relationships, info: ValidationInfo) -> Relationships:
        own_id = info.data.get("id")
        problems = [
            (loc, f"a plugin cannot name itself ({plugin_id!r}) in its relationships")
            for loc, plugin_id in relationships.entries()
            if plugin_id == own_id
        ]
        if problems:
            _fail(problems, relationships)
        return relationships

    @property
    def runtime_name(self) -> Runtime:
        """The effective runtime: ``runtime``, or the one ``main`` implies."""
        if self.runtime is not None:
            return self.runtime
        assert self.main is not None  # guaranteed by validation
        runtime = _runtime_for(self.main)
        assert runtime is not None
        return runtime

    @property
    def main_path(self) -> str:
        """The effective entry file, relative to the plugin folder (``/``-separated)."""
        return self.main or DEFAULT_MAIN[self.runtime_name]

    @property
    def semver(self) -> Version:
        """``version`` parsed."""
        return Version.parse(self.version)


def _default_problems(settings: dict[str, Any]) -> list[tuple[Loc, str]]:
    """Check each ``properties.<name>.default`` against its property schema.

    The property schema is evaluated inside the whole settings schema so that
    ``$ref``s to ``#/$defs/...`` resolve, with the bounded evaluator of
    :mod:`hostrt.schemas`.
    """
    properties = settings.get("properties")
    if not isinstance(properties, dict):
        return []
    try:
        compiled = compile_schema(settings)
    except UnsafeSchemaError:
        return []  # reported by the schema check
    problems: list[tuple[Loc, str]] = []
    for key, prop in properties.items():
        if not isinstance(prop, dict) or "default" not in prop:
            continue
        loc: Loc = ("properties", key, "default")
        try:
            found = compiled.at("properties", key).first_problem(prop["default"])
        except SchemaEvaluationError as exc:
            problems.append((loc, f"cannot check the default: {exc}"))
            continue
        if found is not None:
            problems.append(((*loc, *found[0]), f"default does not match its schema: {found[1]}"))
    return problems


# --- turning pydantic errors into manifest problems -------------------------

_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "bool_type": "a boolean",
    "float_type": "a number",
    "list_type": "an array",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}


def _describe(value: Any) -> str:
    """How a JSON value is named in messages: ``string 'x'``, ``boolean true``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {json.dumps(value)}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value!r}"
    if isinstance(value, str):
        return f"string {value[:80]!r}"
    return "an array" if isinstance(value, list) else "an object"


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model that validates the object at ``loc`` (for "did you mean")."""
    model: type[BaseModel] = Manifest
    for part in loc:
        if isinstance(part, int):
            continue
        field = next((f for f in model.model_fields.values() if f.alias == part), None)
        if field is None:
            return None
        inner = _find_model(field.annotation)
        if inner is None:
            return None
        model = inner
    return model


def _find_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        if found := _find_model(arg):
            return found
    return None


def _unknown_field(loc: Loc) -> str:
    name = str(loc[-1])
    message = f"unknown field {name!r}"
    model = _model_at(loc[:-1])
    if model is not None:
        known = [f.alias for f in model.model_fields.values() if f.alias]
        if close := difflib.get_close_matches(name, known, n=1):
            message += f" (did you mean {close[0]!r}?)"
    return message


def _message(error: ErrorDetails) -> str:
    kind, ctx, value, loc = error["type"], error.get("ctx", {}), error["input"], error["loc"]
    if kind == "extra_forbidden":
        return _unknown_field(loc)
    if kind == "missing":
        return f"required field {loc[-1]!r} is missing"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {_describe(value)}"
    if kind == "literal_error":
        return f"must be {ctx['expected']}, got {_describe(value)}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']}, got {value}"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']}, got {value}"
    if kind == "string_too_short":
        return "must not be empty" if ctx["min_length"] == 1 else error["msg"]
    if kind == "string_too_long":
        return f"must be at most {ctx['max_length']} characters, got {len(value)}"
    if kind == "value_error":
        return str(ctx["error"])
    return error["msg"]


def _problems_from(exc: ValidationError) -> list[ManifestProblem]:
    return [
        ManifestProblem(json_path(error["loc"]), _message(error))
        for error in exc.errors(include_url=False)
    ]


# --- reading and validating -----------------------------------------------


#: More values than a 256 KiB file can hold: refused before validation, so
#: already-parsed data with shared parts cannot make the walk below explode.
MAX_VALUES = MAX_MANIFEST_BYTES


def _too_deep(data: Any) -> ManifestProblem | None:
    # Iterative on purpose: a recursive walk is what this guards against.
    stack: list[tuple[Loc, Any]] = [((), data)]
    seen = 0
    while stack:
        loc, value = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            return ManifestProblem("$", f"more than {MAX_VALUES} values")
        if len(loc) > MAX_DEPTH:
            return ManifestProblem(json_path(loc), f"nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, dict):
            stack += [((*loc, key), item) for key, item in value.items()]
        elif isinstance(value, list):
            stack += [((*loc, index), item) for index, item in enumerate(value)]
    return None


def _unexpected(exc: BaseException) -> ManifestProblem:
    # The type only: the text of an unexpected exception may quote the
    # manifest at length or carry host paths.
    return ManifestProblem("$", f"the manifest could not be validated ({type(exc).__name__})")


def _validate(data: Any, file: str, problems: list[ManifestProblem]) -> Manifest:
    """Validate parsed data; every failure, expected or not, is a ManifestError."""
    if not isinstance(data, dict):
        problems.append(ManifestProblem("$", f"a manifest must be a JSON object, got {_describe(data)}"))
        raise ManifestError(file, problems)
    if deep := _too_deep(data):
        raise ManifestError(file, [*problems, deep])
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        try:
            problems += _problems_from(exc)
        except Exception as inner:  # noqa: BLE001
            problems.append(_unexpected(inner))
    except Exception as exc:  # noqa: BLE001 - no input may escape as anything but ManifestError
        problems.append(_unexpected(exc))
    if problems:
        raise ManifestError(file, problems)
    return manifest


def validate_manifest(data: dict[str, Any], file: str) -> Manifest:
    """Validate already-parsed manifest data.

    Raises :class:`~hostrt.errors.ManifestError` listing every problem, with
    ``file`` as the file name to report, and nothing else, whatever ``data``
    holds.
    """
    return _validate(data, file, [])


class _Refused:
    """Stands in for a parsed number or constant that plugin.json may not
    contain, until its JSON path is known."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


def _parse_constant(name: str) -> _Refused:
    return _Refused(f"{name} is not valid JSON")


def _parse_float(text: str) -> float | _Refused:
    value = float(text)
    if math.isfinite(value):
        return value
    # 1e400 would silently become Infinity, which is not a JSON number.
    shown = text if len(text) <= 40 else text[:40] + "..."
    sign = "-" if value < 0 else ""
    return _Refused(f"the number {shown} is too large (it would be {sign}Infinity, which is not valid JSON)")


def _parse_int(text: str) -> int | _Refused:
    digits = len(text) - text.startswith("-")
    if digits > MAX_INT_DIGITS:
        return _Refused(f"an integer with {digits} digits is too large (at most {MAX_INT_DIGITS})")
    return int(text)


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


_SURROGATE = "contains a lone surrogate (an unpaired \\uD800-\\uDFFF escape), which is not Unicode text"


def _parse_json(text: str, file: str) -> tuple[Any, list[ManifestProblem]]:
    """Parse JSON text, reporting repeated keys as problems (not errors), so
    the rest of the manifest is still validated.

    Numbers that Python would turn into ``inf``/``nan`` (``1e400``, ``NaN``,
    ``Infinity``), integers beyond 4300 digits and strings or keys holding
    lone surrogates are refused with their JSON paths.
    """
    repeated: dict[int, list[str]] = {}

    def build_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in pairs:
            if key in obj:
                repeated.setdefault(id(obj), []).append(key)
            obj[key] = value
        return obj

    def fail(message: str) -> NoReturn:
        raise ManifestError(file, [ManifestProblem("$", message)])

    try:
        data = json.loads(
            text,
            object_pairs_hook=build_object,
            parse_constant=_parse_constant,
            parse_float=_parse_float,
            parse_int=_parse_int,
        )
    except json.JSONDecodeError as exc:
        fail(f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})")
    except RecursionError:
        fail(f"invalid manifest: nested more than {MAX_DEPTH} levels deep")
    except ValueError as exc:
        fail(f"invalid JSON: {str(exc)[:200]}")
    # Objects stay alive inside ``data``, so their ids are still unique here.
    refused: list[ManifestProblem] = []
    duplicates: list[ManifestProblem] = []
    stack: list[tuple[Loc, Any]] = [((), data)]
    while stack:
        loc, value = stack.pop()
        if isinstance(value, dict):
            duplicates += [
                ManifestProblem(json_path((*loc, key)), f"duplicate key {key!r}")
                for key in repeated.get(id(value), [])
            ]
            for key, item in value.items():
                if _has_surrogate(key):
                    refused.append(ManifestProblem(json_path((*loc, key)), f"the key {_SURROGATE}"))
                stack.append(((*loc, key), item))
        elif isinstance(value, list):
            stack += [((*loc, index), item) for index, item in enumerate(value)]
        elif isinstance(value, _Refused):
            refused.append(ManifestProblem(json_path(loc), value.message))
        elif isinstance(value, str) and _has_surrogate(value):
            refused.append(ManifestProblem(json_path(loc), f"the string {_SURROGATE}"))
    if refused:
        # The data holds placeholders now: report, don't validate further.
        raise ManifestError(file, sorted(refused + duplicates, key=lambda p: p.json_path))
    duplicates.sort(key=lambda p: p.json_path)
    return data, duplicates


def _resolve_inside(plugin_dir: Path, relative: str, file: str, where: str) -> Path:
    """Resolve ``plugin_dir/relative`` (following symlinks) and make sure it
    is an existing regular file inside ``plugin_dir``."""

    def fail(message: str) -> NoReturn:
        raise ManifestError(file, [ManifestProblem(where, message)])

    try:
        root = plugin_dir.resolve(strict=True)
        target = (plugin_dir / relative).resolve(strict=True)
    except FileNotFoundError:
        fail(f"{relative!r} does not exist")
    except RuntimeError:  # what Python before 3.13 raises for a symlink loop
        fail(f"{relative!r} cannot be resolved: symlink loop")
    except OSError as exc:
        # strerror only: the full exception text would carry host paths.
        fail(f"{relative!r} cannot be resolved: {exc.strerror or type(exc).__name__}")
    # is_relative_to compares whole path components, so "plugins/foo-evil"
    # is not mistaken for a path inside "plugins/foo".
    if not target.is_relative_to(root):
        fail(f"{relative!r} resolves to a file outside the plugin folder")
    if not target.is_file():
        fail(f"{relative!r} is not a regular file")
    return target


_SWAPPED = "no longer lies inside the plugin folder: it was replaced after it was checked"


def _read_checked(plugin_dir: Path, path: Path, fail: Callable[[str], NoReturn]) -> bytes:
    """Read at most ``MAX_MANIFEST_BYTES + 1`` bytes of the file
    :func:`_resolve_inside` found at ``path``.

    The folder belongs to the plugin's author, who can swap the file (or a
    directory on its path) for a link to anywhere between that check and
    this read. So the last component is opened without following a link,
    and the real path of what was opened is checked again; ``O_NONBLOCK``
    keeps a FIFO swapped in from hanging the host.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # what O_NOFOLLOW answers for a link
            fail(f"{MANIFEST_FILE!r} {_SWAPPED}")
        fail(f"cannot read {MANIFEST_FILE!r}: {exc.strerror or type(exc).__name__}")
    with os.fdopen(fd, "rb") as handle:
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                fail(f"{MANIFEST_FILE!r} is not a regular file")
            proc_link = f"/proc/self/fd/{fd}"
            real = Path(os.path.realpath(proc_link if os.path.exists(proc_link) else path))
            if not real.is_relative_to(plugin_dir.resolve()):
                fail(f"{MANIFEST_FILE!r} {_SWAPPED}")
            return handle.read(MAX_MANIFEST_BYTES + 1)
        except OSError as exc:
            fail(f"cannot read {MANIFEST_FILE!r}: {exc.strerror or type(exc).__name__}")


def load_manifest(plugin_dir: Path) -> Manifest:
    """Read, parse and validate ``plugin_dir/plugin.json``.

    The file must be a regular file inside ``plugin_dir`` (a symlink may not
    lead out of it), at most 256 KiB of UTF-8 encoded JSON holding an object
    without repeated keys. Raises :class:`~hostrt.errors.ManifestError`
    naming ``plugin_dir/plugin.json`` and listing every problem found.
    """
    plugin_dir = Path(plugin_dir)
    file = str(plugin_dir / MANIFEST_FILE)
    path = _resolve_inside(plugin_dir, MANIFEST_FILE, file, "$")

    def fail(message: str) -> NoReturn:
        raise ManifestError(file, [ManifestProblem("$", message)])

    raw = _read_checked(plugin_dir, path, fail)
    if len(raw) > MAX_MANIFEST_BYTES:
        fail(f"{MANIFEST_FILE!r} is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        # utf-8-sig: a byte order mark, as some editors write, is tolerated.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        fail(f"{MANIFEST_FILE!r} is not valid UTF-8 (byte {exc.start})")
    try:
        data, problems = _parse_json(text, file)
        return _validate(data, file, problems)
    except ManifestError:
        raise
    except Exception as exc:  # noqa: BLE001 - no input may escape as anything but ManifestError
        raise ManifestError(file, [_unexpected(exc)]) from None


def resolve_main(plugin_dir: Path, manifest: Manifest) -> Path:
    """The absolute, symlink-free path of the plugin's entry file.

    Raises :class:`~hostrt.errors.ManifestError` at ``$.main`` if the file is
    missing, is not a regular file, or resolves outside ``plugin_dir`` (for
    example through a symlink).
    """
    plugin_dir = Path(plugin_dir)
    return _resolve_inside(plugin_dir, manifest.main_path, str(plugin_dir / MANIFEST_FILE), "$.main")


def manifest_json_schema() -> dict[str, Any]:
    """The JSON Schema of plugin.json, as published in ``docs/plugin.schema.json``.

    It describes structure and types; rules that need code (semver syntax,
    version ranges, capability syntax, path safety, cross-field checks) are
    enforced by :func:`load_manifest` only.
    """
    schema = Manifest.model_json_schema(by_alias=True)
    schema.pop("title", None)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "hostrt plugin manifest (plugin.json)",
        **schema,
    }


def manifest_json_schema_text() -> str:
    """The schema as committed in ``docs/plugin.schema.json``."""
    return json.dumps(manifest_json_schema(), indent=2, sort_keys=True) + "\n"
