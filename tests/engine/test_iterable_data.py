"""A data function that returns a stream (an IterableDataset) gets a one-line error."""

from __future__ import annotations

import pytest

SOURCE = """
import torch
from torch.utils.data import IterableDataset, TensorDataset


class Stream(IterableDataset):
    def __iter__(self):
        for i in range(32):
            yield torch.zeros(1, 8, 8), i % 2


def splits():
    return {"train": Stream(), "test": TensorDataset(torch.zeros(4, 1, 8, 8), torch.arange(4) % 2)}
"""


@pytest.mark.slow
def test_a_stream_is_refused_with_the_fix_and_nothing_is_written(tmp_path, cli):
    (tmp_path / "streams.py").write_text(SOURCE)
    run_dir = tmp_path / "run"
    proc = cli(
        "train", "--model", "mlp", "--data", "streams.py:splits", "--epochs", "1",
        "--run-dir", str(run_dir), "--no-progress", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    error = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(error) == 1 and "Traceback" not in proc.stderr
    assert "Stream without a length" in error[0] and "map-style Dataset" in error[0]
    assert not run_dir.exists()
