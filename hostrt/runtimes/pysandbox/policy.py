"""The compile-time policy: which Python plugin code may contain, and how
it is rewritten to call the guards.

:class:`PluginPolicy` extends RestrictedPython's ``RestrictingNodeTransformer``
and keeps all of its refusals (names and attributes starting with ``_``,
``exec``/``eval`` calls, ``nonlocal``, ``try/except*``, star imports, unknown
AST nodes such as ``match``...). It changes or adds:

* **Attributes.** Literal names are checked here (underscore names and
  :data:`~.guards.FORBIDDEN_ATTRS`); a read compiles to a native attribute
  load unless the name is in :data:`RUNTIME_CHECKED_ATTRS` (then
  ``_getattr_(obj, 'name')``). Writes and ``del`` go through ``_write_``,
  inlined as a type test when the object is a plain name.
* **Items.** Reads are native (every subscriptable object plugin code can
  reach is plugin data or a documented value type); writes go through
  ``_write_`` like attributes. Augmented assignment to attributes and items
  (``self.n += 1``, ``d[k] += 1``), which RestrictedPython refuses, is
  allowed through the same guards.
* **Budget.** A tick (``_tick_()``) starts every function body, lambda body
  and ``while`` body; ``for`` loops and comprehensions iterate through
  ``_getiter_`` (list/set/dict comprehensions and ``*`` unpacking through
  the capped ``_getiter_cap_``); ``yield from`` too. Every ``except`` block
  starts with ``_caught_()`` and every ``finally`` block with ``_check_()``,
  so once the budget is spent no handler can swallow the interrupt: not
  ``except BaseException``, not a bare ``except``, not ``finally: return``.
  ``_caught_`` also scrubs ``AttributeError.obj`` from the caught exception.
* **Operators.** ``+``, ``*``, ``**``, ``<<``, ``%`` and ``//`` (and their
  in-place forms) call size guards unless the operands make the native
  operation provably safe (a numeric or string constant on one side of
  ``+``, a small shift, a float factor); when one operand is a plain name,
  an inline ``type(x) in (int, float)`` test keeps arithmetic native.
  Tuple unpacking stays native (items are plain data) unless a starred
  target could collect an unbounded iterable.
* **Formatting.** An f-string field whose format spec is not a safe
  constant goes through ``_format_``.
* **Classes.** ``class`` statements get ``metaclass=__metaclass__`` (the
  sandbox's :class:`~.classes.PluginClassMeta`); methods may use only the
  special names in :data:`~.classes.ALLOWED_DUNDER_METHODS`.
* **Refused with a clear message:** ``async``/``await``, ``match``,
  ``try/except*``, relative imports, class keyword arguments, chained
  assignment with a starred target, augmented assignment to a slice.

Everything the rewritten code calls is a global whose name starts with
``_``: plugin code cannot name, rebind or shadow any of them (walrus
targets, parameters including positional-only ones, imports, ``global``
declarations and class attributes are all name-checked).
"""

from __future__ import annotations

import ast
import copy
from dataclasses import dataclass
from types import CodeType
from typing import Any

from RestrictedPython import compile_restricted
from RestrictedPython.transformer import RestrictingNodeTransformer

from .classes import ALLOWED_DUNDER_METHODS, is_dunder
from .formatting import spec_is_safe
from .guards import EXCEPTION_FIELDS, FORBIDDEN_ATTRS
from .limits import MAX_FORMAT_SPEC, MAX_INT_BITS

#: Method names whose C implementation consumes an iterable or allocates
#: by argument (see guards.Guards._build_method_guards), plus ``format``.
METHOD_GUARD_NAMES = frozenset(
    (
        "extend extendleft update union intersection difference symmetric_difference "
        "intersection_update difference_update symmetric_difference_update issubset "
        "issuperset isdisjoint fromkeys join ljust rjust center zfill expandtabs replace "
        "translate to_bytes strftime sub subn expand format format_map subtract elements "
        "split rsplit splitlines findall search match fullmatch finditer scanner hex"
    ).split()
)

#: Methods that hash or compare their arguments (``d.get(k)``,
#: ``s.add(x)``...). Called directly, they stay native and their arguments
#: go through the key guard; fetched any other way they are runtime
#: checked like the names below.
KEY_METHOD_NAMES = frozenset("get setdefault pop add discard move_to_end".split())

#: Methods whose first argument may be a tuple of strings, each compared
#: (``s.startswith(prefixes)``): checked like a comparison operand where
#: called, runtime checked otherwise.
PREFIX_METHOD_NAMES = frozenset("startswith endswith".split())

#: Case mappings, which may make a string up to three times longer
#: (``'\ufb03'.upper() == 'FFI'``): where called, the string is checked
#: (an inline length test for a plain name); runtime checked otherwise.
CASE_METHOD_NAMES = frozenset("upper lower casefold title capitalize swapcase".split())

#: Methods that compare every item: ``index``/``count``/``remove`` scan a
#: sequence for their argument, ``sort`` and ``most_common`` compare items.
SCAN_METHOD_NAMES = frozenset("index count remove sort most_common".split())

#: Literal attribute names compiled to ``_getattr_(obj, name)`` instead of
#: a native load.
RUNTIME_CHECKED_ATTRS = (
    METHOD_GUARD_NAMES | EXCEPTION_FIELDS | SCAN_METHOD_NAMES | KEY_METHOD_NAMES | PREFIX_METHOD_NAMES
    | CASE_METHOD_NAMES
)

_NATIVE_BINOPS = (ast.Div, ast.RShift, ast.MatMult)
#: The set operators: on sets and dict views they hash and compare items.
_SET_OPS = (ast.Sub, ast.BitAnd, ast.BitXor, ast.BitOr)
_BINOP_GUARDS = {
    ast.Sub: "_sub_",
    ast.BitAnd: "_bitand_",
    ast.BitXor: "_bitxor_",
    ast.BitOr: "_bitor_",
    ast.Add: "_add_",
    ast.Mult: "_mul_",
    ast.Pow: "_pow_",
    ast.LShift: "_lshift_",
    ast.Mod: "_mod_",
    ast.FloorDiv: "_floordiv_",
}
_INPLACE_GUARDS = {
    ast.Add: "_iadd_",
    ast.Mult: "_imul_",
    ast.Pow: "_ipow_",
    ast.LShift: "_ilshift_",
    ast.Mod: "_imod_",
    ast.FloorDiv: "_ifloordiv_",
    ast.BitOr: "_ior_",
    ast.BitAnd: "_iand_",
    ast.BitXor: "_ixor_",
    ast.Sub: "_isub_",
}
_SMALL_FACTOR = 1 << 16
_SMALL_DIVISOR = 1 << 64


