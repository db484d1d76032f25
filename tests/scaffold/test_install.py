"""A generated project installs into a new virtual environment, and its README works as written.

The new environment must not see a torchstyle: that is what the project's dependency line
has to find. Installing torch into it would take minutes and gigabytes, so it sees this
environment's packages through a folder of links that leaves torchstyle (and pytest, whose
command the README runs) out; pip counts those packages as installed and resolves the rest:
torchstyle from the source the project names, pytest and pre-commit from the index.
Then every command in the README's code blocks runs, in order, in the project folder.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import HANG_TIMEOUT, REPO
from torchstyle.scaffold.project import write_project
from torchstyle.scaffold.update import init_repository

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("git") is None, reason="the README's pre-commit needs git"),
]

# Left out of the new environment: it must install these itself.
LEFT_OUT = ("torchstyle", "__editable__", "_torchstyle", "pytest", "_pytest", "py.py")
TIMEOUT = HANG_TIMEOUT


def base_packages(tmp_path: Path) -> Path:
    """This environment's packages, less LEFT_OUT, as a folder of links."""
    folder = tmp_path / "base-packages"
    folder.mkdir()
    paths = sysconfig.get_paths()
    for site in dict.fromkeys([paths["purelib"], paths["platlib"]]):
        for entry in Path(site).iterdir():
            name = entry.name.lower()
            if name.startswith(LEFT_OUT) or entry.suffix == ".pth":
                continue
            if not (folder / entry.name).exists():
                (folder / entry.name).symlink_to(entry)
    return folder


def new_venv(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A new virtual environment that sees base_packages(); its bin folder and environment."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=TIMEOUT)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site) / "base_packages.pth").write_text(f"{base_packages(tmp_path)}\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env |= {
        "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        "VIRTUAL_ENV": str(venv),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    return venv / "bin", env


def readme_commands(readme: str) -> list[str]:
    """Every line of the README's fenced code blocks, in order."""
    blocks = re.findall(r"^```\n(.*?)^```", readme, flags=re.MULTILINE | re.DOTALL)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def test_a_generated_project_installs_in_a_new_venv_and_its_readme_runs(tmp_path: Path) -> None:
    root, _ = write_project("digit_net", "classifier", tmp_path / "digit_net")
    init_repository(root, "first")  # what `torchstyle new` does where git is installed
    # Not installed from an index here: the line names this checkout.
    line = re.search(r'"torchstyle @ file://(.+?)"', (root / "pyproject.toml").read_text())
    assert line is not None and Path(line.group(1)).resolve() == REPO
    bin_dir, env = new_venv(tmp_path)
    probe = [str(bin_dir / "python"), "-c", "import torchstyle"]
    assert subprocess.run(probe, env=env, cwd=tmp_path, capture_output=True).returncode != 0

    commands = readme_commands((root / "README.md").read_text())
    assert commands[0] == "pip install -e '.[dev]'"
    assert {"pytest", "torchstyle lint", "pre-commit install"} <= set(commands)
    for command in commands:
        result = subprocess.run(
            shlex.split(command),
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert result.returncode == 0, (
            f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )

    where = subprocess.run(
        [str(bin_dir / "python"), "-c", "import torchstyle; print(torchstyle.__file__)"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(bin_dir.parent), where  # the copy pip installed
    assert (root / "runs" / "first" / "test_metrics.json").is_file()
    assert (root / ".git" / "hooks" / "pre-commit").is_file()
