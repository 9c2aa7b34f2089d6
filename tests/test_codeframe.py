"""Code frames shown for plugin errors (``hostrt dev``)."""

from __future__ import annotations

from hostrt.codeframe import MAX_LINE_CHARS, code_frame
from hostrt.errors import HostrtError, PluginError


def test_the_failing_line_is_marked_with_context_and_a_caret(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "plugin.py").write_text("\n".join(f"line {n}" for n in range(1, 11)))
    frame = code_frame(tmp_path, PluginError("p", "boom", file="p/plugin.py", line=5, column=3))
    assert frame == "\n".join([
        "  3 | line 3",
        "  4 | line 4",
        "> 5 | line 5",
        "    |   ^",
        "  6 | line 6",
        "  7 | line 7",
    ])
    # at the edges the frame is cut, and line numbers keep their width
    frame = code_frame(tmp_path, PluginError("p", "boom", file="p/plugin.py", line=10))
    assert frame.splitlines() == ["   8 | line 8", "   9 | line 9", "> 10 | line 10"]


def test_no_frame_without_a_place_or_outside_the_plugins_folder(tmp_path):
    plugins = tmp_path / "plugins"
    (plugins / "p").mkdir(parents=True)
    (plugins / "p" / "plugin.py").write_text("x = 1\n")
    (tmp_path / "secret.txt").write_text("host secret\n")
    assert code_frame(plugins, HostrtError("no place")) is None
    assert code_frame(plugins, PluginError("p", "no line", file="p/plugin.py")) is None
    assert code_frame(plugins, PluginError("p", "past the end", file="p/plugin.py", line=7)) is None
    assert code_frame(plugins, PluginError("p", "gone", file="p/missing.py", line=1)) is None
    # a file name that climbs out of the plugins folder is never read
    assert code_frame(plugins, PluginError("p", "x", file="../secret.txt", line=1)) is None
    (plugins / "p" / "link.py").symlink_to(tmp_path / "secret.txt")
    assert code_frame(plugins, PluginError("p", "x", file="p/link.py", line=1)) is None


def test_long_lines_are_cut(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "plugin.js").write_text("x" * 10000 + "\n")
    frame = code_frame(tmp_path, PluginError("p", "minified", file="p/plugin.js", line=1, column=9000))
    assert frame == "> 1 | " + "x" * MAX_LINE_CHARS + " ..."