#: In-place operators of the accumulator pattern ``total = 0; total += x``.
_NUMERIC_CLOSED_OPS = (ast.Add, ast.Sub)


def numeric_locals(function: ast.FunctionDef) -> frozenset[str]:
    """Local names of ``function`` that are accumulators: they start as numbers.

    A name qualifies when it is not a parameter and every binding of it in
    the function's own scope is ``name = <number literal>`` or
    ``name += / -= <anything>``. Such a name *usually* holds a number, but
    it is not proven to: ``number + x`` calls a plugin class's ``__radd__``
    (``__rsub__`` for ``-``), which may return a list or a string, and the
    next ``name += name`` would then grow it natively. So these names still
    get the inline ``type(name) in (int, float)`` test before a native
    ``+=``; what being an accumulator buys is that test even when the added
    expression is too large to copy into both branches (it is evaluated
    once, into a temporary). Nested functions, lambdas and classes are
    other scopes (rebinding from there needs ``nonlocal``/``global``, which
    also disqualify the name).
    """
    params = {a.arg for a in (*function.args.posonlyargs, *function.args.args, *function.args.kwonlyargs)}
    params.update(a.arg for a in (function.args.vararg, function.args.kwarg) if a is not None)
    good: set[str] = set()
    bad: set[str] = set(params)

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                if not isinstance(child, ast.Lambda):
                    bad.add(child.name)
                # Another scope can rebind ours only by declaring it.
                for inner in ast.walk(child):
                    if isinstance(inner, (ast.Global, ast.Nonlocal)):
                        bad.update(inner.names)
                if isinstance(child, ast.ClassDef):
                    continue
                for default in (*child.args.defaults, *child.args.kw_defaults):
                    if default is not None:
                        visit(default)
                continue
            if isinstance(child, (ast.Global, ast.Nonlocal)):
                bad.update(child.names)
            elif isinstance(child, ast.Assign) and len(child.targets) == 1 and isinstance(child.targets[0], ast.Name):
                if _is_number_const(child.value):
                    good.add(child.targets[0].id)
                    visit(child.value)
                    continue
            elif isinstance(child, ast.AugAssign) and isinstance(child.target, ast.Name):
                if isinstance(child.op, _NUMERIC_CLOSED_OPS):
                    good.add(child.target.id)
                    visit(child.value)
                    continue
            elif isinstance(child, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
                # comprehension targets are their own scope, but a walrus
                # inside binds in ours: treat every name stored there as bad
                for sub in ast.walk(child):
                    if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                        bad.add(sub.id)
                continue
            if isinstance(child, ast.Name) and isinstance(child.ctx, (ast.Store, ast.Del)):
                bad.add(child.id)
            elif isinstance(child, ast.alias):
                bad.add((child.asname or child.name).split(".")[0])
            elif isinstance(child, ast.ExceptHandler) and child.name:
                bad.add(child.name)
            visit(child)

    visit(function)
    return frozenset(good - bad)


@dataclass(frozen=True)
class CompileProblem:
    """One reason the source was refused, located in the plugin's file."""

    line: int | None
    column: int | None
    message: str


class PluginCompileFailure(Exception):
    """The plugin's source was refused; ``problems`` says where and why."""

    def __init__(self, problems: list[CompileProblem]) -> None:
        super().__init__(problems[0].message if problems else "compile failed")
        self.problems = problems


# -- small AST helpers ------------------------------------------------------


def _name(id_: str) -> ast.Name:
    return ast.Name(id=id_, ctx=ast.Load())


def _call(func: str, *args: ast.expr) -> ast.Call:
    return ast.Call(func=_name(func), args=list(args), keywords=[])


def _const_value(node: ast.AST) -> Any:
    return node.value if isinstance(node, ast.Constant) else None


def _is_number_const(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) in (int, float, complex, bool)


def _is_text_const(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) in (str, bytes)


def _is_float_const(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) in (float, complex)


def _is_int_const(node: ast.AST, bound: int, *, nonzero: bool = False) -> bool:
    if not (isinstance(node, ast.Constant) and type(node.value) in (int, bool)):
        return False
    value = int(node.value)
    return abs(value) < bound and (value != 0 or not nonzero)


def _is_literal(node: ast.AST) -> bool:
    """A constant, or a display of constants: C code walking it visits at
    most as many items as the source spells out."""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return all(_is_literal(e) for e in node.elts)
    return False


_WALKING_COMPARISONS = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn)


_NOT_DUPLICABLE = (
    ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp,
    ast.Yield, ast.YieldFrom, ast.NamedExpr, ast.Await,
)


def _is_simple(node: ast.AST) -> bool:
    """Small expressions that may be copied into both branches of an inline
    fast path (``x + E if type(x) in (int, float) else _iadd_(x, E)``).
    Only one branch ever runs, so ``E`` is still evaluated once; the limit
    just keeps the generated code small, and nodes that define scopes or
    bind names are never copied."""
    count = 0
    for sub in ast.walk(node):
        count += 1
        if count > 24 or isinstance(sub, _NOT_DUPLICABLE):
            return False
    return True


def _contains_starred(target: ast.AST) -> bool:
    return any(isinstance(n, ast.Starred) for n in ast.walk(target))


def _as_tuple(target: ast.AST) -> ast.AST:
    """Normalise list targets to tuples (RestrictedPython's unpack spec only
    descends into tuples)."""
    if isinstance(target, (ast.List, ast.Tuple)):
        new = ast.Tuple(elts=[_as_tuple(e) for e in target.elts], ctx=target.ctx)
        return ast.copy_location(new, target)
    return target


def _safe_constant_binop(op: type, left: Any, right: Any) -> bool:
    """Is ``left <op> right`` on two constants small enough to run natively?"""
    try:
        if op is ast.Mult:
            if isinstance(left, (str, bytes)) and type(right) is int:
                return len(left) * right <= 4096
            if isinstance(right, (str, bytes)) and type(left) is int:
                return len(right) * left <= 4096
            if type(left) is int and type(right) is int:
                return left.bit_length() + right.bit_length() <= MAX_INT_BITS
        if op is ast.Pow and type(left) is int and type(right) is int:
            return right <= 0 or abs(left) <= 1 or left.bit_length() * right <= MAX_INT_BITS
        if op is ast.LShift and type(left) is int and type(right) is int:
            return left == 0 or 0 <= right <= 4096
    except (TypeError, OverflowError):
        return False
    return False


