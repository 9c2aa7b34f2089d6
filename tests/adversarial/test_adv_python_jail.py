"""Python jail escapes, each run as a real plugin in the arena.

Every attack is written the way an attacker who read RestrictedPython's
advisories and hostrt's source would write it: it walks from an object it
has to a host module's globals and, from there, reads the environment
canary and the canary file (whose path it is given) and stores them
(``loot_from`` below). The arena proves afterwards that nothing leaked;
each test in addition asserts *where* the attack was stopped, so it fails
if that defence is removed.

The attacks are grouped by the advisory or classic escape they follow:
frame walking (CVE-2023-37271), the formatter (CVE-2023-41039,
GHSA-hp3v-5vw7-fx9w), exception fields (CVE-2024-47532), ``except*``
(CVE-2025-22153), guard shadowing (CVE-2026-55830), ``getattr`` name
checks (RestrictedPython 7.2/7.3), C consumers bypassing ``_getiter_``
(RestrictedPython 9.0), then subclass walking, function globals,
introspection builtins, classes, modules and the type stand-ins.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import pytest

from adversarial.arena import SECRET_ENV, Arena, Attempt
from hostrt.errors import PluginCompileError, PluginError, ResourceLimitError, SandboxViolationError

#: Module-level code every attack plugin starts with: where the canaries
#: are, and what an attacker does with a host module's globals once reached.
PRELUDE = """
SECRET_FILE = {secret_file!r}
ENV_NAME = {env!r}


def loot_from(namespace):
    host_builtins = namespace['__builtins__']
    os = host_builtins['__import__']('os')
    return [os.environ[ENV_NAME], host_builtins['open'](SECRET_FILE).read()]


def gen():
    yield 1


def walk(obj, *names):
    for name in names:
        obj = getattr(obj, name)
    return obj
