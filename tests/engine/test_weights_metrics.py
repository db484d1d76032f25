"""--weights, --freeze, the evaluation metrics, and the safetensors export."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from torchstyle.engine.evaluation import evaluate
from torchstyle.engine.metrics import EvaluationMetrics, confusion_image, format_table
from torchstyle.engine.weights import freeze, load_weights, read_weights
from torchstyle.errors import UserError
from torchstyle.models.loading import build_for_data
from torchstyle.models.sources import parse_model_spec
from torchstyle.spec import DataSpec

SPEC10 = DataSpec(channels=1, image_size=16, num_classes=10)
SPEC3 = DataSpec(channels=1, image_size=16, num_classes=3, class_names=("a", "b", "c"))


def _resnet(spec: DataSpec):
    return build_for_data(parse_model_spec("torchvision:resnet18"), {}, spec).model


def test_fine_tuning_replaces_a_head_of_another_size(tmp_path, caplog):
    source = _resnet(SPEC10)
    path = tmp_path / "w.pt"
    torch.save(source.net.state_dict(), path)
    target = _resnet(SPEC3)
    fresh_head = target.net.fc.weight.detach().clone()
    with caplog.at_level(logging.INFO):
        report = load_weights(target, path)
    assert report.replaced_head == ["fc.bias", "fc.weight"]
    assert not report.missing and not report.unexpected
    assert torch.equal(target.net.conv1.weight, source.net.conv1.weight)
    assert torch.equal(target.net.fc.weight, fresh_head)
    assert "new classification head" in caplog.text


def test_prefixes_are_lined_up_and_keys_named(tmp_path):
    source = _resnet(SPEC10)
    state = {f"module.{k}": v for k, v in source.net.state_dict().items()}
    state["module.extra.weight"] = torch.zeros(1)
    del state["module.layer4.1.bn2.bias"]
    path = tmp_path / "ddp.pt"
    torch.save({"state_dict": state}, path)
    target = _resnet(SPEC10)
    report = load_weights(target, path)
    assert report.missing == ["layer4.1.bn2.bias"]
    assert report.unexpected == ["module.extra.weight"]
    assert torch.equal(target.net.layer1[0].conv1.weight, source.net.layer1[0].conv1.weight)


def test_three_channel_weights_fold_into_one_channel(tmp_path):
    rgb = _resnet(DataSpec(channels=3, image_size=16, num_classes=10))
    path = tmp_path / "rgb.pt"
    torch.save(rgb.net.state_dict(), path)
    gray = _resnet(SPEC10)
    report = load_weights(gray, path)
    assert report.adapted == ["conv1.weight"]
    assert torch.allclose(gray.net.conv1.weight, rgb.net.conv1.weight.sum(1, keepdim=True))


def test_bad_weights_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read_weights(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="truncated or not a torch file"):
        read_weights(tmp_path / "junk.pt")
    torch.save({"a.weight": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="no tensor name matches"):
        load_weights(_resnet(SPEC10), tmp_path / "other.pt")
    wide = build_for_data(parse_model_spec("mlp"), {"hidden": [16]}, SPEC10).model
    torch.save(wide.state_dict(), tmp_path / "wide.pt")
    with pytest.raises(UserError, match=r"shapes differ.*net\.1\.weight"):
        load_weights(
            build_for_data(parse_model_spec("mlp"), {"hidden": [8]}, SPEC10).model,
            tmp_path / "wide.pt",
        )


def test_freeze_by_prefix():
    model = _resnet(SPEC10)
    n = freeze(model, ["conv1", "layer1"])
    frozen = {k for k, p in model.net.named_parameters() if not p.requires_grad}
    assert n == len(frozen) and "conv1.weight" in frozen and "layer1.0.bn1.bias" in frozen
    assert model.net.fc.weight.requires_grad and model.net.layer2[0].conv1.weight.requires_grad
    with pytest.raises(UserError, match=r"--freeze backbone.*conv1, fc, layer1"):
        freeze(model, ["backbone"])


def test_classification_metrics_on_known_predictions():
    model = build_for_data(parse_model_spec("mlp"), {}, SPEC3).model
    metrics = EvaluationMetrics.for_model(model, SPEC3, torch.device("cpu"))
    assert metrics is not None
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    preds = torch.eye(3)[torch.tensor([0, 1, 1, 1, 2, 0])]  # 4 of 6 right
    metrics.update({"preds": preds[:4], "target": y[:4]})
    metrics.update({"preds": preds[4:], "target": y[4:]})
    out = metrics.compute()
    assert out["accuracy"] == pytest.approx(4 / 6)
    assert out["accuracy_class/a"] == pytest.approx(0.5)
    assert out["accuracy_class/b"] == pytest.approx(1.0)
    assert out["accuracy_class/c"] == pytest.approx(0.5)
    # macro F1: a: p=1/2 r=1/2, b: p=2/3 r=1, c: p=1 r=1/2
    f1 = [0.5, 0.8, 2 / 3]
    assert out["f1_macro"] == pytest.approx(sum(f1) / 3, abs=1e-6)
    assert "top5" not in out  # fewer than 10 classes
    image = metrics.images["confusion_matrix"]
    assert image.shape[0] == 3 and image.shape[1] == image.shape[2] >= 3 * 32
    assert format_table(out).splitlines()[0].startswith("accuracy: ")


def test_top5_with_ten_classes_and_a_model_s_own_metrics():
    model = build_for_data(parse_model_spec("mlp"), {}, SPEC10).model
    metrics = EvaluationMetrics.for_model(model, SPEC10, torch.device("cpu"))
    logits = torch.arange(10.0).repeat(4, 1)  # top-5 classes: 5..9
    metrics.update({"preds": logits, "target": torch.tensor([9, 5, 4, 0])})
    out = metrics.compute()
    assert out["top5"] == pytest.approx(0.5) and out["accuracy"] == pytest.approx(0.25)

    from torchmetrics.classification import MulticlassRecall

    class Own(type(model)):
        def configure_metrics(self, spec):
            return {"recall": MulticlassRecall(spec.num_classes, average="macro")}

    own = Own(in_channels=1, image_size=16, num_classes=10)
    metrics = EvaluationMetrics.for_model(own, SPEC10, torch.device("cpu"))
    metrics.update({"preds": logits, "target": torch.tensor([9, 5, 4, 0])})
    assert set(metrics.compute()) == {"recall"}


def test_evaluate_joins_averages_and_metrics():
    model = build_for_data(parse_model_spec("mlp"), {}, SPEC3).model
    x = torch.randn(7, 1, 16, 16)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    batches = [(x[:4], y[:4]), (x[4:], y[4:])]
    metrics = EvaluationMetrics.for_model(model, SPEC3, torch.device("cpu"))
    out = evaluate(model, batches, torch.device("cpu"), metrics=metrics)
    with torch.no_grad():
        right = (model.eval()(x).argmax(1) == y).double().mean().item()
    assert out["accuracy"] == pytest.approx(right, abs=1e-9)
    assert {"loss", "f1_macro", "accuracy_class/a"} <= set(out)
    assert "preds" not in out and "target" not in out


def test_confusion_image_is_row_normalised():
    image = confusion_image(torch.tensor([[3, 1], [0, 2]]))
    cell = image.shape[1] // 2
    assert torch.allclose(image[:, 0, 0], torch.tensor([0.03, 0.19, 0.42]) * 0.75 + 0.25)
    assert torch.allclose(image[:, cell, 0], torch.ones(3))  # no true 1 predicted as 0


def test_safetensors_export_reads_back_as_weights(tmp_path: Path):
    from torchstyle.engine.checkpoint import CheckpointManager
    from torchstyle.export import export_run, read_export_metadata

    made = build_for_data(parse_model_spec("torchvision:resnet18"), {}, SPEC3)
    run_dir = tmp_path / "run"
    CheckpointManager(run_dir / "checkpoints", keep=0).save(
        {
            "net": made.model.state_dict(),
            "model": {"name": "torchvision:resnet18", "hparams": {}, "source": made.record},
            "spec": SPEC3.to_dict(),
            "epoch": 1,
            "n_iter": 1,
        },
        epoch_end=1,
        is_best=True,
    )
    out = export_run(run_dir, "safetensors", output=tmp_path / "m.safetensors")
    meta = read_export_metadata(out)
    assert meta["model"]["spec"] == "torchvision:resnet18" and meta["spec"]["num_classes"] == 3
    with pytest.raises(UserError, match="already exists"):
        export_run(run_dir, "safetensors", output=out)
    other = build_for_data(parse_model_spec("torchvision:resnet18"), {}, SPEC3).model
    load_weights(other, out)
    x = torch.randn(2, 1, 16, 16)
    assert torch.equal(other.eval()(x), made.model.eval()(x))

    pt2 = export_run(run_dir, "pt2", output=tmp_path / "m.pt2")
    program = torch.export.load(str(pt2)).module()
    assert torch.allclose(program(torch.cat([x, x])), made.model(torch.cat([x, x])), atol=1e-5)


def test_plateau_schedule_steps_on_the_monitored_metric_only():
    from torchstyle.engine.schedulers import build_schedulers, per_step, step_on_metric

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedulers = build_schedulers("plateau", {"model": opt}, total_steps=10)
    assert per_step(schedulers) == {}  # never stepped per optimizer step
    for accuracy in (0.5, 0.6, 0.6, 0.6):  # improves, then two evaluations without
        step_on_metric(schedulers, accuracy, "max")
    assert opt.param_groups[0]["lr"] == pytest.approx(1.0)
    step_on_metric(schedulers, 0.59, "max")  # the third: the rate drops
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
    step_on_metric(schedulers, None, None)  # a model without a monitor: nothing happens
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
