"""``--model`` sources: parsing, resolving, argument checks, adaptation to the data, run copies."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from torch import nn

from torchstyle.errors import UserError
from torchstyle.models.adapters import ClassificationAdapter, OwnStepsAdapter, adapt
from torchstyle.models.loading import build_for_data, rebuild_for_run, record_for_object
from torchstyle.models.sources import (
    ModelSource,
    build,
    parse_model_spec,
    rebuild,
    save_copy,
)
from torchstyle.spec import DataSpec

GRAY10 = DataSpec(channels=1, image_size=16, num_classes=10)
RGB3 = DataSpec(channels=3, image_size=16, num_classes=3)

NET_FILE = """
from torch import nn

class Net(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 5, hidden: int = 8):
        super().__init__()
        self.hidden = hidden
        self.body = nn.Sequential(nn.Conv2d(in_channels, hidden, 3, padding=1), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x):
        return self.fc(self.body(x))

class Fixed(nn.Module):
    # takes no data arguments: its first conv and head are replaced
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(4, 1000)

    def forward(self, x):
        return self.head(self.pool(self.conv(x)).flatten(1))

def make_net(width: int = 4):
    return Fixed()

NOT_A_MODEL = 3
"""


@pytest.fixture
def net_file(tmp_path: Path) -> Path:
    path = tmp_path / "user_models" / "mynet.py"
    path.parent.mkdir()
    path.write_text(NET_FILE)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("classifier", ModelSource("registered", "classifier")),
        ("torchvision:resnet18", ModelSource("torchvision", "resnet18")),
        ("timm:resnet18", ModelSource("timm", "resnet18")),
        ("nets/a.py:Net", ModelSource("file", "nets/a.py", "Net")),
        ("a.py:make", ModelSource("file", "a.py", "make")),
        ("pkg.mod:Net", ModelSource("module", "pkg.mod", "Net")),
    ],
)
def test_parse_forms(text, expected):
    source = parse_model_spec(text)
    assert source == expected
    assert source.text == text


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("net.py", "net.py:MyModel"),
        ("a.py:1x", "not a Python name"),
        ("torchvision:", "torchvision:NAME"),
        ("my-pkg:Net", "neither a .py file nor a module"),
    ],
)
def test_parse_errors_name_the_fix(text, needle):
    with pytest.raises(UserError, match=needle):
        parse_model_spec(text)


def test_file_class_gets_the_data_arguments(net_file):
    built = build(parse_model_spec(f"{net_file}:Net"), GRAY10, {"hidden": 6})
    assert built.args == {"in_channels": 1, "num_classes": 10, "hidden": 6}
    assert built.module(torch.zeros(2, 1, 16, 16)).shape == (2, 10)
    assert "in_channels=1 (from the data)" in built.notes


def test_fixed_module_is_adapted_and_the_adaptation_is_reported(net_file):
    built = build(parse_model_spec(f"{net_file}:make_net"), GRAY10, {})
    assert built.module(torch.zeros(2, 1, 16, 16)).shape == (2, 10)
    notes = " | ".join(built.notes)
    assert "conv: 3 -> 1 input channels" in notes
    assert "head: 1000 -> 10 classes" in notes


def test_model_args_are_checked_against_the_signature(net_file):
    with pytest.raises(UserError, match=r"unexpected keyword argument 'width'.*hidden \(int\)"):
        build(parse_model_spec(f"{net_file}:Net"), GRAY10, {"width": 3})
    with pytest.raises(
        UserError, match=r"--model-arg hidden='abc' must be int; it accepts: in_channels \(int\)"
    ):
        build(parse_model_spec(f"{net_file}:Net"), GRAY10, {"hidden": "abc"})


def test_missing_file_class_and_non_module_are_user_errors(net_file, tmp_path):
    with pytest.raises(UserError, match="no such file"):
        build(parse_model_spec(f"{tmp_path}/nope.py:Net"), GRAY10, {})
    with pytest.raises(UserError, match=r"no class or function 'Nett'.*Fixed, Net, make_net"):
        build(parse_model_spec(f"{net_file}:Nett"), GRAY10, {})
    with pytest.raises(UserError, match="no class or function 'NOT_A_MODEL'"):
        build(parse_model_spec(f"{net_file}:NOT_A_MODEL"), GRAY10, {})


def test_torchvision_model_is_adapted_to_gray_digits():
    built = build(parse_model_spec("torchvision:resnet18"), GRAY10, {})
    assert built.module.conv1.in_channels == 1
    assert built.module.fc.out_features == 10
    assert built.module(torch.zeros(2, 1, 16, 16)).shape == (2, 10)
    with pytest.raises(UserError, match="no such classification model"):
        build(parse_model_spec("torchvision:resnet19"), GRAY10, {})


def test_timm_model_is_built_without_download():
    pytest.importorskip("timm")
    built = build(parse_model_spec("timm:resnet18"), GRAY10, {})
    assert built.args == {"in_chans": 1, "num_classes": 10}
    assert built.module(torch.zeros(2, 1, 16, 16)).shape == (2, 10)
    with pytest.raises(UserError, match="no such timm model"):
        build(parse_model_spec("timm:resnet_does_not_exist"), GRAY10, {})


def test_missing_timm_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "timm", None)  # import timm now raises ModuleNotFoundError
    with pytest.raises(UserError, match=r"pip install 'torchstyle\[timm\]'"):
        build(parse_model_spec("timm:resnet18"), GRAY10, {})


def test_output_of_wrong_shape_is_refused(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("from torch import nn\ndef make():\n    return nn.Flatten()\n")
    with pytest.raises(UserError, match=r"returns \(2, 256\).*\(2, 10\)"):
        build(parse_model_spec(f"{path}:make"), GRAY10, {})


def test_run_copy_is_used_after_the_file_is_deleted(net_file, tmp_path, caplog):
    made = build_for_data(parse_model_spec(f"{net_file}:Net"), {"hidden": 4}, RGB3)
    assert made.adapter == "classification"
    run_dir = tmp_path / "run"
    rec = save_copy(made.record, run_dir)
    assert (run_dir / rec["copy"]).read_text() == NET_FILE
    net_file.unlink()
    with caplog.at_level(logging.WARNING):
        again = rebuild_for_run({"name": "x", "source": rec}, RGB3, run_dir)
    assert "no longer exists; using the run's copy" in caplog.text
    assert isinstance(again, ClassificationAdapter)
    again.load_state_dict(made.model.state_dict())  # same architecture, same keys
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(again.eval()(x), made.model.eval()(x))


def test_changed_file_warns_and_loads_the_copy(net_file, tmp_path, caplog):
    made = build_for_data(parse_model_spec(f"{net_file}:Net"), {}, RGB3)
    rec = save_copy(made.record, tmp_path / "run")
    net_file.write_text(NET_FILE.replace("hidden: int = 8", "hidden: int = 9"))
    with caplog.at_level(logging.WARNING):
        built = rebuild(rec, RGB3, tmp_path / "run")
    assert "changed since training" in caplog.text
    assert built.module.fc.in_features == 8


def test_instance_records_arguments_read_back(net_file):
    made = build_for_data(parse_model_spec(f"{net_file}:Net"), {"hidden": 5}, RGB3)
    _module, rec = record_for_object(made.model.net, None)
    assert rec["kind"] == "file" and rec["attr"] == "Net"
    assert rec["args"]["hidden"] == 5


def test_instance_of_main_or_nested_class_is_not_rebuildable():
    class Local(nn.Module):
        def forward(self, x):
            return x

    _, rec = record_for_object(Local(), None)
    assert rec["kind"] == "python"
    with pytest.raises(UserError, match=r"move the class into a \.py file"):
        rebuild_for_run({"name": "x", "source": rec}, RGB3, Path("."))


def test_adapters_pick_by_what_the_module_has():
    plain, name = adapt(nn.Linear(4, 2))
    assert isinstance(plain, ClassificationAdapter) and name == "classification"

    class OwnSteps(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Linear(4, 1)

        def training_step(self, batch):
            return self.w(batch[0]).pow(2).mean()

        def evaluation_step(self, batch):
            return self.w(batch[0]).pow(2).squeeze(1)

    own, name = adapt(OwnSteps())
    assert isinstance(own, OwnStepsAdapter) and name == "own-steps"
    out = own.training_step((torch.ones(3, 4),), "model")
    assert set(out) == {"loss"} and out["loss"].ndim == 0
    assert own.evaluation_step((torch.ones(3, 4),))["loss"].shape == (3,)

    class Half(nn.Module):
        def training_step(self, batch):
            return batch

    with pytest.raises(UserError, match="defines training_step but not evaluation_step"):
        adapt(Half())


def test_classification_adapter_steps_and_frozen_parameters():
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    model, _ = adapt(net)
    net[1].weight.requires_grad_(False)
    (opt,) = model.configure_optimizers("sgd", 0.1).values()
    optimized = {id(p) for g in opt.param_groups for p in g["params"]}
    assert id(net[1].weight) not in optimized and id(net[3].weight) in optimized
    x, y = torch.randn(5, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1])
    out = model.evaluation_step((x, y))
    assert out["loss"].shape == (5,) and out["preds"].shape == (5, 3)
    assert torch.equal(out["target"], y)
    assert model.training_step((x, y), "model")["loss"].requires_grad