"""


@dataclass(frozen=True)
class Attack:
    """One attack plugin: ``body`` runs in ``activate(ctx)`` after ``top``
    (module level); it must be stopped with ``kind`` carrying ``refusal``."""

    name: str
    body: str
    kind: type[PluginError]
    refusal: str
    top: str = ""


def plugin_source(arena: Arena, body: str, top: str = "") -> str:
    prelude = PRELUDE.format(secret_file=str(arena.secret_file), env=SECRET_ENV)
    activate = "def activate(ctx):\n" + textwrap.indent(textwrap.dedent(body).strip("\n"), "    ") + "\n"
    return prelude + "\n" + textwrap.dedent(top).strip("\n") + "\n\n" + activate


async def launch(arena: Arena, body: str, top: str = "", plugin_id: str = "jail") -> Attempt:
    return await arena.attack(plugin_id, plugin_source(arena, body, top), capabilities=["storage"])


def run_attack(arena: Arena, attack: Attack) -> None:
    """Run ``attack`` in the arena: it must fail the plugin with the
    expected refusal before storing anything."""

    async def go(arena: Arena) -> None:
        attempt = await launch(arena, attack.body, attack.top)
        assert attempt.failed_with(attack.kind, attack.refusal), (attempt.state, attempt.error)
        assert type(attempt.error) is attack.kind, type(attempt.error)
        assert attempt.loot == {}

    arena.run(go)


def by_name(attacks: list[Attack]) -> dict[str, object]:
    return {"argvalues": attacks, "ids": [a.name for a in attacks]}


# ---------------------------------------------------------------------------
# CVE-2023-37271: frames through generators, coroutines, async generators
# and tracebacks
# ---------------------------------------------------------------------------

FRAME_ATTACKS = [
    Attack("generator gi_frame", """
        g = gen()
        next(g)
        ctx.storage.set('loot', loot_from(g.gi_frame.f_back.f_globals))
    """, PluginCompileError, '"gi_frame" is a restricted name'),
    Attack("generator gi_frame, computed name", """
        g = gen()
        ctx.storage.set('loot', loot_from(walk(g, 'gi_' + 'frame', 'f_back', 'f_globals')))
    """, SandboxViolationError, '"gi_frame" is a restricted name'),
    Attack("generator gi_yieldfrom to the delegate", """
        def outer():
            yield from gen()
        g = outer()
        next(g)
        ctx.storage.set('loot', loot_from(walk(g, 'gi_yield' + 'from', 'gi_frame', 'f_globals')))
    """, SandboxViolationError, '"gi_yieldfrom" is a restricted name'),
    Attack("generator gi_code, fullwidth letters", """
        consts = walk(gen(), '\uff47\uff49_\uff43\uff4f\uff44\uff45', 'co_consts')
        ctx.storage.set('loot', [str(c) for c in consts])
    """, SandboxViolationError, "is a restricted name"),
    Attack("coroutine cr_frame", """
        c = steal()
        ctx.storage.set('loot', loot_from(c.cr_frame.f_globals))
    """, PluginCompileError, "async functions are not supported", top="""
        async def steal():
            pass
    """),
    Attack("coroutine cr_frame, computed name", """
        ctx.storage.set('loot', loot_from(walk(gen(), 'cr_' + 'frame', 'f_globals')))
    """, SandboxViolationError, '"cr_frame" is a restricted name'),
    Attack("async generator ag_frame", """
        ctx.storage.set('loot', loot_from(walk(gen(), 'ag_fr' + 'ame', 'f_globals')))
    """, SandboxViolationError, '"ag_frame" is a restricted name'),
    Attack("async generator defined", """
        ctx.storage.set('loot', loot_from(agen().ag_frame.f_globals))
    """, PluginCompileError, "async functions are not supported", top="""
        async def agen():
            yield 1
    """),
    Attack("traceback tb_frame", """
        try:
            ctx.storage.get(None)
        except Exception as e:
            ctx.storage.set('loot', loot_from(e.__traceback__.tb_frame.f_globals))
    """, PluginCompileError, '"__traceback__" is an invalid attribute name'),
    Attack("traceback, computed name", """
        try:
            ctx.storage.get(None)
        except Exception as e:
            ctx.storage.set('loot', loot_from(walk(e, '__trace' + 'back__', 'tb_next', 'tb_frame', 'f_globals')))
    """, SandboxViolationError, '"__traceback__" is an invalid attribute name'),
    Attack("tb_frame, computed name", """
        try:
            1 / 0
        except ZeroDivisionError as e:
            ctx.storage.set('loot', loot_from(walk(e, 'tb_' + 'frame', 'f_back', 'f_globals')))
    """, SandboxViolationError, '"tb_frame" is a restricted name'),
]


@pytest.mark.parametrize("attack", **by_name(FRAME_ATTACKS))
def test_frame_walking_is_refused(arena, attack):
    run_attack(arena, attack)


# ---------------------------------------------------------------------------
# CVE-2023-41039, GHSA-hp3v-5vw7-fx9w: the formatter reads attributes in C
# ---------------------------------------------------------------------------

FORMAT_ATTACKS = [
    Attack("str.format attribute field", """
        ctx.storage.set('loot', '{0.__class__.__init__.__globals__}'.format(ctx))
    """, SandboxViolationError, "attribute access in format fields is not allowed"),
    Attack("unbound str.format", """
        ctx.storage.set('loot', str.format('{0.__globals__[os].environ}', loot_from))
    """, SandboxViolationError, "attribute access in format fields is not allowed"),
    Attack("format_map", """
        ctx.storage.set('loot', '{f.__globals__}'.format_map({'f': loot_from}))
    """, SandboxViolationError, "attribute access in format fields is not allowed"),
    Attack("str subclass through super()", """
        ctx.storage.set('loot', Template('{0.__globals__}').render(loot_from))
    """, SandboxViolationError, "attribute access in format fields is not allowed", top="""
        class Template(str):
            def render(self, value):
                return super().format(value)
    """),
    Attack("format method fetched by getattr", """
        render = getattr('{0.__globals__}', 'for' + 'mat')
        ctx.storage.set('loot', render(loot_from))
    """, SandboxViolationError, "attribute access in format fields is not allowed"),
    Attack("str.format through functools.partial and map", """
        import functools
        render = functools.partial(str.format, '{0.__globals__}')
        ctx.storage.set('loot', list(map(render, [loot_from])))
    """, SandboxViolationError, "attribute access in format fields is not allowed"),
    Attack("attribute field in a nested format spec", """
        ctx.storage.set('loot', '{0:{1.__globals__}}'.format(1, loot_from))
    """, SandboxViolationError, "attribute access in format fields is not allowed"),
    Attack("format spec of an f-string built at run time", """
        spec = '{0.__globals__}'
        ctx.storage.set('loot', f'{loot_from:{spec}}')
    """, PluginError, "unsupported format string passed to function.__format__"),
    Attack("string.Formatter().get_field", """
        import string
        found = string.Formatter().get_field('0.__globals__', [loot_from], {})
        ctx.storage.set('loot', loot_from(found[0]))
    """, PluginError, "module 'string' has no attribute 'Formatter'"),
    Attack("from string import Formatter", """
        from string import Formatter
        ctx.storage.set('loot', loot_from(Formatter().get_field('0.__globals__', [loot_from], {})[0]))
    """, PluginError, "cannot import name 'Formatter' from 'string'"),
    Attack("operator.attrgetter", """
        import operator
        ctx.storage.set('loot', loot_from(operator.attrgetter('__globals__')(loot_from)))
    """, SandboxViolationError, "import of 'operator' is not allowed"),
]


@pytest.mark.parametrize("attack", **by_name(FORMAT_ATTACKS))
def test_formatter_attribute_access_is_refused(arena, attack):
    run_attack(arena, attack)


# ---------------------------------------------------------------------------
# CVE-2024-47532: AttributeError.obj and other interpreter-set exception fields
# CVE-2025-22153: try/except*
# ---------------------------------------------------------------------------

EXCEPTION_ATTACKS = [
    Attack("AttributeError.obj", """
        try:
            ctx.storage.gate
        except AttributeError as e:
            ctx.storage.set('loot', repr(e.obj))
    """, SandboxViolationError, "the 'obj' field of exceptions is not accessible"),
    Attack("AttributeError.obj, computed name", """
        try:
            type(ctx).nothing
        except AttributeError as e:
            ctx.storage.set('loot', repr(getattr(e, 'o' + 'bj')))
    """, SandboxViolationError, "the 'obj' field of exceptions is not accessible"),
    Attack("AttributeError.obj through a format field", """
        try:
            ctx.nothing
        except AttributeError as e:
            ctx.storage.set('loot', '{0.obj}'.format(e))
    """, SandboxViolationError, "attribute access in format fields is not allowed"),
    Attack("try/except* on an exception group", """
        try:
            ctx.nothing
        except* AttributeError as group:
            ctx.storage.set('loot', repr(group.exceptions[0].obj))
    """, PluginCompileError, "try/except* is not allowed"),
    Attack("ExceptionGroup built by hand", """
        group = ExceptionGroup('x', [ValueError('y')])
        ctx.storage.set('loot', repr(group.exceptions))
    """, PluginError, "name 'ExceptionGroup' is not defined"),
]


@pytest.mark.parametrize("attack", **by_name(EXCEPTION_ATTACKS))
def test_exception_fields_and_groups_are_refused(arena, attack):
    run_attack(arena, attack)


#: Plugin code that tries one route to a secret; ``attempt`` records in
#: storage, per route, what the plugin got or the message that stopped it.
PROBE = """
def attempt(results, label, route):
    try:
        results[label] = 'GOT ' + repr(route())[:300]
    except Exception as e:
        results[label] = 'refused: ' + str(e)
