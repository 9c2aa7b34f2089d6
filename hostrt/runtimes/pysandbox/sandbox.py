"""One plugin's sandbox: its budget, guards, builtins, modules and globals."""

from __future__ import annotations

import sys
from types import CodeType
from typing import Any

from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence

from .budget import Budget
from .builtins import PluginTypes, build_builtins
from .classes import PluginClassMeta
from .formatting import Formatting
from .guards import Guards, case_text
from .iteration import Iteration
from .limits import MAX_BYTES
from .modules import Importer, ModuleFactory
from .walkguards import WalkGuards
from .walks import Walks


class Sandbox:
    """Everything the compiled code of one plugin runs against.

    The globals dict holds the hidden names the compiler's rewrites call
    (all starting with ``_``, so plugin code cannot name or rebind them)
    and the plugin's own module-level names.
    """

    def __init__(self, plugin_id: str) -> None:
        self.plugin_id = plugin_id
        self.budget = Budget()
        self.iteration = Iteration(self.budget)
        walks = Walks(check_time=self.budget.check)
        self.formatting = Formatting(self.budget, walks)
        self.walk_guards = WalkGuards(walks, self.budget.charge_walk)
        self.guards = Guards(self.budget, self.iteration, self.formatting, self.walk_guards)
        self.types = PluginTypes(self.iteration, self.guards)
        self.importer = Importer(ModuleFactory(self.budget, self.iteration, self.guards, self.types))
        self.builtins = build_builtins(
            plugin_id=plugin_id,
            iteration=self.iteration,
            guards=self.guards,
            types=self.types,
            format_value=self.formatting.format_value,
            importer=self.importer,
        )
        g = self.guards
        w = self.walk_guards
        self.globals: dict[str, Any] = {
            "__builtins__": self.builtins,
            "__name__": plugin_id,
            "__metaclass__": PluginClassMeta,
            # budget
            "_tick_": self.budget.tick,
            "_check_": self.budget.check,
            "_caught_": self._caught,
            # iteration
            "_getiter_": self.iteration.getiter,
            "_getiter_cap_": self.iteration.getiter_cap,
            "_unpack_sequence_": guarded_unpack_sequence,
            "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
            # attributes and writes
            "_getattr_": g.getattr,
            "_write_": g.write,
            "_type_": type,
            "_WRITABLE_": g.writable_types,
            "_PCM_": PluginClassMeta,
            "_NUM_": frozenset({int, float}),
            # operators and formatting
            "_add_": g.add,
            "_mul_": g.mul,
            "_pow_": g.pow,
            "_lshift_": g.lshift,
            "_mod_": g.mod,
            "_floordiv_": g.floordiv,
            "_iadd_": g.iadd,
            "_imul_": g.imul,
            "_ipow_": g.ipow,
            "_ilshift_": g.ilshift,
            "_imod_": g.imod,
            "_ifloordiv_": g.ifloordiv,
            "_ior_": g.ior,
            "_format_": self.formatting.format_value,
            # walks (comparisons, hashing, text of structures)
            "_LEAF_": w.leaf_types,
            "_TEXT_LEAF_": w.walks.text_leaf_types,
            "_SHORT_": w.short_types,
            "_STR_": str,
            "_STRP_": self.types.str,
            "_cmpv_": w.operand,
            "_key_": w.key,
            "_keyin_": w.key_in,
            "_keyarg_": w.key_arg,
            "_ukey_": w.unplaced_key,
            "_keys_": w.keys,
            "_in_": w.contains,
            "_text_": w.text,
            "_mapping_": g.mapping_arg,
            "_slice_items_": g.slice_items,
            "_case_": case_text,
            "_CASE_MAX_": MAX_BYTES // 3,
            "_len_": len,
            "_sub_": w.sub,
            "_bitand_": w.bitand,
            "_bitxor_": w.bitxor,
            "_bitor_": w.bitor,
            "_isub_": w.isub,
            "_iand_": w.iand,
            "_ixor_": w.ixor,
        }

    def _caught(self) -> None:
        """First statement of every ``except`` block: the sticky budget check,
        then the caught exception is scrubbed of what the interpreter attached
        that plugin code did not make: ``AttributeError.obj`` is the object a
        failed lookup was made on, which may be a host or real type object."""
        self.budget.check()
        exc = sys.exc_info()[1]
        if isinstance(exc, AttributeError):
            exc.obj = None

    def run_module(self, code: CodeType) -> None:
        """Execute the plugin's compiled top level (inside an entry)."""
        exec(code, self.globals)
