"""Memory estimates, output-file checks and config-file messages (unit level)."""

from __future__ import annotations

import argparse

import pytest
import torch

from torchstyle.config import TrainConfig, add_train_arguments, load_config_file
from torchstyle.engine import memory, rundir
from torchstyle.errors import UserError
from torchstyle.models import create_model
from torchstyle.spec import DataSpec

SPEC = DataSpec(channels=1, image_size=8, num_classes=10)
CPU = torch.device("cpu")


def test_a_model_too_large_is_refused_before_allocating():
    with pytest.raises(UserError, match=r"width=100000: training needs about \d+\.\d GiB"):
        memory.check_model_fits(
            lambda: create_model("classifier", SPEC, width=100000),
            input_shape=(64, 1, 8, 8),
            device=CPU,
            what="--model-arg width=100000",
        )
    memory.check_model_fits(
        lambda: create_model("classifier", SPEC), input_shape=(64, 1, 8, 8), device=CPU, what="x"
    )


def test_the_estimate_counts_parameters_and_activations():
    with torch.device("meta"):
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32))
    params, activations = memory.estimate_training_bytes(model, (16, 1, 8, 8))
    assert params == (64 * 32 + 32) * 4
    assert activations == (16 * 64 + 16 * 32) * 4  # Flatten's and Linear's outputs


def test_an_image_size_too_large_is_refused():
    with pytest.raises(UserError, match="--image-size 100000: one batch of 64 images"):
        memory.check_input_size(image_size=100000, batch_size=64, device=CPU)
    memory.check_input_size(image_size=32, batch_size=64, device=CPU)


@pytest.mark.parametrize("case", ["folder", "missing-parent", "parent-is-file"])
def test_unusable_output_files_are_refused(tmp_path, case):
    (tmp_path / "f").write_text("x")
    path = {
        "folder": tmp_path,
        "missing-parent": tmp_path / "nope" / "out.csv",
        "parent-is-file": tmp_path / "f" / "out.csv",
    }[case]
    with pytest.raises(UserError, match="--output"):
        rundir.check_output_file(path)
    rundir.check_output_file(tmp_path / "out.csv")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("cfg.toml", "batch-size = 8\n", r"batch-size \(did you mean batch_size\?\)"),
        ("cfg.json", '{"epoch": 3}', r"epoch \(did you mean epochs\?\)"),
        ("cfg.yaml", "epochs: 3\n", r"\.yaml is not a config format.*JSON \(\.json\) or TOML"),
        ("cfg.toml", b"\xff\xfe\x00\x01binary", "is not text"),
        ("folder", None, "is a folder"),
    ],
)
def test_config_file_messages(tmp_path, name, content, message):
    path = tmp_path / name
    if content is None:
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(UserError, match=message):
        TrainConfig.from_dict(load_config_file(str(path)), source=str(path))


@pytest.mark.parametrize("seed", [99999999999999999999, -1, 2**63])
def test_seeds_out_of_range_are_refused(seed):
    with pytest.raises(UserError, match="--seed must be an integer from 0 to 2\\*\\*63-1"):
        TrainConfig(seed=seed).validate()
    TrainConfig(seed=2**63 - 1).validate()


def test_help_says_each_default_once():
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    text = parser.format_help()
    assert text.count("(default:") == len(parser._actions) - 2  # all but -h and --config
    for action in parser._actions:
        assert (action.help or "").count("(default:") <= 1, action.help