"""


def probe(arena: Arena, routes: dict[str, str], setup: str = "") -> dict[str, str]:
    """Run one plugin trying every route (a lambda body each) and return
    what it recorded; the plugin itself must activate."""
    lines = [textwrap.dedent(setup).strip("\n"), "results = {}"]
    for label, expression in routes.items():
        lines.append(f"attempt(results, {label!r}, lambda: {expression})")
    lines.append("ctx.storage.set('results', results)")
    got: dict[str, str] = {}

    async def go(arena: Arena) -> None:
        attempt = await launch(arena, "\n".join(lines), PROBE, plugin_id="prober")
        assert attempt.error is None, attempt.error
        got.update(attempt.loot["results"])

    arena.run(go)
    assert set(got) == set(routes)
    return got


def test_interpreter_set_exception_fields_are_unreadable(arena):
    setup = """
    def caught(action):
        try:
            action()
        except Exception as e:
            return e
    missing_name = caught(lambda: undefined_name)
    missing_attr = caught(lambda: ctx.storage.nothing)
    """
    got = probe(arena, {
        "NameError.name": "missing_name.name",
        "AttributeError.name": "missing_attr.name",
        "AttributeError.obj": "getattr(missing_attr, 'obj')",
        "obj after with_traceback": "missing_attr.with_traceback(None).obj",
        "args of the AttributeError": "[isinstance(a, str) for a in missing_attr.args]",
    }, setup)
    for field in ("NameError.name", "AttributeError.name", "AttributeError.obj", "obj after with_traceback"):
        name = field.split(".")[-1].split()[0]
        assert got[field] == f"refused: the '{name}' field of exceptions is not accessible to plugins", got[field]
    # what the interpreter puts in args is text only
    assert got["args of the AttributeError"] == "GOT [True]"


IMPORTED = """
def imported(name):
    try:
        if name == 'os':
            import os
        elif name == 'sys':
            import sys
        elif name == 'json.decoder':
            import json.decoder
        elif name == 'hostrt':
            import hostrt
        else:
            import importlib
    except ImportError as e:
        return [getattr(e, field, 'absent') for field in ('name', 'path')]
    return 'imported'
