"""``runs`` listing logic on hand-made run folders (no training): fast."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from torchstyle.config import TrainConfig
from torchstyle.errors import UserError
from torchstyle.experiments.runs import list_runs
from torchstyle.experiments.status import write_status


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _run(root, name, *, status=None, **flags):
    run = root / name
    run.mkdir(parents=True)
    config = {**TrainConfig(model="mlp").to_dict(), **flags}
    (run / "config.json").write_text(json.dumps(config))
    if status is not None:
        write_status(run, {"version": 1, "step": 40, "epoch": 2, **status})
    return run


@pytest.fixture
def folders(tmp_path):
    host = os.uname().nodename
    best = {"metric": "val/accuracy", "epoch": 2}
    _run(tmp_path, "a", lr=0.1, status={"state": "finished", "best": {**best, "value": 0.9}})
    _run(tmp_path, "b", lr=0.01, status={"state": "finished", "best": {**best, "value": 0.95}})
    dead = {"state": "running", "pid": _dead_pid(), "host": host, "proc_start": None}
    _run(tmp_path, "group/c", lr=0.01, model_args={"hidden": [4]}, status=dead)
    elsewhere = {"state": "running", "pid": 1, "host": "other-host", "proc_start": None}
    _run(tmp_path, "group/d", lr=0.01, status=elsewhere)
    _run(tmp_path, "group/e", lr=0.01)
    (tmp_path / "not-a-run").mkdir()
    return tmp_path


def test_rows_statuses_and_differing_flags(folders):
    rows = {r["name"]: r for r in list_runs([str(folders)])}
    assert sorted(rows) == ["a", "b", "group/c", "group/d", "group/e"]
    assert rows["group/c"]["status"] == "killed at step 40"
    assert rows["group/c"]["state"] == "interrupted"
    assert rows["group/d"]["status"] == "running (pid 1 on other-host)"
    assert rows["group/e"]["status"] == "unknown (no status.json)"
    assert rows["a"]["flags"] == {"lr": 0.1, "model_args.hidden": None}
    assert rows["group/c"]["flags"] == {"lr": 0.01, "model_args.hidden": [4]}


def test_sort_and_filter(folders):
    names = [r["name"] for r in list_runs([str(folders)], sort="-best")]
    assert names[:2] == ["b", "a"]  # runs without a best value go last
    names = [r["name"] for r in list_runs([str(folders)], sort="best")]
    assert names[:2] == ["a", "b"]
    names = [r["name"] for r in list_runs([str(folders)], filters=["lr=0.01", "status!=finished"])]
    assert names == ["group/c", "group/d", "group/e"]
    names = [r["name"] for r in list_runs([str(folders)], filters=["model_args.hidden=[4]"])]
    assert names == ["group/c"]
    with pytest.raises(UserError, match="does not parse"):
        list_runs([str(folders)], filters=["lr"])
    with pytest.raises(UserError, match="no column or flag"):
        list_runs([str(folders)], sort="speed")
    with pytest.raises(UserError, match="no such folder"):
        list_runs([str(folders / "missing")])


def test_a_broken_config_is_named(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.json").write_text("{not json")
    with pytest.raises(UserError, match=r"r/config.json does not parse"):
        list_runs([str(tmp_path)])


def test_sweep_spec_helpers():
    from torchstyle.experiments.search import command_line, decode_params, parse_spec

    spec = parse_spec(
        {
            "fixed": {"epochs": 4, "model_args": {"dropout": 0.1}},
            "pruner": {"type": "hyperband"},
            "space": {"model_args.hidden": {"type": "categorical", "choices": [[8], [16, 16]]}},
        },
        "s.toml",
    )
    assert spec.fixed == {"epochs": 4, "model_args.dropout": 0.1}
    assert spec.pruner["max_epochs"] == 4
    params = decode_params(spec, {"model_args.hidden": "[16, 16]"})
    assert params == {"model_args.hidden": [16, 16]}
    line = command_line(spec, {"model_args.hidden": "[16, 16]"})
    assert (
        line == "torchstyle train --epochs 4 --model-arg dropout=0.1 --model-arg 'hidden=[16, 16]'"
    )


def test_running_names_the_run_folder_lock_holder(tmp_path):
    host = os.uname().nodename
    run = _run(tmp_path, "r", status={"state": "running", "pid": _dead_pid(), "host": host})
    (run / ".lock").write_text(json.dumps({"pid": os.getpid(), "host": host, "since": "now"}))
    (row,) = list_runs([str(run)])
    assert row["status"] == f"running (pid {os.getpid()} on {host})"
    (run / ".lock").write_text(json.dumps({"pid": _dead_pid(), "host": host}))
    (row,) = list_runs([str(run)])
    assert row["status"] == "killed at step 40"


def test_a_long_error_is_cut_in_the_table_and_whole_in_json(tmp_path):
    from torchstyle.experiments.runs import STATUS_WIDTH, format_json, format_table

    error = "could not write " + "x/" * 200 + "latest.pt: No space left on device"
    _run(tmp_path, "f", status={"state": "failed", "error": error})
    rows = list_runs([str(tmp_path)])
    table = format_table(rows)
    row = table.splitlines()[1]
    status = row[row.index("failed: ") : row.index("...") + 3]
    assert status.startswith("failed: could not write x/x/") and error not in table
    assert len(status) == STATUS_WIDTH, row
    assert json.loads(format_json(rows))[0]["error"] == error
