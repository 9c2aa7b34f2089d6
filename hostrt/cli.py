"""The ``hostrt`` command: check plugins and manage grants from a shell."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .errors import HostrtError, PluginError
from .host import Host, HostPolicy, default_runtimes
from .loader import plugin_source
from .manifest import load_manifest, manifest_json_schema_text

DEFAULT_DB = "hostrt.db"


def _print_error(error: HostrtError) -> None:
    print(f"error [{error.code}]: {error.message}", file=sys.stderr)
    if isinstance(error, PluginError) and error.plugin_traceback:
        print(error.plugin_traceback.rstrip(), file=sys.stderr)


def cmd_check(args: argparse.Namespace) -> int:
    """Validate a plugin folder's manifest and compile its code without running it."""
    folder = Path(args.plugin_dir)
    if not (folder / "plugin.json").is_file():
        print(f"error [E_MANIFEST]: {folder / 'plugin.json'}: no such file", file=sys.stderr)
        return 1
    try:
        manifest = load_manifest(folder)
        runtimes = {r.name: r for r in default_runtimes()}
        runtime = runtimes.get(manifest.runtime_name)
        if runtime is None:
            print(f"error: no '{manifest.runtime_name}' runtime is installed", file=sys.stderr)
            return 1
        runtime.check(plugin_source(folder, manifest, HostPolicy().limits_for(manifest)))
    except HostrtError as exc:
        _print_error(exc)
        return 1
    print(f"ok: {manifest.id} {manifest.version} ({manifest.runtime_name}, {manifest.main_path})")
    return 0


async def _with_host(args: argparse.Namespace, action: Any) -> int:
    host = Host(args.plugins_dir, args.db)
    try:
        await host.discover()
        return await action(host)
    except HostrtError as exc:
        _print_error(exc)
        return 1
    finally:
        await host.close()


def cmd_list(args: argparse.Namespace) -> int:
    """Show every plugin folder: id, version, runtime, state and grant status."""

    async def action(host: Host) -> int:
        rows = []
        for pid, record in sorted(host.plugins.items()):
            manifest = record.manifest
            assert manifest is not None
            rows.append({
                "id": pid,
                "version": manifest.version,
                "runtime": manifest.runtime_name,
                "state": record.state.value,
                "granted": host.grants.list(pid),
                "missing": host.grants.missing(pid),
            })
        for name, record in sorted(host.invalid.items()):
            rows.append({"id": name, "version": None, "runtime": None, "state": "invalid",
                         "error": record.error.message if record.error else ""})
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        if not rows:
            print(f"no plugins in {args.plugins_dir}")
        for row in rows:
            if row["state"] == "invalid":
                print(f"{row['id']:<30} {'-':<10} {'-':<11} invalid")
                for line in row["error"].splitlines():
                    print(f"    {line}")
                continue
            status = "all granted" if not row["missing"] else "missing: " + ", ".join(row["missing"])
            print(f"{row['id']:<30} {row['version']:<10} {row['runtime']:<11} {row['state']:<10} {status}")
        return 0

    return asyncio.run(_with_host(args, action))


def cmd_grant(args: argparse.Namespace) -> int:
    """Grant capabilities (those named, or --all that the manifest requests)."""

    async def action(host: Host) -> int:
        if args.all:
            added = host.grants.grant_requested(args.plugin_id, actor="cli")
        else:
            if not args.capabilities:
                print("error: name capabilities to grant, or use --all", file=sys.stderr)
                return 2
            added = [c for c in args.capabilities if host.grants.grant(args.plugin_id, c, actor="cli")]
        for cap in added:
            print(f"granted {cap} to {args.plugin_id}")
        if not added:
            print("nothing new to grant")
        return 0

    return asyncio.run(_with_host(args, action))