def _subtree_ids(node: ast.AST) -> set[int]:
    return {id(n) for n in ast.walk(node)}


def _annotation_nodes(tree: ast.AST) -> set[int]:
    """Every node inside an annotation."""
    found: set[int] = set()
    for sub in ast.walk(tree):
        if isinstance(sub, ast.arg) and sub.annotation is not None:
            found |= _subtree_ids(sub.annotation)
        elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)) and sub.returns is not None:
            found |= _subtree_ids(sub.returns)
        elif isinstance(sub, ast.AnnAssign):
            found |= _subtree_ids(sub.annotation)
    return found


def _class_scope_nodes(tree: ast.AST) -> set[int]:
    """Every node a class body evaluates in the class's namespace: its
    statements, and the decorators and default values of the functions,
    lambdas and classes defined there (not their bodies)."""
    found: set[int] = set()

    def in_class(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            args = node.args
            for part in (*getattr(node, "decorator_list", ()), *args.defaults, *args.kw_defaults):
                if part is not None:
                    found.update(_subtree_ids(part))
            return
        if isinstance(node, ast.ClassDef):
            for part in (*node.decorator_list, *node.bases, *(k.value for k in node.keywords)):
                found.update(_subtree_ids(part))
            return  # its own body is found as a class of its own
        found.add(id(node))
        for child in ast.iter_child_nodes(node):
            in_class(child)

    for cls in ast.walk(tree):
        if isinstance(cls, ast.ClassDef):
            for statement in cls.body:
                in_class(statement)
    return found


class PluginPolicy(RestrictingNodeTransformer):
    """RestrictedPython policy for hostrt plugins (see the module docstring)."""

    #: Structured problems; compile_plugin gives each compile its own list.
    _sink: list[CompileProblem] = []

    def __init__(self, errors: Any = None, warnings: Any = None, used_names: Any = None) -> None:
        super().__init__(errors, warnings, used_names)
        self._scopes: list[str] = ["module"]
        #: Per function being compiled: its locals proven to hold only numbers.
        self._numeric_locals: list[frozenset[str]] = [frozenset()]
        self._comprehension_capped: list[bool] = []
        self._no_temporaries: set[int] = set()
        #: Subscripts that are whole targets of an assignment statement.
        self._slice_targets: set[int] = set()

    # -- problems ----------------------------------------------------------------

    def error(self, node: ast.AST, info: str) -> None:
        super().error(node, info)
        line = getattr(node, "lineno", None)
        col = getattr(node, "col_offset", None)
        if isinstance(node, ast.Attribute) and getattr(node, "end_lineno", None) == line:
            # Point at the attribute name, not at the start of the chain.
            col = max(0, node.end_col_offset - len(node.attr))
        self._sink.append(CompileProblem(line, None if col is None else col + 1, info))

    def warn(self, node: ast.AST, info: str) -> None:
        # Warnings here always come with an error; RestrictedPython would
        # otherwise emit them through the process-wide warnings module.
        pass

    def _locate(self, new: ast.AST, old: ast.AST) -> Any:
        """Give every generated node without a position the position of
        ``old``, so tracebacks and columns point at the plugin's source."""
        for node in ast.walk(new):
            if "lineno" in node._attributes and getattr(node, "lineno", None) is None:
                node.lineno = getattr(old, "lineno", 1)
                node.col_offset = getattr(old, "col_offset", 0)
                node.end_lineno = getattr(old, "end_lineno", node.lineno)
                node.end_col_offset = getattr(old, "end_col_offset", node.col_offset)
        return new

    def _stmt(self, func: str, old: ast.AST) -> ast.stmt:
        return self._locate(ast.Expr(value=_call(func)), old)

    # -- names --------------------------------------------------------------------

    def visit_Name(self, node: ast.Name) -> Any:
        # Plugins call the print builtin directly (it logs); RestrictedPython's
        # print collector and 'printed' are not used.
        if isinstance(node.ctx, ast.Load) and node.id == "print":
            self.used_names[node.id] = True
            return node
        node = self.node_contents_visit(node)
        if isinstance(node.ctx, ast.Load):
            self.used_names[node.id] = True
        self.check_name(node, node.id)
        return node

    # -- attributes and items ------------------------------------------------------

    def _check_attribute_name(self, node: ast.Attribute) -> None:
        attr = node.attr
        if attr.startswith("_") and attr != "_":
            self.error(node, f'"{attr}" is an invalid attribute name because it starts with "_".')
        elif attr.endswith("__roles__"):
            self.error(node, f'"{attr}" is an invalid attribute name because it ends with "__roles__".')
        elif attr in FORBIDDEN_ATTRS:
            self.error(
                node,
                f'"{attr}" is a restricted name that plugins may not access '
                "(it leads to interpreter internals).",
            )

    def _write_target(self, obj: ast.expr, old: ast.AST, *, item: bool) -> ast.expr:
        """``obj`` wrapped so that writing to it goes through ``_write_``;
        for a plain name the common cases are an inline type test."""
        if isinstance(obj, ast.Name):
            if item:
                test: ast.expr = ast.Compare(
                    left=_call("_type_", _name(obj.id)), ops=[ast.In()], comparators=[_name("_WRITABLE_")]
                )
            else:
                test = ast.Compare(
                    left=_call("_type_", _call("_type_", _name(obj.id))),
                    ops=[ast.Is()],
                    comparators=[_name("_PCM_")],
                )
            wrapped: ast.expr = ast.IfExp(test=test, body=_name(obj.id), orelse=_call("_write_", _name(obj.id)))
        else:
            wrapped = _call("_write_", obj)
        return self._locate(wrapped, old)

    def _load_attribute(self, obj: ast.expr, attr: str, old: ast.AST) -> ast.expr:
        if attr in RUNTIME_CHECKED_ATTRS:
            return self._locate(_call("_getattr_", obj, ast.Constant(attr)), old)
        return self._locate(ast.Attribute(value=obj, attr=attr, ctx=ast.Load()), old)

    def visit_Attribute(self, node: ast.Attribute) -> Any:
        self._check_attribute_name(node)
        node = self.node_contents_visit(node)
        if isinstance(node.ctx, ast.Load):
            if node.attr in RUNTIME_CHECKED_ATTRS:
                return self._locate(_call("_getattr_", node.value, ast.Constant(node.attr)), node)
            return node
        node.value = self._write_target(node.value, node, item=False)
        return node

    def visit_Subscript(self, node: ast.Subscript) -> Any:
        if (isinstance(node.ctx, ast.Store) and isinstance(node.slice, ast.Slice)
                and id(node) not in self._slice_targets):
            # x[a:b] = items copies every item in one C call; only the plain
            # statement form has its value counted (visit_Assign)
            self.error(node, "Assigning to a slice is only supported as a statement of its own: x[a:b] = items.")
        node = self.node_contents_visit(node)
        if not isinstance(node.slice, ast.Slice) and not _is_literal(node.slice):
            node.value, ref = self._container_ref(node.value, node)
            node.slice = self._item_key(node.slice, node, ref)
        if isinstance(node.ctx, ast.Load):
            return node
        node.value = self._write_target(node.value, node, item=True)
        return node

    # -- walks: values C code compares, hashes or prints --------------------------

    def _leaf_guard(self, value: ast.expr, guard: str, old: ast.AST, *lead: ast.expr) -> ast.expr:
        """``value`` checked by ``guard(*lead, value)`` (see walkguards.py)
        unless it is a literal; for a plain name the scalar case is an
        inline type test (for text, against the leaves whose text is not
        plugin code's)."""
        if _is_literal(value):
            return value
        if isinstance(value, ast.Name):
            leaves = "_TEXT_LEAF_" if guard == "_text_" else "_LEAF_"
            test = ast.Compare(left=_call("_type_", _name(value.id)), ops=[ast.In()], comparators=[_name(leaves)])
            slow = _call(guard, *[copy.deepcopy(e) for e in lead], _name(value.id))
            return self._locate(ast.IfExp(test=test, body=_name(value.id), orelse=slow), old)
        return self._locate(_call(guard, *lead, value), old)

    def _container_ref(self, container: ast.expr, at: ast.AST) -> tuple[ast.expr, ast.expr | None]:
        """(the container as evaluated in place, a reference to it for a key
        guard): a plain name is its own reference; anything else is bound to
        a temporary by a walrus where Python allows one, else no reference."""
        if isinstance(container, ast.Name):
            return container, _name(container.id)
        if not self._may_bind_temporaries(at):
            return container, None
        tmp = self.gen_tmp_name()
        bound = ast.NamedExpr(target=ast.Name(tmp, ast.Store()), value=container)
        return self._locate(bound, container), _name(tmp)

    def _key_for(self, key: ast.expr, ref: ast.expr | None, old: ast.AST) -> ast.expr:
        """``key`` checked for hashing into the container ``ref`` refers to
        (any key size the container's size allows), or, with no reference,
        as a key of an unknown container (small keys only)."""
        if ref is None:
            return self._leaf_guard(key, "_ukey_", old)
        return self._leaf_guard(key, "_keyin_", old, ref)

    def _item_key(self, key: ast.expr, old: ast.AST, ref: ast.expr | None) -> ast.expr:
        """The key of ``obj[key]``: hashed when ``obj`` is a mapping. A
        short tuple display (``grid[x, y]``) has each part checked."""
        if isinstance(key, ast.Slice):
            return key
        if isinstance(key, ast.Tuple) and len(key.elts) <= 4 and not any(isinstance(e, ast.Starred) for e in key.elts):
            key.elts = [self._key_for(e, ref, old) for e in key.elts]
            return key
        return self._key_for(key, ref, old)

    def visit_Compare(self, node: ast.Compare) -> Any:
        node = self.node_contents_visit(node)
        operands = [node.left, *node.comparators]
        if len(node.ops) == 1 and isinstance(node.ops[0], (ast.In, ast.NotIn)):
            item, container = operands
            if _is_literal(item) or (_is_literal(container) and not isinstance(container, ast.Set)):
                return node
            if isinstance(item, ast.Name) and _is_simple(container):
                # Strings and integers go to the guard too: a long one
                # searched in many entries costs its length each time.
                fast = ast.Compare(left=_name(item.id), ops=[ast.In()], comparators=[copy.deepcopy(container)])
                test = ast.Compare(left=_call("_type_", _name(item.id)), ops=[ast.In()], comparators=[_name("_SHORT_")])
                found: ast.expr = ast.IfExp(test=test, body=fast, orelse=_call("_in_", item, container))
            else:
                found = _call("_in_", item, container)
            if isinstance(node.ops[0], ast.NotIn):
                found = ast.UnaryOp(op=ast.Not(), operand=found)
            return self._locate(found, node)
        if len(node.ops) == 1 and isinstance(node.ops[0], _WALKING_COMPARISONS):
            left, right = operands
            if _is_literal(left) or _is_literal(right):
                return node
            # A scalar on either side compares without descending into the
            # other: one inline type test on a plain name on the left keeps
            # the native comparison (it is loaded first anyway; a name on
            # the right could be rebound by the left operand's evaluation
            # after the test); the other branch checks both operands.
            if isinstance(left, ast.Name) and _is_simple(right):
                fast = ast.Compare(left=_name(left.id), ops=[node.ops[0]], comparators=[copy.deepcopy(right)])
                slow = ast.Compare(left=_call("_cmpv_", left), ops=[node.ops[0]], comparators=[_call("_cmpv_", right)])
                test = ast.Compare(left=_call("_type_", _name(left.id)), ops=[ast.In()], comparators=[_name("_LEAF_")])
                return self._locate(ast.IfExp(test=test, body=fast, orelse=slow), node)
        # Each operand compared (not by identity) with a non-literal is checked.
        needs = [False] * len(operands)
        for i, op in enumerate(node.ops):
            if isinstance(op, _WALKING_COMPARISONS):
                left, right = operands[i], operands[i + 1]
                if isinstance(op, (ast.In, ast.NotIn)) or not (_is_literal(left) or _is_literal(right)):
                    needs[i] = needs[i + 1] = True
        if not any(needs):
            return node
        checked = [self._leaf_guard(o, "_cmpv_", node) if need else o for o, need in zip(operands, needs)]
        node.left, node.comparators = checked[0], checked[1:]
        return node

    # -- calls and displays ------------------------------------------------------------

    def visit_Call(self, node: ast.Call) -> Any:
        if isinstance(node.func, ast.Name) and node.func.id in ("exec", "eval"):
            self.error(node, f"{node.func.id.capitalize()} calls are not allowed.")
        func = node.func
        if (isinstance(func, ast.Attribute) and isinstance(func.ctx, ast.Load) and not node.keywords
                and not any(isinstance(a, ast.Starred) for a in node.args)
                and func.attr in CASE_METHOD_NAMES | PREFIX_METHOD_NAMES | KEY_METHOD_NAMES):
            # A method checked where it is called: the load stays native
            # (visit_Attribute would make it a runtime-checked load) and
            # the receiver or the arguments are checked instead.
            self._check_attribute_name(func)
            func.value = self.visit(func.value)
            node.args = [self.visit(a) for a in node.args]
            if func.attr in CASE_METHOD_NAMES:
                self._check_case_receiver(func)
            elif func.attr in PREFIX_METHOD_NAMES:
                if node.args:  # s.startswith(prefixes)
                    node.args[0] = self._leaf_guard(node.args[0], "_cmpv_", node.args[0])
            elif node.args:
                self._check_key_arguments(node)
            return node
        node = self.node_contents_visit(node)
        if (isinstance(node.func, ast.Name) and node.func.id == "str" and len(node.args) == 1
                and not node.keywords and isinstance(node.args[0], ast.Name)):
            # str(x) of a scalar calls the real str directly (the sandbox's
            # str checks the text of containers first), as long as the name
            # str still means the sandbox's.
            arg = node.args[0].id
            test = ast.BoolOp(op=ast.And(), values=[
                ast.Compare(left=_name("str"), ops=[ast.Is()], comparators=[_name("_STRP_")]),
                ast.Compare(left=_call("_type_", _name(arg)), ops=[ast.In()], comparators=[_name("_TEXT_LEAF_")]),
            ])
            return self._locate(ast.IfExp(test=test, body=_call("_STR_", _name(arg)), orelse=node), node)
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                arg.value = self._locate(_call("_getiter_cap_", arg.value), arg)
        for keyword in node.keywords:
            if keyword.arg is None:
                keyword.value = self._locate(_call("_mapping_", keyword.value), keyword.value)
        return node

    def _check_case_receiver(self, func: ast.Attribute) -> None:
        """``s.upper()``: ``s`` checked first (an inline type and length
        test for a plain name: an exact str that cannot expand too far)."""
        receiver = func.value
        if isinstance(receiver, ast.Name):
            test = ast.BoolOp(op=ast.And(), values=[
                ast.Compare(left=_call("_type_", _name(receiver.id)), ops=[ast.Is()], comparators=[_name("_STR_")]),
                ast.Compare(left=_call("_len_", _name(receiver.id)), ops=[ast.LtE()], comparators=[_name("_CASE_MAX_")]),
            ])
            receiver = ast.IfExp(test=test, body=_name(receiver.id), orelse=_call("_case_", _name(receiver.id)))
        else:
            receiver = _call("_case_", receiver)
        func.value = self._locate(receiver, func)

    def _check_key_arguments(self, node: ast.Call) -> None:
        """``d.get(k)``: ``k`` checked as a key of ``d``; called on the
        class (``dict.get(d, k)``), the second argument is the key."""
        func = node.func
        func.value, ref = self._container_ref(func.value, node)
        node.args[0] = self._key_for(node.args[0], ref, node.args[0])
        if ref is None or len(node.args) < 2 or _is_literal(node.args[1]):
            return
        # the first argument (the dict, then) into a temporary when it is
        # not a plain name, so it is evaluated once
        owner = node.args[0]
        if not isinstance(owner, ast.Name) and self._may_bind_temporaries(node):
            tmp = self.gen_tmp_name()
            node.args[0] = self._locate(ast.NamedExpr(target=ast.Name(tmp, ast.Store()), value=owner), owner)
            owner = _name(tmp)
        owner_ref = _name(owner.id) if isinstance(owner, ast.Name) else ast.Constant(None)
        node.args[1] = self._leaf_guard(node.args[1], "_keyarg_", node.args[1], ref, owner_ref)

    def _cap_starred(self, node: Any) -> Any:
        node = self.node_contents_visit(node)
        if isinstance(getattr(node, "ctx", ast.Load()), ast.Load):
            for elt in node.elts:
                if isinstance(elt, ast.Starred):
                    elt.value = self._locate(_call("_getiter_cap_", elt.value), elt)
        return node

    def visit_List(self, node: ast.List) -> Any:
        return self._cap_starred(node)

    def visit_Tuple(self, node: ast.Tuple) -> Any:
        return self._cap_starred(node)

    def visit_Set(self, node: ast.Set) -> Any:
        node = self._cap_starred(node)
        elts = []
        for elt in node.elts:
            if isinstance(elt, ast.Starred):
                elt.value = self._locate(_call("_keys_", elt.value), elt)
                elts.append(elt)
            else:
                elts.append(self._leaf_guard(elt, "_key_", elt))
        node.elts = elts
        return node

    def visit_Dict(self, node: ast.Dict) -> Any:
        node = self.node_contents_visit(node)
        keys: list[ast.expr | None] = []
        for key, value in zip(node.keys, node.values):
            if key is None:
                # {**mapping}: a non-dict mapping's keys are hashed here
                keys.append(None)
            else:
                keys.append(self._leaf_guard(key, "_key_", key))
        node.values = [
            self._locate(_call("_mapping_", value), value) if key is None else value
            for key, value in zip(node.keys, node.values)
        ]
        node.keys = keys
        return node

    def visit_FormattedValue(self, node: ast.FormattedValue) -> Any:
        node = self.node_contents_visit(node)
        spec = node.format_spec
        if spec is None:
            node.value = self._leaf_guard(node.value, "_text_", node)
            return node
        if isinstance(spec, ast.JoinedStr) and all(
            isinstance(v, ast.Constant) and isinstance(v.value, str) for v in spec.values
        ):
            text = "".join(v.value for v in spec.values)
            if len(text) <= MAX_FORMAT_SPEC and spec_is_safe(text):
                node.value = self._leaf_guard(node.value, "_text_", node)
                return node
        call = _call("_format_", node.value, spec, ast.Constant(node.conversion))
        return self._locate(ast.FormattedValue(value=call, conversion=-1, format_spec=None), node)

    # -- operators -----------------------------------------------------------------------

    def _inline_number_test(self, name: str, fast: ast.expr, slow: ast.expr, old: ast.AST) -> ast.expr:
        test = ast.Compare(left=_call("_type_", _name(name)), ops=[ast.In()], comparators=[_name("_NUM_")])
        return self._locate(ast.IfExp(test=test, body=fast, orelse=slow), old)

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        node = self.node_contents_visit(node)
        op = type(node.op)
        left, right = node.left, node.right
        if op in _NATIVE_BINOPS or op not in _BINOP_GUARDS:
            return node
        if isinstance(left, ast.Constant) and isinstance(right, ast.Constant):
            if _safe_constant_binop(op, left.value, right.value):
                return node
        if op in _SET_OPS:
            # A number on either side: numbers, or a TypeError before any
            # hashing (a set or view meets a number only to refuse it).
            if _is_number_const(left) or _is_number_const(right):
                return node
            if isinstance(left, ast.Name) and _is_simple(right):
                fast = ast.BinOp(left=_name(left.id), op=op(), right=copy.deepcopy(right))
                return self._inline_number_test(left.id, fast, _call(_BINOP_GUARDS[op], left, right), node)
            if self._may_bind_temporaries(node) and _is_simple(right):
                # p.x - q.x: the left operand into a temporary (a walrus
                # in the test, so it is still evaluated first and once).
                tmp = self.gen_tmp_name()
                bound = ast.NamedExpr(target=ast.Name(tmp, ast.Store()), value=left)
                test = ast.Compare(left=_call("_type_", bound), ops=[ast.In()], comparators=[_name("_NUM_")])
                fast = ast.BinOp(left=_name(tmp), op=op(), right=copy.deepcopy(right))
                slow = _call(_BINOP_GUARDS[op], _name(tmp), right)
                return self._locate(ast.IfExp(test=test, body=fast, orelse=slow), node)
        elif op is ast.Add:
            if _is_number_const(left) or _is_number_const(right) or _is_text_const(left) or _is_text_const(right):
                return node
            if isinstance(left, ast.Name) and _is_simple(right):
                fast = ast.BinOp(left=_name(left.id), op=ast.Add(), right=copy.deepcopy(right))
                return self._inline_number_test(left.id, fast, _call("_add_", left, right), node)
        elif op is ast.Mult:
            if _is_float_const(left) or _is_float_const(right):
                return node
            for name, const in ((left, right), (right, left)):
                if isinstance(name, ast.Name) and _is_int_const(const, _SMALL_FACTOR):
                    fast = ast.BinOp(left=copy.deepcopy(left), op=ast.Mult(), right=copy.deepcopy(right))
                    return self._inline_number_test(name.id, fast, _call("_mul_", left, right), node)
        elif op is ast.Pow:
            if _is_float_const(left):
                return node
        elif op is ast.LShift:
            if _is_int_const(right, 65) and _const_value(right) >= 0:
                return node
        elif op is ast.Mod:
            if _is_number_const(left):
                return node
            if isinstance(left, ast.Name) and _is_int_const(right, _SMALL_DIVISOR, nonzero=True):
                fast = ast.BinOp(left=_name(left.id), op=ast.Mod(), right=copy.deepcopy(right))
                return self._inline_number_test(left.id, fast, _call("_mod_", left, right), node)
        elif op is ast.FloorDiv:
            if _is_int_const(right, _SMALL_DIVISOR) or _is_float_const(right):
                return node
        return self._locate(_call(_BINOP_GUARDS[op], left, right), node)

    def _may_bind_temporaries(self, node: ast.AST) -> bool:
        """Whether a walrus temporary may replace ``node``: not in code a
        class body runs (it would become a class attribute: the body, its
        methods' defaults and decorators), not in a comprehension (Python
        refuses one in the iterable, and in a class body anywhere) and not
        in an annotation (refused there too)."""
        return not self._comprehension_capped and id(node) not in self._no_temporaries

    def visit_Module(self, node: ast.Module) -> Any:
        # Found before any rewriting (nodes keep their identity while
        # visited): where no walrus temporaries may go.
        self._no_temporaries = _class_scope_nodes(node) | _annotation_nodes(node)
        return super().visit_Module(node)

    def _aug_is_native(self, op: type, value: ast.expr) -> bool:
        if op in (ast.Div, ast.RShift, ast.MatMult):
            return True
        if op in (ast.Sub, ast.BitAnd, ast.BitXor):
            return _is_number_const(value)
        if op is ast.Add:
            return _is_number_const(value) or _is_text_const(value)
        if op in (ast.Mult, ast.Pow):
            return _is_float_const(value)
        if op is ast.LShift:
            return _is_int_const(value, 65) and _const_value(value) >= 0
        if op is ast.FloorDiv:
            return _is_int_const(value, _SMALL_DIVISOR, nonzero=True) or _is_float_const(value)
        if op is ast.BitOr:
            return _is_number_const(value)
        return False

    def _inplace_value(self, op: type, current: ast.expr, value: ast.expr, name: str | None, old: ast.AST) -> ast.expr:
        slow = _call(_INPLACE_GUARDS[op], current, value)
        if name is not None:
            if op in (ast.Add, *_SET_OPS) and _is_simple(value):
                fast = ast.BinOp(left=_name(name), op=op(), right=copy.deepcopy(value))
                return self._inline_number_test(name, fast, slow, old)
            if op in (ast.Mult, ast.Mod) and _is_int_const(value, _SMALL_FACTOR, nonzero=op is ast.Mod):
                fast = ast.BinOp(left=_name(name), op=op(), right=copy.deepcopy(value))
                return self._inline_number_test(name, fast, slow, old)
        return self._locate(slow, old)

    def _accumulate(self, name: str, op: type, value: ast.expr, old: ast.AST) -> list[ast.stmt]:
        """``name += value`` for an accumulator (see :func:`numeric_locals`)
        whose added expression is not simple: ``value`` into a temporary,
        then the inline number test on ``name``."""
        tmp = self.gen_tmp_name()
        fast = ast.BinOp(left=_name(name), op=op(), right=_name(tmp))
        slow = _call(_INPLACE_GUARDS[op], _name(name), _name(tmp))
        stmts = [
            ast.Assign(targets=[ast.Name(tmp, ast.Store())], value=value),
            ast.Assign(targets=[ast.Name(name, ast.Store())], value=self._inline_number_test(name, fast, slow, old)),
            ast.Delete(targets=[ast.Name(tmp, ast.Del())]),
        ]
        return [self._locate(s, old) for s in stmts]

    def visit_AugAssign(self, node: ast.AugAssign) -> Any:
        op = type(node.op)
        target = node.target
        node.value = self.visit(node.value)
        native = self._aug_is_native(op, node.value)
        if isinstance(target, ast.Name):
            self.check_name(target, target.id)
            if native:
                return node
            if (op in _NUMERIC_CLOSED_OPS and target.id in self._numeric_locals[-1]
                    and not _is_simple(node.value)):
                return self._accumulate(target.id, op, node.value, node)
            rhs = self._inplace_value(op, _name(target.id), node.value, target.id, node)
            return self._locate(ast.Assign(targets=[target], value=rhs), node)
        if isinstance(target, ast.Attribute):
            self._check_attribute_name(target)
            obj = self.visit(target.value)
            if native:
                target.value = self._write_target(obj, target, item=False)
                return node
            if isinstance(obj, ast.Name):
                current = self._load_attribute(_name(obj.id), target.attr, target)
                store = ast.Attribute(value=self._write_target(obj, target, item=False), attr=target.attr, ctx=ast.Store())
                rhs = self._inplace_value(op, current, node.value, None, node)
                return self._locate(ast.Assign(targets=[store], value=rhs), node)
            tmp = self.gen_tmp_name()
            first = ast.Assign(targets=[ast.Name(tmp, ast.Store())], value=_call("_write_", obj))
            current = self._load_attribute(_name(tmp), target.attr, target)
            rhs = self._inplace_value(op, current, node.value, None, node)
            second = ast.Assign(targets=[ast.Attribute(value=_name(tmp), attr=target.attr, ctx=ast.Store())], value=rhs)
            third = ast.Delete(targets=[ast.Name(tmp, ast.Del())])
            return [self._locate(s, node) for s in (first, second, third)]
        if isinstance(target, ast.Subscript):
            obj = self.visit(target.value)
            key = self.visit(target.slice)
            if isinstance(key, ast.Slice):
                self.error(node, "Augmented assignment to a slice is not supported (write x[a:b] = x[a:b] + y).")
                return node
            if native:
                obj, ref = self._container_ref(obj, node)
                target.value = self._write_target(obj, target, item=True)
                target.slice = self._item_key(key, target, ref)
                return node
            if isinstance(obj, ast.Name) and isinstance(key, (ast.Name, ast.Constant)):
                current = ast.Subscript(value=_name(obj.id), slice=self._item_key(copy.deepcopy(key), target, _name(obj.id)),
                                        ctx=ast.Load())
                store = ast.Subscript(value=self._write_target(obj, target, item=True),
                                      slice=self._item_key(key, target, _name(obj.id)), ctx=ast.Store())
                rhs = self._inplace_value(op, current, node.value, None, node)
                return self._locate(ast.Assign(targets=[store], value=rhs), node)
            tmp_obj, tmp_key = self.gen_tmp_name(), self.gen_tmp_name()
            stmts: list[ast.stmt] = [
                ast.Assign(targets=[ast.Name(tmp_obj, ast.Store())], value=_call("_write_", obj)),
                ast.Assign(targets=[ast.Name(tmp_key, ast.Store())], value=self._item_key(key, target, _name(tmp_obj))),
            ]
            current = ast.Subscript(value=_name(tmp_obj), slice=_name(tmp_key), ctx=ast.Load())
            rhs = self._inplace_value(op, current, node.value, None, node)
            stmts.append(ast.Assign(targets=[ast.Subscript(value=_name(tmp_obj), slice=_name(tmp_key), ctx=ast.Store())], value=rhs))
            stmts.append(ast.Delete(targets=[ast.Name(tmp_obj, ast.Del()), ast.Name(tmp_key, ast.Del())]))
            return [self._locate(s, node) for s in stmts]
        self.error(node, "Unsupported augmented assignment target.")  # pragma: no cover
        return node

    # -- assignment and iteration ------------------------------------------------------

    def _unpack_call(self, target: ast.AST, value: ast.expr, func: str) -> ast.expr:
        """RestrictedPython's spec-driven guarded unpacking, used only when a
        starred target could collect an unbounded iterable."""
        spec = self.gen_unpack_spec(_as_tuple(target))
        return _call(func, value, spec, _name("_getiter_cap_"))

    def visit_Assign(self, node: ast.Assign) -> Any:
        self._slice_targets.update(id(t) for t in node.targets if isinstance(t, ast.Subscript))
        node = self.node_contents_visit(node)
        for target in node.targets:
            if isinstance(target, ast.Subscript) and isinstance(target.slice, ast.Slice):
                # x[a:b] = items: C code copies every item in one call
                owner = target.value
                while isinstance(owner, ast.IfExp):  # the inline _write_ test
                    owner = owner.body
                lead = _name(owner.id) if isinstance(owner, ast.Name) else ast.Constant(None)
                node.value = self._locate(_call("_slice_items_", lead, node.value), node.value)
                break
        if any(_contains_starred(t) for t in node.targets):
            if len(node.targets) != 1:
                self.error(node, "Chained assignment with a starred target is not supported.")
                return node
            node.value = self._locate(self._unpack_call(node.targets[0], node.value, "_unpack_sequence_"), node)
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign) -> Any:
        # RestrictedPython refuses annotated assignment only because it does
        # not know the node: target, annotation and value are all ordinary
        # (checked) expressions.
        return self.node_contents_visit(node)

    def _iter_call(self, target: ast.AST, iterable: ast.expr, capped: bool, old: ast.AST) -> ast.expr:
        if _contains_starred(target):
            return self._locate(self._unpack_call(target, iterable, "_iter_unpack_sequence_"), old)
        return self._locate(_call("_getiter_cap_" if capped else "_getiter_", iterable), old)

    def visit_For(self, node: ast.For) -> Any:
        node = self.node_contents_visit(node)
        node.iter = self._iter_call(node.target, node.iter, False, node.iter)
        return node

    def _visit_comprehension_node(self, node: Any, capped: bool) -> Any:
        self._comprehension_capped.append(capped)
        try:
            return self.node_contents_visit(node)
        finally:
            self._comprehension_capped.pop()

    def visit_ListComp(self, node: ast.ListComp) -> Any:
        if isinstance(node.elt, ast.Starred):
            self.error(node, "Unpacking in comprehensions is not allowed.")
        return self._visit_comprehension_node(node, True)

    def visit_SetComp(self, node: ast.SetComp) -> Any:
        if isinstance(node.elt, ast.Starred):
            self.error(node, "Unpacking in comprehensions is not allowed.")
        node = self._visit_comprehension_node(node, True)
        node.elt = self._leaf_guard(node.elt, "_ukey_", node.elt)
        return node

    def visit_DictComp(self, node: ast.DictComp) -> Any:
        if getattr(node, "value", None) is None:
            self.error(node, "Unpacking in comprehensions is not allowed.")
        node = self._visit_comprehension_node(node, True)
        node.key = self._leaf_guard(node.key, "_ukey_", node.key)
        return node

    def visit_GeneratorExp(self, node: ast.GeneratorExp) -> Any:
        if isinstance(node.elt, ast.Starred):
            self.error(node, "Unpacking in comprehensions is not allowed.")
        return self._visit_comprehension_node(node, False)

    def visit_comprehension(self, node: ast.comprehension) -> Any:
        node = self.node_contents_visit(node)
        capped = self._comprehension_capped[-1] if self._comprehension_capped else False
        node.iter = self._iter_call(node.target, node.iter, capped, node.iter)
        return node

    def visit_YieldFrom(self, node: ast.YieldFrom) -> Any:
        node = self.node_contents_visit(node)
        node.value = self._locate(_call("_getiter_", node.value), node)
        return node

    # -- control flow: ticks and sticky checks -----------------------------------------

    def visit_While(self, node: ast.While) -> Any:
        node = self.node_contents_visit(node)
        node.body.insert(0, self._stmt("_tick_", node))
        return node

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> Any:
        node = self.node_contents_visit(node)
        self.check_name(node, node.name)
        node.body.insert(0, self._stmt("_caught_", node))
        return node

    def visit_Try(self, node: ast.Try) -> Any:
        node = self.node_contents_visit(node)
        if node.finalbody:
            node.finalbody.insert(0, self._stmt("_check_", node.finalbody[0]))
        return node

    def visit_TryStar(self, node: ast.AST) -> Any:
        self.error(node, "try/except* is not allowed in plugins (exception groups can bypass the sandbox).")

    # -- functions and classes -----------------------------------------------------------

    def visit_FunctionDef(self, node: ast.FunctionDef) -> Any:
        in_class = self._scopes[-1] == "class"
        if is_dunder(node.name):
            if not in_class:
                self.error(node, f'"{node.name}" can only be defined as a method of a class.')
            elif node.name not in ALLOWED_DUNDER_METHODS:
                self.error(
                    node,
                    f'"{node.name}" cannot be defined in plugin classes; allowed special methods: '
                    + ", ".join(sorted(ALLOWED_DUNDER_METHODS)),
                )
        else:
            self.check_name(node, node.name)
        self.check_function_argument_names(node)
        self._scopes.append("function")
        self._numeric_locals.append(numeric_locals(node))
        try:
            node = self.node_contents_visit(node)
        finally:
            self._scopes.pop()
            self._numeric_locals.pop()
        first = node.body[0] if node.body else None
        docstring = isinstance(first, ast.Expr) and isinstance(_const_value(first.value), str)
        at = 1 if docstring else 0
        # Located at the first statement of the body, so a budget or
        # recursion error raised by the tick points into the function.
        anchor = node.body[at] if len(node.body) > at else node
        node.body.insert(at, self._stmt("_tick_", anchor))
        return node

    def visit_Lambda(self, node: ast.Lambda) -> Any:
        self.check_function_argument_names(node)
        node = self.node_contents_visit(node)
        # _tick_() returns a true value, so "tick and body" evaluates to body.
        node.body = self._locate(ast.BoolOp(op=ast.And(), values=[_call("_tick_"), node.body]), node.body)
        return node

    def visit_ClassDef(self, node: ast.ClassDef) -> Any:
        self.check_name(node, node.name)
        for keyword in node.keywords:
            if keyword.arg == "metaclass":
                self.error(node, 'The keyword argument "metaclass" is not allowed.')
            else:
                self.error(node, "Class keyword arguments are not allowed in plugins.")
        self._scopes.append("class")
        try:
            node = self.node_contents_visit(node)
        finally:
            self._scopes.pop()
        node.keywords.append(self._locate(ast.keyword(arg="metaclass", value=_name("__metaclass__")), node))
        return node

    # -- imports ---------------------------------------------------------------------------

    def visit_ImportFrom(self, node: ast.ImportFrom) -> Any:
        if node.level:
            self.error(node, "Relative imports are not supported in plugins.")
        return self.check_import_names(node)

    # -- refused, with a clear message ------------------------------------------------------

    def visit_AsyncFunctionDef(self, node: ast.AST) -> Any:
        self.error(node, "async functions are not supported: plugin code is synchronous.")

    def visit_Await(self, node: ast.AST) -> Any:
        self.error(node, "await is not supported: plugin code is synchronous.")

    def visit_AsyncFor(self, node: ast.AST) -> Any:
        self.error(node, "async for is not supported: plugin code is synchronous.")

    def visit_AsyncWith(self, node: ast.AST) -> Any:
        self.error(node, "async with is not supported: plugin code is synchronous.")

    def visit_Match(self, node: ast.AST) -> Any:
        self.error(node, "match statements are not supported in plugins.")


