"""Language runtimes. Each module here adapts one language to the
language-neutral :class:`hostrt.context.ActivationContext`; nothing outside
this package knows how a language is executed."""

from __future__ import annotations

from .base import LoadedPlugin, PluginSource, Runtime, RuntimeLimits

__all__ = ["LoadedPlugin", "PluginSource", "Runtime", "RuntimeLimits"]