"""


def test_refused_imports_carry_no_module_name_or_path(arena):
    names = ("os", "sys", "json.decoder", "hostrt", "importlib")
    got = probe(arena, {name: f"imported({name!r})" for name in names}, IMPORTED)
    for name, outcome in got.items():
        assert outcome == "refused: the 'name' field of exceptions is not accessible to plugins", (name, outcome)


# ---------------------------------------------------------------------------
# CVE-2026-55830: shadowing the guards the compiled code calls
# ---------------------------------------------------------------------------

SHADOWING = {
    "positional-only parameter": ("def peek(_getattr_, /):\n    return _getattr_(ctx, '_storage')", "_getattr_"),
    "positional-only lambda parameter": ("peek = lambda _write_, /: _write_", "_write_"),
    "default argument capturing a guard": ("def peek(x, guard=_getattr_):\n    return guard(x, '_gate')", "_getattr_"),
    "keyword-only parameter": ("def peek(*, _tick_=None):\n    return 1", "_tick_"),
    "star parameter": ("def peek(*_getiter_):\n    return 1", "_getiter_"),
    "double-star parameter": ("def peek(**_write_):\n    return 1", "_write_"),
    "walrus": ("(_getattr_ := getattr)", "_getattr_"),
    "walrus in a comprehension": ("[(_getiter_ := iter) for x in 'ab']", "_getiter_"),
    "for target": ("for _getiter_ in [list]:\n    pass", "_getiter_"),
    "comprehension target": ("[0 for _tick_ in 'ab']", "_tick_"),
    "import alias": ("import json as _write_", "_write_"),
    "except alias": ("try:\n    pass\nexcept Exception as _caught_:\n    pass", "_caught_"),
    "global declaration": ("def peek():\n    global _tick_\n    _tick_ = None", "_tick_"),
    "class name": ("class _write_:\n    pass", "_write_"),
    "class attribute": ("class Probe:\n    _getattr_ = getattr", "_getattr_"),
    "with target": ("with ctx as _tick_:\n    pass", "_tick_"),
    "del": ("del _check_", "_check_"),
    "NFKC spelling of a guard name": ("_\uff47\uff45\uff54\uff41\uff54\uff54\uff52_ = getattr", "_getattr_"),
}


@pytest.mark.parametrize("form", list(SHADOWING))
def test_guard_names_cannot_be_bound_or_shadowed(arena, form):
    statement, guard = SHADOWING[form]
    body = statement + "\nctx.storage.set('loot', loot_from(getattr(ctx, '_log')))"
    run_attack(arena, Attack(form, body, PluginCompileError, f'"{guard}" is an invalid'))


# ---------------------------------------------------------------------------
# RestrictedPython 7.2/7.3: getattr with odd names; 9.0: C consumers
# ---------------------------------------------------------------------------

NAME_ATTACKS = [
    Attack("str subclass as attribute name", """
        class Name(str):
            def startswith(self, prefix, *rest):
                return False
        ctx.storage.set('loot', repr(getattr(ctx.storage, Name('_gate'))))
    """, PluginError, "attribute name must be a string"),
    Attack("fullwidth dunder in source", """
        ctx.storage.set('loot', repr(().__\uff43\uff4c\uff41\uff53\uff53__))
    """, PluginCompileError, '"__class__" is an invalid attribute name'),
    Attack("fullwidth underscores in getattr", """
        ctx.storage.set('loot', repr(getattr((), '\uff3f\uff3fclass\uff3f\uff3f')))
    """, SandboxViolationError, "is an invalid attribute name"),
    Attack("mathematical letters spelling mro", """
        ctx.storage.set('loot', repr(getattr(type(()), '\U0001d426\U0001d42b\U0001d428')()))
    """, SandboxViolationError, "is a restricted name"),
    Attack("hasattr probing a private slot", """
        if hasattr(ctx.storage, '_gate'):
            ctx.storage.set('loot', 'found')
    """, SandboxViolationError, '"_gate" is an invalid attribute name'),
    Attack("sorted over an endless iterator", """
        ctx.storage.set('loot', len(sorted(range(10 ** 12))))
    """, ResourceLimitError, "exceeds the plugin limit of 16777216"),
    Attack("tuple over an endless iterator", """
        ctx.storage.set('loot', len(tuple(range(10 ** 12))))
    """, ResourceLimitError, "exceeds the plugin limit of 16777216"),
]


@pytest.mark.parametrize("attack", **by_name(NAME_ATTACKS))
def test_computed_names_and_c_consumers_are_checked(arena, attack):
    run_attack(arena, attack)


# ---------------------------------------------------------------------------
# classic escapes: subclasses, function globals, introspection, classes
# ---------------------------------------------------------------------------

SUBCLASS_WALK = """
for cls in {start}:
    init = getattr(cls, '__init__')
    ns = getattr(init, '__globals__', None)
    if ns and 'os' in ns:
        ctx.storage.set('loot', loot_from(ns))
