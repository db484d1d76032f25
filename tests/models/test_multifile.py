"""Models of several files: a script importing its neighbours, and a module in a package.

The file is imported as Python imports a script (its folder importable) or a package's
module (relative imports work); the run keeps every file the model imported from the user's
folder, so it is rebuilt after the originals are deleted.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from torchstyle.models.sources import (
    ModelSource,
    package_root,
    record,
    resolve,
    save_copy,
)

BLOCK = """
from torch import nn


class Block(nn.Sequential):
    def __init__(self, width: int) -> None:
        super().__init__(nn.Linear(width, width), nn.ReLU())
"""
NET = """
from torch import nn

from {blocks} import Block


class Net(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.flat = nn.Flatten()
        self.first = nn.Linear(in_channels * 64, width)  # 8x8 digits
        self.block = Block(width)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.block(self.first(self.flat(x))))
"""


def two_files(root: Path) -> str:
    """``net.py`` next to ``blocks.py``; returns the ``--model`` value."""
    (root / "blocks.py").write_text(BLOCK)
    (root / "net.py").write_text(NET.format(blocks="blocks"))
    return "net.py:Net"


def in_package(root: Path, form: str = "module") -> str:
    """``pkg/net.py`` importing ``.blocks``; ``--model pkg.net:Net`` or ``pkg/net.py:Net``."""
    pkg = root / "mlpkg"
    (pkg / "parts").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "parts" / "__init__.py").write_text("")
    (pkg / "parts" / "blocks.py").write_text(BLOCK)
    (pkg / "net.py").write_text(NET.format(blocks=".parts.blocks"))
    return "mlpkg.net:Net" if form == "module" else "mlpkg/net.py:Net"


def test_a_file_in_a_package_imports_as_the_packages_module(tmp_path):
    in_package(tmp_path)
    assert package_root(tmp_path / "mlpkg" / "net.py") == (tmp_path.resolve(), "mlpkg.net")
    assert package_root(tmp_path / "mlpkg" / "parts" / "blocks.py")[1] == "mlpkg.parts.blocks"


def test_the_record_lists_and_the_copy_keeps_every_imported_file(tmp_path):
    (tmp_path / "src").mkdir()
    in_package(tmp_path / "src")
    source = ModelSource("file", str(tmp_path / "src" / "mlpkg" / "net.py"), "Net")
    resolve(source)  # imports it, relative imports included
    rec = record(source, {}, "classification")
    assert rec["files"][0] == "mlpkg/net.py"
    assert set(rec["files"]) == {
        "mlpkg/net.py",
        "mlpkg/__init__.py",
        "mlpkg/parts/__init__.py",
        "mlpkg/parts/blocks.py",
    }
    rec = save_copy(rec, tmp_path / "run")
    assert rec["copy"] == "model/mlpkg/net.py"
    assert all((tmp_path / "run" / "model" / f).is_file() for f in rec["files"])


def test_a_script_can_import_its_neighbours(tmp_path):
    spec = two_files(tmp_path)
    builder = resolve(ModelSource("file", str(tmp_path / spec.split(":")[0]), "Net"))
    assert type(builder(width=4).block).__name__ == "Block"


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["two_files", "in_package"])
def test_a_run_is_rebuilt_after_the_originals_are_deleted(layout, tmp_path, cli):
    src = tmp_path / "src"
    src.mkdir()
    spec = two_files(src) if layout == "two_files" else in_package(src)
    run = tmp_path / "run"
    common = ("--batch-size", "16", "--no-progress")
    args = ("--data", "digits", "--epochs", "1", "--max-steps", "2", "--run-dir", str(run))
    proc = cli("train", "--model", spec, *args, *common, cwd=src)
    assert proc.returncode == 0, proc.stderr
    shutil.rmtree(src)
    (tmp_path / "elsewhere").mkdir()
    elsewhere = tmp_path / "elsewhere"
    proc = cli("test", str(run), "--json", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["samples"] == 360
    image = elsewhere / "x.png"
    from PIL import Image

    Image.new("L", (8, 8), color=100).save(image)
    proc = cli("predict", str(run), str(image), cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(str(image))
    proc = cli("train", "--resume", str(run), "--max-steps", "3", *common, cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    assert "3 steps" in proc.stdout
