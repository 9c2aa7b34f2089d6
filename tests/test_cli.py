import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hostrt.cli import main

from conftest import write_plugin

GOOD = "def activate(ctx):\n    ctx.storage.set('x', 1)\n"


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "cli.db")


def test_check_accepts_a_good_plugin(plugins_dir, capsys):
    folder = write_plugin(plugins_dir, "good-plugin", GOOD, capabilities=["storage"])
    assert main(["check", str(folder)]) == 0
    assert "ok: good-plugin 1.0.0 (python, plugin.py)" in capsys.readouterr().out


def test_check_reports_manifest_errors_with_path(plugins_dir, capsys):
    folder = write_plugin(plugins_dir, "bad-plugin", GOOD, capabilities=["network"])
    assert main(["check", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "E_MANIFEST" in err and "plugin.json" in err and "$.capabilities[0]" in err and "network" in err


def test_check_reports_syntax_errors_with_line(plugins_dir, capsys):
    folder = write_plugin(plugins_dir, "broken-code", "def activate(ctx):\n    pass\n\ndef oops(:\n")
    assert main(["check", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "E_COMPILE" in err and "broken-code/plugin.py" in err and "line 4" in err


def test_check_reports_sandbox_violations(plugins_dir, capsys):
    folder = write_plugin(plugins_dir, "sneaky", "def activate(ctx):\n    return ctx.__class__\n")
    assert main(["check", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "E_COMPILE" in err and "__class__" in err and "line 2" in err


def test_check_missing_manifest(tmp_path, capsys):
    assert main(["check", str(tmp_path)]) == 1
    assert "plugin.json" in capsys.readouterr().err


def test_grant_list_revoke_cycle(plugins_dir, db, capsys):
    write_plugin(plugins_dir, "cli-plugin", GOOD, capabilities=["storage", "settings.read"])
    assert main(["grant", str(plugins_dir), "cli-plugin", "storage", "--db", db]) == 0
    assert "granted storage to cli-plugin" in capsys.readouterr().out
    assert main(["grants", str(plugins_dir), "cli-plugin", "--db", db, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "plugin": "cli-plugin", "granted": ["storage"], "missing": ["settings.read"]}
    assert main(["list", str(plugins_dir), "--db", db]) == 0
    out = capsys.readouterr().out
    assert "cli-plugin" in out and "missing: settings.read" in out
    assert main(["revoke", str(plugins_dir), "cli-plugin", "storage", "--db", db]) == 0
    assert "revoked storage from cli-plugin" in capsys.readouterr().out
    assert main(["grant", str(plugins_dir), "cli-plugin", "--all", "--db", db]) == 0
    assert main(["grants", str(plugins_dir), "cli-plugin", "--db", db, "--json"]) == 0
    capsys.readouterr()


def test_grant_beyond_request_exits_1(plugins_dir, db, capsys):
    write_plugin(plugins_dir, "cli-plugin", GOOD, capabilities=["storage"])
    assert main(["grant", str(plugins_dir), "cli-plugin", "settings.write", "--db", db]) == 1
    assert "E_GRANT" in capsys.readouterr().err


def test_list_shows_invalid_folders(plugins_dir, db, capsys):
    write_plugin(plugins_dir, "fine-plugin", GOOD)
    bad = plugins_dir / "junk"
    bad.mkdir()
    (bad / "plugin.json").write_text("{not json")
    assert main(["list", str(plugins_dir), "--db", db, "--json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["fine-plugin"]["state"] == "validated"
    assert rows["junk"]["state"] == "invalid" and "line 1" in rows["junk"]["error"]


def test_console_script_is_installed(plugins_dir, db):
    """The real `hostrt` entry point, as a user runs it."""
    write_plugin(plugins_dir, "script-plugin", GOOD, capabilities=["storage"])
    exe = Path(sys.executable).with_name("hostrt")
    out = subprocess.run([str(exe), "grant", str(plugins_dir), "script-plugin", "--all", "--db", db],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "HOSTRT_DB": db})
    assert out.returncode == 0, out.stderr
    assert "granted storage to script-plugin" in out.stdout
