"""The run records what bit-identical reruns need, and warns when a resume or a rerun with the
same --seed computes with other CPU threads, another device or other library versions."""

from __future__ import annotations

import json
import logging

import torch

from torchstyle.engine import rundir


def test_a_rerun_with_other_cpu_threads_is_warned_about(tmp_path, caplog):
    threads = torch.get_num_threads()
    config = {"seed": 3, "epochs": 1}
    rundir.save_config(config, tmp_path)
    recorded = json.loads((tmp_path / "config.json").read_text())["environment"]
    assert recorded["cpu_threads"] == threads and recorded["torch"] == torch.__version__
    with caplog.at_level(logging.WARNING):
        rundir.save_config(config, tmp_path)  # the same environment: nothing to say
    assert not caplog.records
    torch.set_num_threads(threads + 1)
    try:
        with caplog.at_level(logging.WARNING):
            rundir.save_config(config, tmp_path)
    finally:
        torch.set_num_threads(threads)
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert f"cpu threads {threads} -> {threads + 1}" in message and "bit-identical" in message
    caplog.clear()
    torch.set_num_threads(threads + 1)
    try:
        with caplog.at_level(logging.WARNING):  # another seed: another run, nothing compared
            rundir.save_config({**config, "seed": 4}, tmp_path)
    finally:
        torch.set_num_threads(threads)
    assert not caplog.records
