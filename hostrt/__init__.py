"""hostrt: run third-party plugins in-process, behind capability grants.

The public API is re-exported here; everything else is internal.
"""

from __future__ import annotations

__version__ = "0.1.0"

import logging as _logging

# A library leaves output to the application: without this, Python's
# last-resort handler would print hostrt's warnings to stderr.
_logging.getLogger("hostrt").addHandler(_logging.NullHandler())

from .capabilities import Capability, parse_capability
from .commands import CommandInfo
from .context import ActivationContext
from .errors import (
    BudgetExceededError,
    CapabilityError,
    CommandNotFoundError,
    DependencyError,
    EventDepthError,
    EventError,
    GrantError,
    HostMethodError,
    HostrtError,
    LifecycleError,
    ManifestError,
    ManifestProblem,
    PayloadError,
    PluginCompileError,
    PluginError,
    PluginNotFoundError,
    QuotaExceededError,
    RateLimitError,
    ResourceLimitError,
    SandboxViolationError,
    SettingsError,
    StorageError,
    StoreError,
)
from .events import Event, EventDelivery, EventPolicy, HostSubscription
from .grants import GrantManager
from .host import Host, HostPolicy
from .hostmethods import Page, PageRequest
from .lifecycle import PluginRecord, PluginState, ReloadOutcome, ReloadResult
from .manifest import Manifest, load_manifest
from .store import Store
from .sync import SyncHost

__all__ = [
    "ActivationContext",
    "BudgetExceededError",
    "Capability",
    "CapabilityError",
    "CommandInfo",
    "CommandNotFoundError",
    "DependencyError",
    "Event",
    "EventDelivery",
    "EventDepthError",
    "EventError",
    "EventPolicy",
    "GrantError",
    "GrantManager",
    "Host",
    "HostMethodError",
    "HostPolicy",
    "HostSubscription",
    "HostrtError",
    "LifecycleError",
    "Manifest",
    "ManifestError",
    "ManifestProblem",
    "Page",
    "PageRequest",
    "PayloadError",
    "PluginCompileError",
    "PluginError",
    "PluginNotFoundError",
    "PluginRecord",
    "PluginState",
    "QuotaExceededError",
    "RateLimitError",
    "ReloadOutcome",
    "ReloadResult",
    "ResourceLimitError",
    "SandboxViolationError",
    "SettingsError",
    "StorageError",
    "Store",
    "StoreError",
    "SyncHost",
    "__version__",
    "load_manifest",
    "parse_capability",
]
