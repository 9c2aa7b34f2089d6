"""``hostrt dev`` as an author runs it: a real process, real files, the
real observer, Ctrl-C (SIGINT) to stop."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from hostrt.store import Store

from test_hot_reload import write

#: The longest any expected line may take to appear.
LINE_WITHIN_S = 20.0


class DevProcess:
    """``hostrt dev`` in a child process, its output read line by line."""

    def __init__(self, plugins: Path, db: Path, *args: str) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hostrt.cli", "dev", str(plugins), "--db", str(db), *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, encoding="utf-8",
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def expect(self, pattern: str) -> str:
        """The next line matching ``pattern`` (earlier lines are kept in
        ``lines``); fails with the output so far if it does not come."""
        regex = re.compile(pattern)
        while True:
            try:
                line = self._queue.get(timeout=LINE_WITHIN_S)
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r}; output:\n" + "\n".join(self.lines)) from None
            if line is None:
                raise AssertionError(f"exited before {pattern!r}; output:\n" + "\n".join(self.lines))
            self.lines.append(line)
            if regex.search(line):
                return line

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=LINE_WITHIN_S)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def dev(plugins_dir, tmp_path):
    started: list[DevProcess] = []

    def start(*args: str) -> DevProcess:
        process = DevProcess(plugins_dir, tmp_path / "dev.db", *args)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


LOGGING_PY = """
def activate(ctx):
    ctx.log.info("hello from {tag}")
    ctx.commands.register("version", lambda params: "{tag}")

def deactivate(ctx):
    ctx.log.info("bye from {tag}")