def compile_plugin(source: str, filename: str) -> CodeType:
    """Parse, check and rewrite a plugin's source; return its code object.

    ``filename`` becomes the code's ``co_filename`` (the plugin's display
    path), so tracebacks name the plugin's own file. Raises
    :class:`PluginCompileFailure` with located problems.
    """
    try:
        tree = ast.parse(source, filename=filename, mode="exec")
    except SyntaxError as exc:
        raise PluginCompileFailure([CompileProblem(exc.lineno, exc.offset, f"SyntaxError: {exc.msg}")]) from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise PluginCompileFailure([CompileProblem(None, None, f"cannot parse the source: {type(exc).__name__}")]) from None
    sink: list[CompileProblem] = []
    policy = type("PluginPolicy", (PluginPolicy,), {"_sink": sink})
    try:
        return compile_restricted(tree, filename=filename, mode="exec", policy=policy)
    except SyntaxError as exc:
        if sink:
            ordered = sorted(sink, key=lambda p: (p.line or 0, p.column or 0))
            raise PluginCompileFailure(ordered) from None
        raise PluginCompileFailure([CompileProblem(exc.lineno, exc.offset, f"SyntaxError: {exc.msg}")]) from None
    except RecursionError:
        raise PluginCompileFailure([CompileProblem(None, None, "the source is nested too deeply")]) from None
