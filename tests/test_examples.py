"""The examples are part of the product: they must run as documented."""

import subprocess
import sys
from pathlib import Path

import pytest

from hostrt.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_PLUGINS = sorted(p for p in (ROOT / "examples" / "plugins").iterdir() if (p / "plugin.json").exists())


@pytest.mark.parametrize("folder", EXAMPLE_PLUGINS, ids=lambda p: p.name)
def test_example_plugin_passes_check(folder, capsys):
    assert main(["check", str(folder)]) == 0, capsys.readouterr().err


def test_demo_host_app_runs_to_completion():
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "host_app.py")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "demo finished" in out.stdout
    assert "[hello-py] info: hello, world!" in out.stdout
    assert "[hello-py] info: HELLO, WORLD!" in out.stdout
    assert "goodbye, world" in out.stdout
    # The JavaScript twin and the bundled npm example ran in their isolates.
    assert "[hello-js] info: hello, world!  {'activations': 1}" in out.stdout
    assert "[hello-js] info: hello, world!  {'activations': 2}" in out.stdout
    assert "[slugs-js] info: 3 pages indexed  {'added': 3" in out.stdout
    assert "cafe-and-creme-brulee" in out.stdout
    # Events, a paged host method and commands.
    assert "[digest-py] info: host started notebook 2.4.1: 7 documents in 3 pages" in out.stdout
    assert "[digest-py] info: new note 4: 'Plan the #launch party for the #release'" in out.stdout
    assert "[hello-js] info: welcome, note 4 from notes-py!  {'tags': 2}" in out.stdout
    assert "E_PAYLOAD: event 'app.started' from the host rejected at $.version" in out.stdout
    # Hot reload: a new version with the count handed over, a typo kept out
    # (with a frame of the code), the fix.
    assert "[hello-js] info: hi again, world!" in out.stdout
    assert out.stdout.count("[hello-js] info: reloaded: 1 notes welcomed so far") == 2
    assert out.stdout.count("hello-js: reloaded (new version active)") == 2
    assert "hello-js: kept\n  E_COMPILE: plugin 'hello-js': SyntaxError" in out.stdout
    assert "> 30 | let welcomed = ;" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr
