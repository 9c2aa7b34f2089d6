"""The Python plugin sandbox: RestrictedPython plus hostrt's budget and guards.

One job per module:

``policy``      the compile-time policy (a RestrictedPython transformer)
``budget``      the per-plugin wall-clock budget and its tick stream
``iteration``   counted and capped iteration, the sandbox ``range``
``guards``      attribute, write, operator-size and method guards
``formatting``  safe ``str.format``/``format()``/f-string/``%`` formatting
``classes``     the plugin class metaclass and builtin type proxies
``builtins``    the builtins plugins get
``modules``     the import allow-list and module proxies
``facade``      the ``ctx`` object plugins receive
``reporting``   exceptions to PluginErrors with plugin-only tracebacks
``refusals``    the exceptions plugin code sees when refused
``limits``      every numeric limit
``sandbox``     assembles one plugin's environment

docs/python-plugins.md is the author-facing description.
"""

from .facade import HandlerTable, build_context, release_subscriptions, subscriptions_of
from .modules import ALLOWED_MODULES
from .policy import CompileProblem, PluginCompileFailure, compile_plugin
from .refusals import BudgetInterrupt, SandboxImportError, SandboxLimitError, SandboxPolicyError
from .reporting import Reporter
from .sandbox import Sandbox

__all__ = [
    "ALLOWED_MODULES",
    "BudgetInterrupt",
    "CompileProblem",
    "HandlerTable",
    "PluginCompileFailure",
    "Reporter",
    "Sandbox",
    "SandboxImportError",
    "SandboxLimitError",
    "SandboxPolicyError",
    "build_context",
    "compile_plugin",
    "release_subscriptions",
    "subscriptions_of",
]
