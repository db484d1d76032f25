"""bench/torchfix_recall.py counts TorchFix-style expected findings against torchstyle's.

The fixtures here are written for the test in TorchFix's layout (no TorchFix file is used).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import HANG_TIMEOUT

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "torchfix_recall.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=HANG_TIMEOUT,
    )


def test_missing_checkout_prints_one_line_on_what_to_pass(tmp_path: Path) -> None:
    done = run("--torchfix-repo", str(tmp_path / "nowhere"))
    assert done.returncode == 2
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and "--torchfix-repo PATH" in lines[0]


def test_counts_found_and_missed_sites_with_reasons(tmp_path: Path) -> None:
    checker = tmp_path / "tests" / "fixtures" / "deprecated_symbols" / "checker"
    checker.mkdir(parents=True)
    (checker / "sample.py").write_text(
        "import torch\n"
        "torch.norm(a)\n"
        "torch.made_up_api(a)\n"
        "from functorch import vmap, jacrev\n"
        "x = torch.exp(a) - 1\n"
    )
    (checker / "sample.txt").write_text(
        "2:1 TOR101 Use of deprecated function torch.norm\n"
        "3:1 TOR101 Use of deprecated function torch.made_up_api\n"
        "4:1 TOR103 Import of deprecated function functorch.vmap\n"
        "4:1 TOR103 Import of deprecated function functorch.jacrev\n"
        "5:5 TOR107 Use `torch.special.expm1(x)` instead\n"
    )
    codemod = tmp_path / "tests" / "fixtures" / "deprecated_symbols" / "codemod"
    codemod.mkdir(parents=True)
    (codemod / "ger.in.py").write_text("import torch\ny = torch.ger(a, b)\nz = 1\n")
    (codemod / "ger.out.py").write_text("import torch\ny = torch.outer(a, b)\nz = 1\n")
    done = run("--torchfix-repo", str(tmp_path))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "4 of 5 use sites found (80.0%)" in out
    assert "sample.py:3 TOR101 made_up_api: `made_up_api` is not in torchstyle's" in out
    assert "not claimed: TOR107 (1 sites)" in out
