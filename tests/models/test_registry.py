"""Every registered model, generated from the registry: builds, steps, evaluates, round-trips."""

from __future__ import annotations

import pytest
import torch

from torchstyle.engine.metrics import METRIC_INPUTS
from torchstyle.models import UnknownModelError, create_model, get_model_class, list_models
from torchstyle.models.base import StepModule, TorchstyleModel
from torchstyle.spec import DataSpec

# Small widths keep every model fast; a model not listed here is built with its defaults.
TINY = {
    "classifier": {"width": 8},
    "mlp": {"hidden": [16]},
    "dcgan": {"base_width": 8, "latent_dim": 8},
    "pix2pix": {"ngf": 8, "ndf": 8, "n_blocks": 1},
}
BATCH = 4


def _build(name: str) -> TorchstyleModel:
    cls = get_model_class(name)
    size = cls.default_image_size or 8
    spec = DataSpec(channels=1, image_size=size, num_classes=3, class_names=("a", "b", "c"))
    torch.manual_seed(0)
    return create_model(name, spec, **TINY.get(name, {}))


def _batch(model: TorchstyleModel) -> tuple[torch.Tensor, torch.Tensor]:
    size = model.hparams().get("image_size", 8)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(BATCH, 1, size, size, generator=g) * 2 - 1
    if type(model).data_layout == "paired":
        return x, -x
    return x, torch.randint(3, (BATCH,), generator=g)


def test_registry_lists_the_builtin_models():
    assert {"classifier", "dcgan"} <= set(list_models())


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(UnknownModelError, match=r"known models: .*classifier"):
        get_model_class("resnet9000")


@pytest.mark.parametrize("name", list_models())
def test_every_phase_steps_with_finite_gradients(name):
    model = _build(name)
    batch = _batch(model)
    step = StepModule(model)
    optimizers = model.configure_optimizers()
    assert optimizers, "a model needs at least one optimizer"
    for phase, opt in optimizers.items():
        opt.zero_grad(set_to_none=True)
        out = step(batch, phase)
        loss = out["loss"]
        assert loss.ndim == 0 and torch.isfinite(loss), (phase, loss)
        loss.backward()
        params = [p for group in opt.param_groups for p in group["params"]]
        grads = [p.grad for p in params if p.grad is not None]
        assert grads, f"phase {phase} gives its optimizer no gradient"
        assert all(torch.isfinite(g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads)
        opt.step()


@pytest.mark.parametrize("name", list_models())
def test_evaluation_values_are_per_sample(name):
    model = _build(name).eval()
    out = StepModule(model)(_batch(model))
    assert out
    for key, value in out.items():
        if key == "preds":  # logits for the classification metrics
            assert value.shape == (BATCH, model.hparams()["num_classes"]), value.shape
        else:  # per-sample values, and the labels the metrics compare with
            assert value.shape == (BATCH,), (key, value.shape)
        assert torch.isfinite(value.float()).all()
    if "preds" in out or "target" in out:
        assert set(METRIC_INPUTS) <= set(out), "preds and target come together"


@pytest.mark.parametrize("name", list_models())
def test_state_dict_round_trip_through_hparams(name):
    model = _build(name)
    model.configure_optimizers()
    batch = _batch(model)
    for phase in model.configure_optimizers():
        StepModule(model)(batch, phase)["loss"].backward()  # moves BN statistics too
    clone = create_model(name, **model.hparams())
    clone.load_state_dict(model.state_dict())
    model.eval()
    clone.eval()
    torch.manual_seed(5)
    a = StepModule(model)(batch)
    torch.manual_seed(5)
    b = StepModule(clone)(batch)
    for key in a:
        torch.testing.assert_close(a[key], b[key])