def cmd_revoke(args: argparse.Namespace) -> int:
    """Revoke grants; an active plugin's next call needing them fails."""

    async def action(host: Host) -> int:
        caps = host.grants.list(args.plugin_id) if args.all else args.capabilities
        if not caps:
            print("error: name capabilities to revoke, or use --all", file=sys.stderr)
            return 2
        for cap in caps:
            if host.grants.revoke(args.plugin_id, cap, actor="cli"):
                print(f"revoked {cap} from {args.plugin_id}")
            else:
                print(f"{cap} was not granted to {args.plugin_id}")
        return 0

    return asyncio.run(_with_host(args, action))


def cmd_grants(args: argparse.Namespace) -> int:
    """List a plugin's stored grants and what it requests but lacks."""

    async def action(host: Host) -> int:
        granted = host.grants.list(args.plugin_id)
        missing = host.grants.missing(args.plugin_id) if args.plugin_id in host.plugins else []
        if args.json:
            print(json.dumps({"plugin": args.plugin_id, "granted": granted, "missing": missing}, indent=2))
            return 0
        for cap in granted:
            print(f"granted  {cap}")
        for cap in missing:
            print(f"missing  {cap}")
        if not granted and not missing:
            print(f"{args.plugin_id} holds no grants")
        return 0

    return asyncio.run(_with_host(args, action))


def cmd_dev(args: argparse.Namespace) -> int:
    """Run a host for plugin development: activate every plugin, reload each
    one when its files change, show lifecycle changes, plugin logs, reload
    times and errors with the failing code; Ctrl-C stops."""
    from .dev import run_dev

    if args.debounce_ms < 0:
        print("error: --debounce-ms must be >= 0", file=sys.stderr)
        return 2
    return asyncio.run(run_dev(Path(args.plugins_dir), args.db, grant_requested=args.grant_requested,
                               debounce_s=args.debounce_ms / 1000))


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the JSON Schema of plugin.json."""
    sys.stdout.write(manifest_json_schema_text())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hostrt", description=__doc__)
    parser.add_argument("--version", action="version", version=f"hostrt {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_db(p: argparse.ArgumentParser) -> None:
        p.add_argument("--db", default=os.environ.get("HOSTRT_DB", DEFAULT_DB),
                       help=f"the host's SQLite file (default: $HOSTRT_DB or {DEFAULT_DB})")

    p = sub.add_parser("check", help=cmd_check.__doc__, description=cmd_check.__doc__)
    p.add_argument("plugin_dir")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("schema", help=cmd_schema.__doc__, description=cmd_schema.__doc__)
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("list", help=cmd_list.__doc__, description=cmd_list.__doc__)
    p.add_argument("plugins_dir")
    p.add_argument("--json", action="store_true")
    with_db(p)
    p.set_defaults(func=cmd_list)

    for name, func in (("grant", cmd_grant), ("revoke", cmd_revoke)):
        p = sub.add_parser(name, help=func.__doc__, description=func.__doc__)
        p.add_argument("plugins_dir")
        p.add_argument("plugin_id")
        p.add_argument("capabilities", nargs="*")
        p.add_argument("--all", action="store_true")
        with_db(p)
        p.set_defaults(func=func)

    p = sub.add_parser("dev", help=cmd_dev.__doc__, description=cmd_dev.__doc__)
    p.add_argument("plugins_dir")
    p.add_argument("--grant-requested", action="store_true",
                   help="grant every capability the manifests request, without asking (trusted plugins only)")
    p.add_argument("--debounce-ms", type=float, default=50.0,
                   help="how long a plugin's files must be quiet before it reloads (default: 50)")
    with_db(p)
    p.set_defaults(func=cmd_dev)

    p = sub.add_parser("grants", help=cmd_grants.__doc__, description=cmd_grants.__doc__)
    p.add_argument("plugins_dir")
    p.add_argument("plugin_id")
    p.add_argument("--json", action="store_true")
    with_db(p)
    p.set_defaults(func=cmd_grants)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hostrt`` console script."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