"""


def test_dev_reloads_shows_errors_with_a_code_frame_and_stops_cleanly(dev, plugins_dir, tmp_path):
    write(plugins_dir, "probe", "python", source=LOGGING_PY.format(tag="v1"), capabilities=["storage"])
    write(plugins_dir, "probe-js", "javascript", "j1")
    process = dev("--grant-requested")
    process.expect(r"!!! --grant-requested: every capability")
    process.expect(r"!!! granted storage to probe \(--grant-requested\)")
    process.expect(r"probe info: hello from v1")
    process.expect(r"watching .* \(2 of 2 plugins active\)")

    write(plugins_dir, "probe", "python", source=LOGGING_PY.format(tag="v2"), capabilities=["storage"],
          version="1.1.0")
    process.expect(r"probe info: bye from v1")
    process.expect(r"probe info: hello from v2")
    process.expect(r"probe reloaded 1\.0\.0 -> 1\.1\.0 in \d+\.\d ms")

    main = plugins_dir / "probe-js" / "plugin.js"
    main.write_text("exports.activate = () => {};\nexports.deactivate = () => {};\nconst oops = ;\n")
    process.expect(r"probe-js: the new version was refused; 1\.0\.0 keeps running")
    process.expect(r"error \[E_COMPILE\]: .*probe-js")
    process.expect(r"probe-js/plugin\.js:3")
    process.expect(r">\s+3 \| const oops = ;")

    write(plugins_dir, "probe-js", "javascript", "j2")
    process.expect(r"probe-js reloaded 1\.0\.0 in \d+\.\d ms")

    assert process.interrupt() == 0
    process.expect(r"stopping: deactivating every plugin")
    process.expect(r"probe info: bye from v2")
    process.expect(r"probe 1\.1\.0 inactive")
    process.expect(r"^\[\d\d:\d\d:\d\d\] stopped$")
    assert not any("Traceback" in line for line in process.lines)


def test_dev_never_grants_unless_asked(dev, plugins_dir, tmp_path):
    write(plugins_dir, "probe", "python", source=LOGGING_PY.format(tag="v1"), capabilities=["storage"])
    process = dev()
    hint = process.expect(r"probe requests storage, not granted")
    assert "--grant-requested" in hint and "hostrt grant" in hint
    process.expect(r"probe 1\.0\.0 blocked")
    process.expect(r"watching .* \(0 of 1 plugins active\)")
    # a new version asking for more is not granted either
    write(plugins_dir, "probe", "python", source=LOGGING_PY.format(tag="v2"),
          capabilities=["storage", "settings.read"])
    process.expect(r"probe 1\.0\.0 blocked")
    assert process.interrupt() == 0
    process.expect(r"stopped")
    assert not any("granted" in line and "!!!" in line for line in process.lines)
    store = Store(tmp_path / "dev.db")
    try:
        assert store.list_grants("probe") == []
    finally:
        store.close()
    assert not any("hello from" in line for line in process.lines)


def test_dev_reports_a_bad_manifest_by_file_and_field(dev, plugins_dir):
    write(plugins_dir, "probe", "python", source=LOGGING_PY.format(tag="v1"))
    process = dev()
    process.expect(r"watching .* \(1 of 1 plugins active\)")
    manifest = plugins_dir / "probe" / "plugin.json"
    data = json.loads(manifest.read_text())
    data["capabilities"] = ["network"]
    manifest.write_text(json.dumps(data))
    process.expect(r"probe: the new version was refused; 1\.0\.0 keeps running")
    line = process.expect(r"error \[E_MANIFEST\]")
    assert "plugin.json" in line
    process.expect(r"\$\.capabilities\[0\]")
    assert process.interrupt() == 0
    process.expect(r"probe 1\.0\.0 inactive")


HOSTILE_JS = r"""
exports.activate = (ctx) => {
  console.log("\x1b[2J\x1b[Hcleared\r[00:00:00] victim reloaded 1.0.0 in 0.1 ms");
  const e = new Error("boom\n[00:00:00] victim reloaded 9.9.9 in 0.1 ms\x1b]52;c;ZXZpbA==\x07");
  e.stack = "Error: boom\n[00:00:00] victim active\n    at hostile/plugin.js:1:1\x1b[31m";
  throw e;
};
"""


def test_a_plugin_cannot_write_to_the_terminal_or_forge_console_lines(dev, plugins_dir):
    write(plugins_dir, "hostile", "javascript", source=HOSTILE_JS)
    process = dev()
    process.expect(r"hostile 1\.0\.0 failed")
    process.expect(r"watching")
    assert process.interrupt() == 0
    process.expect(r"stopped")
    output = "\n".join(process.lines)
    assert "boom" in output and "cleared" in output          # what it said is shown...
    assert "\x1b" not in output and "\r" not in output and "\x07" not in output   # ...but never as control codes
    assert "\\x1b[2J" in output
    # every line is the console's own: stamped, and plugin text after the
    # stamp is either a prefixed log line or indented under an error
    for line in process.lines:
        assert re.match(r"^\[\d\d:\d\d:\d\d\] ", line), line
        body = line[11:]
        assert not body.startswith("[00:00:00]") and not body.startswith("victim"), line


SLOW_ACTIVATE_PY = """
import time

def activate(ctx):
    ctx.log.info("activating {tag}")
    end = time.monotonic() + {seconds}
    while time.monotonic() < end:
        pass
    ctx.log.info("active {tag}")

def deactivate(ctx):
    ctx.log.info("bye from {tag}")
"""


def test_ctrl_c_during_a_reload_lets_it_finish_then_stops_cleanly(dev, plugins_dir, tmp_path):
    write(plugins_dir, "probe", "python", source=SLOW_ACTIVATE_PY.format(tag="v1", seconds=0))
    process = dev()
    process.expect(r"watching")
    write(plugins_dir, "probe", "python", source=SLOW_ACTIVATE_PY.format(tag="v2", seconds=0.5),
          limits={"timeoutMs": 3000})
    process.expect(r"probe info: activating v2")  # the new version's activate is running
    assert process.interrupt() == 0
    process.expect(r"probe info: active v2")
    process.expect(r"probe reloaded")
    process.expect(r"probe info: bye from v2")
    process.expect(r"^\[\d\d:\d\d:\d\d\] stopped$")
    assert not any("Traceback" in line or "error" in line for line in process.lines), process.lines