"""

CLASSIC_ATTACKS = [
    Attack("().__class__.__base__.__subclasses__()",
           SUBCLASS_WALK.format(start="().__class__.__base__.__subclasses__()"),
           PluginCompileError, '"__class__" is an invalid attribute name'),
    Attack("subclass walk with names built from chr()", """
        def spell(*codes):
            return ''.join(map(chr, codes))
        dunder = spell(95, 95)
        base = getattr(getattr((), dunder + 'class' + dunder), dunder + 'base' + dunder)
        ctx.storage.set('loot', repr(getattr(base, dunder + 'subclasses' + dunder)()))
    """, SandboxViolationError, '"__class__" is an invalid attribute name'),
    Attack("type(x).mro()", SUBCLASS_WALK.format(start="type(()).mro()[-1].__subclasses__()"),
           PluginCompileError, '"mro" is a restricted name'),
    Attack("getattr(type(x), 'mro')", """
        ctx.storage.set('loot', repr(getattr(type(()), 'm' + 'ro')()))
    """, SandboxViolationError, '"mro" is a restricted name'),
    Attack("functools.reduce applying getattr", """
        import functools
        walk = functools.reduce(getattr, ['__class__', '__base__', '__subclasses__'], ())
        ctx.storage.set('loot', repr(walk()))
    """, SandboxViolationError, '"__class__" is an invalid attribute name'),
    Attack("function __globals__", """
        ctx.storage.set('loot', loot_from(activate.__globals__))
    """, PluginCompileError, '"__globals__" is an invalid attribute name'),
    Attack("bound host method's function globals", """
        ctx.storage.set('loot', loot_from(ctx.log.info.__func__.__globals__))
    """, PluginCompileError, '"__func__" is an invalid attribute name'),
    Attack("func_globals (the Python 2 name)", """
        ctx.storage.set('loot', loot_from(loot_from.func_globals))
    """, PluginError, "has no attribute 'func_globals'"),
    Attack("__globals__ by a computed name", """
        ctx.storage.set('loot', loot_from(getattr(loot_from, '__glob' + 'als__')))
    """, SandboxViolationError, '"__globals__" is an invalid attribute name'),
    Attack("__code__ constants", """
        ctx.storage.set('loot', repr(loot_from.__code__.co_consts))
    """, PluginCompileError, '"__code__" is an invalid attribute name'),
    Attack("vars()", """
        ctx.storage.set('loot', repr(vars(ctx.storage)))
    """, PluginError, "name 'vars' is not defined"),
    Attack("dir() to find names", """
        for name in dir(ctx.storage):
            ctx.storage.set(name, repr(getattr(ctx.storage, name, None)))
    """, PluginError, "name 'dir' is not defined"),
    Attack("globals()", """
        ctx.storage.set('loot', loot_from(globals()))
    """, PluginError, "name 'globals' is not defined"),
    Attack("decorator applying eval", """
        ctx.storage.set('loot', steal)
    """, PluginError, "name 'eval' is not defined", top="""
        @eval
        def steal():
            pass
    """),
    Attack("decorator applying open", """
        ctx.storage.set('loot', steal.read())
    """, PluginError, "name 'open' is not defined", top="""
        @open
        def steal():
            pass
    """),
    Attack("decorator applying __import__", """
        ctx.storage.set('loot', steal.environ['x'])
    """, PluginCompileError, '"__import__" is an invalid variable name', top="""
        @__import__
        def os():
            pass
    """),
    Attack("class pattern in match", """
        match ctx.storage:
            case object(__class__=cls):
                ctx.storage.set('loot', repr(cls))
    """, PluginCompileError, "match statements are not supported"),
]


@pytest.mark.parametrize("attack", **by_name(CLASSIC_ATTACKS))
def test_classic_escapes_are_refused(arena, attack):
    run_attack(arena, attack)


CLASS_ATTACKS = [
    Attack("three-argument type()", """
        Spy = type('Spy', (), {'__getattr__': lambda self, name: name})
        ctx.storage.set('loot', Spy().anything)
    """, SandboxViolationError, "type() with three arguments is not allowed"),
    Attack("type of type, called with three arguments", """
        Meta = type(type(0))
        Spy = Meta('Spy', (), {'__del__': lambda self: None})
        ctx.storage.set('loot', repr(Spy))
    """, SandboxViolationError, "type() with three arguments is not allowed"),
    Attack("metaclass keyword", """
        ctx.storage.set('loot', repr(Spy))
    """, PluginCompileError, 'The keyword argument "metaclass" is not allowed', top="""
        class Spy(metaclass=type):
            pass
    """),
    Attack("subclassing type", """
        class Meta(type):
            pass
        ctx.storage.set('loot', repr(Meta))
    """, SandboxViolationError, "plugins cannot subclass 'type'"),
    Attack("__init_subclass__ hook", """
        ctx.storage.set('loot', 1)
    """, PluginCompileError, '"__init_subclass__" cannot be defined in plugin classes', top="""
        class Hook:
            def __init_subclass__(cls):
                pass
    """),
    Attack("__set_name__ hook", """
        ctx.storage.set('loot', 1)
    """, PluginCompileError, '"__set_name__" cannot be defined in plugin classes', top="""
        class Named:
            def __set_name__(self, owner, name):
                pass
    """),
    Attack("descriptor __get__", """
        ctx.storage.set('loot', 1)
    """, PluginCompileError, '"__get__" cannot be defined in plugin classes', top="""
        class Descriptor:
            def __get__(self, obj, owner):
                return obj
    """),
    Attack("__getattr__ assigned in a class body", """
        ctx.storage.set('loot', Spy().anything)
    """, PluginCompileError, '"__getattr__" is an invalid variable name', top="""
        class Spy:
            __getattr__ = getattr
    """),
    Attack("__class_getitem__", """
        ctx.storage.set('loot', repr(Spy[ctx]))
    """, PluginCompileError, '"__class_getitem__" cannot be defined in plugin classes', top="""
        class Spy:
            def __class_getitem__(cls, item):
                return item
    """),
    Attack("super() past the plugin class", """
        class Probe:
            pass
        ctx.storage.set('loot', repr(getattr(super(Probe, Probe()), '__thisclass__')))
    """, SandboxViolationError, '"__thisclass__" is an invalid attribute name'),
    Attack("super().__init__ of a host base", """
        class Mine(Exception):
            def __init__(self):
                super().__init__()
        ctx.storage.set('loot', repr(Mine()))
    """, PluginCompileError, '"__init__" is an invalid attribute name'),
    Attack("subclassing a host class", """
        class Forged(type(ctx.storage)):
            pass
        ctx.storage.set('loot', repr(Forged))
    """, SandboxViolationError, "plugins cannot subclass 'Storage'"),
]


@pytest.mark.parametrize("attack", **by_name(CLASS_ATTACKS))
def test_class_creation_hooks_are_refused(arena, attack):
    run_attack(arena, attack)


# ---------------------------------------------------------------------------
# other modules through the allowed ones
# ---------------------------------------------------------------------------

MODULE_ROUTES = {
    "json.decoder": "json.decoder",
    "json.codecs": "getattr(json, 'codecs')",
    "json.dumps globals": "getattr(json.dumps, '__glo' + 'bals__')",
    "re._compiler": "getattr(re, '_com' + 'piler')",
    "re.enum": "getattr(re, 'enum')",
    "re.sre_compile": "getattr(re, 'sre_compile')",
    "datetime.sys": "getattr(datetime, 'sys')",
    "random._os": "getattr(random, '_' + 'os')",
    "random.Random": "random.Random",
    "collections.abc": "collections.abc",
    "functools.lru_cache": "functools.lru_cache",
    "functools.reduce with getattr": "functools.reduce(getattr, ['__loader__'], math)",
    "itertools.count": "itertools.count",
    "string.Formatter": "getattr(string, 'Formatter')",
    "string.Template": "string.Template",
    "math.__loader__": "getattr(math, '__loa' + 'der__')",
    "module spec": "getattr(json, '__sp' + 'ec__')",
    "re.Pattern's module": "getattr(re.Pattern, '__mod' + 'ule__')",
    "time.sleep": "time.sleep",
    "uuid.getnode": "uuid.getnode",
    "hashlib.new": "hashlib.new",
}


def test_allowed_modules_lead_nowhere_else(arena):
    setup = "import json, re, datetime, random, collections, functools, itertools, string, math, time, uuid, hashlib"
    got = probe(arena, MODULE_ROUTES, setup)
    for route, outcome in got.items():
        assert outcome.startswith("refused: "), (route, outcome)
        assert ("in the plugin sandbox" in outcome or "is an invalid attribute name" in outcome
                or "is not allowed in plugins" in outcome), (route, outcome)
    assert got["random._os"] == 'refused: "_os" is an invalid attribute name because it starts with "_"'
    assert got["json.decoder"] == "refused: module 'json' has no attribute 'decoder' in the plugin sandbox"


IMPORT_ATTACKS = [
    Attack("import json.decoder", "import json.decoder\nctx.storage.set('loot', repr(json.decoder))",
           SandboxViolationError, "import of 'json.decoder' is not allowed"),
    Attack("from datetime import sys", "from datetime import sys\nctx.storage.set('loot', sys.argv)",
           PluginError, "cannot import name 'sys' from 'datetime'"),
    Attack("import collections.abc", "import collections.abc\nctx.storage.set('loot', 1)",
           SandboxViolationError, "import of 'collections.abc' is not allowed"),
    Attack("import os", "import os\nctx.storage.set('loot', os.environ[ENV_NAME])",
           SandboxViolationError, "import of 'os' is not allowed"),
    Attack("import an underscore module", "import _strptime\nctx.storage.set('loot', 1)",
           PluginCompileError, '"_strptime" is an invalid variable name'),
    Attack("writing a module attribute", """
        import json
        json.loads = lambda text: text
        ctx.storage.set('loot', 1)
    """, SandboxViolationError, "plugins cannot modify 'module' objects"),
]


@pytest.mark.parametrize("attack", **by_name(IMPORT_ATTACKS))
def test_imports_outside_the_allow_list_are_refused(arena, attack):
    run_attack(arena, attack)


# ---------------------------------------------------------------------------
# type() stand-ins: an opaque one has no attributes by any route
# ---------------------------------------------------------------------------

STAND_IN_ATTACKS = [
    Attack("the real itertools.chain.from_iterable", """
        import itertools
        unticked = getattr(type(itertools.chain()), 'from_iterable')
        rows = [0] * 1000000
        ctx.storage.set('loot', 0.5 in unticked([rows] * 90))
    """, PluginError, "type 'chain' has no attribute 'from_iterable' for plugins"),
    Attack("a host class's function", """
        read = getattr(type(ctx.storage), 'get')
        ctx.storage.set('loot', read(ctx.storage, 'secret'))
    """, PluginError, "type 'Storage' has no attribute 'get' for plugins"),
    Attack("a host property's getter", """
        getter = getattr(type(ctx), 'storage').fget
        ctx.storage.set('loot', repr(getter))
    """, PluginError, "type 'Context' has no attribute 'storage' for plugins"),
    Attack("a module proxy's slots", """
        import json
        slot = getattr(type(json), 'dumps')
        ctx.storage.set('loot', repr(slot))
    """, PluginError, "type 'module' has no attribute 'dumps' for plugins"),
]


@pytest.mark.parametrize("attack", **by_name(STAND_IN_ATTACKS))
def test_opaque_type_stand_ins_have_no_attributes(arena, attack):
    run_attack(arena, attack)


# ---------------------------------------------------------------------------
# reflected operators cannot turn an accumulator into an unguarded sequence
# ---------------------------------------------------------------------------

ACCUMULATOR = """
class Seed:
    def {method}(self, other):
        return {start}


def grow():
    total = 0
    total {op}= Seed()
    for step in range({steps}):
        total += total
    return len(total)
"""


@pytest.mark.parametrize("method, op, start, steps", [
    ("__radd__", "+", "[0]", 26),
    ("__rsub__", "-", "'x'", 28),
], ids=["__radd__ returning a list", "__rsub__ returning a string"])
def test_a_reflected_operator_cannot_smuggle_a_sequence_into_an_accumulator(arena, method, op, start, steps):
    top = ACCUMULATOR.format(method=method, op=op, start=start, steps=steps)
    run_attack(arena, Attack(method, "ctx.storage.set('loot', grow())", ResourceLimitError,
                             "exceeds the plugin limit", top=top))
