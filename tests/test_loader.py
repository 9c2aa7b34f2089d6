"""Reading a plugin's main file: only the resolved regular file inside the folder."""

import os

import pytest

from hostrt.errors import ManifestError, PluginError
from hostrt.loader import plugin_source
from hostrt.manifest import load_manifest
from hostrt.runtimes.base import RuntimeLimits

from conftest import write_plugin


def source_for(folder):
    return plugin_source(folder, load_manifest(folder), RuntimeLimits())


def test_reads_the_main_file(plugins_dir):
    folder = write_plugin(plugins_dir, "reader", "def activate(ctx):\n    pass  # é\n")
    source = source_for(folder)
    assert source.display_file == "reader/plugin.py"
    assert "é" in source.read_text()


def test_main_swapped_for_a_symlink_after_resolution_is_refused(plugins_dir, tmp_path):
    folder = write_plugin(plugins_dir, "swapper", "def activate(ctx):\n    pass\n")
    secret = tmp_path / "secret.py"
    secret.write_text("SECRET = 'host secret'\n")
    source = source_for(folder)
    (folder / "plugin.py").unlink()
    os.symlink(secret, folder / "plugin.py")
    with pytest.raises(PluginError) as info:
        source.read_text()
    assert info.value.file == "swapper/plugin.py"
    assert "host secret" not in str(info.value) and str(tmp_path) not in str(info.value)


def test_directory_on_the_path_swapped_for_a_symlink_is_refused(plugins_dir, tmp_path):
    folder = plugins_dir / "nested"
    (folder / "src").mkdir(parents=True)
    write_plugin(plugins_dir, "nested", "", main="src/plugin.py")
    (folder / "src" / "plugin.py").write_text("def activate(ctx):\n    pass\n")
    source = source_for(folder)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "plugin.py").write_text("STOLEN = 1\n")
    (folder / "src" / "plugin.py").unlink()
    (folder / "src").rmdir()
    os.symlink(outside, folder / "src")
    with pytest.raises(PluginError, match="no longer lies inside"):
        source.read_text()


def test_fifo_main_does_not_hang(plugins_dir):
    folder = write_plugin(plugins_dir, "fifo-main", "def activate(ctx):\n    pass\n")
    source = source_for(folder)
    (folder / "plugin.py").unlink()
    os.mkfifo(folder / "plugin.py")
    with pytest.raises(PluginError, match="not a regular file"):
        source.read_text()


def test_non_utf8_main_is_reported(plugins_dir):
    folder = write_plugin(plugins_dir, "latin", "")
    (folder / "plugin.py").write_bytes(b"x = '\xe9'\n")
    with pytest.raises(PluginError, match="not UTF-8"):
        source_for(folder).read_text()


def test_escaping_main_is_refused_before_reading(plugins_dir, tmp_path):
    folder = write_plugin(plugins_dir, "escaper", "")
    (tmp_path / "evil.py").write_text("x = 1\n")
    (folder / "plugin.py").unlink()
    os.symlink(tmp_path / "evil.py", folder / "plugin.py")
    with pytest.raises(ManifestError) as info:
        source_for(folder)
    assert any(p.json_path == "$.main" for p in info.value.problems)


def test_a_leading_byte_order_mark_is_dropped(plugins_dir):
    folder = write_plugin(plugins_dir, "marked", "def activate(ctx):\n    pass\n")
    (folder / "plugin.py").write_bytes(b"\xef\xbb\xbf" + b"def activate(ctx):\n    pass\n")
    assert source_for(folder).read_text() == "def activate(ctx):\n    pass\n"
