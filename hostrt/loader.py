"""From a plugin folder to what a runtime loads."""

from __future__ import annotations

from pathlib import Path

from .manifest import Manifest, resolve_main
from .runtimes.base import PluginSource, RuntimeLimits


def plugin_source(folder: Path, manifest: Manifest, limits: RuntimeLimits) -> PluginSource:
    """Resolve ``main`` (refusing anything that escapes the folder) and
    describe the plugin for its runtime.

    Errors name the file as ``<folder name>/<main>``: enough for the author,
    and no host path for plugin code to see.
    """
    root = folder.resolve()
    main = resolve_main(folder, manifest)
    return PluginSource(
        plugin_id=manifest.id,
        version=manifest.version,
        root=root,
        main=main,
        display_file=f"{folder.name}/{main.relative_to(root).as_posix()}",
        limits=limits,
    )
