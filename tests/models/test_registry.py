"""Every registered model, generated from the registry: builds, steps, evaluates, round-trips."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch

from torchstyle import models
from torchstyle.engine.metrics import METRIC_INPUTS
from torchstyle.errors import UserError
from torchstyle.models import (
    UnknownModelError,
    accepted_arguments,
    create_model,
    get_model_class,
    list_models,
)
from torchstyle.models.arguments import check_contract
from torchstyle.models.base import OPTIMIZERS, StepModule, TorchstyleModel
from torchstyle.spec import DataSpec

# Small widths keep every model fast; a model not listed here is built with its defaults.
TINY = {
    "classifier": {"width": 8},
    "mlp": {"hidden": [16]},
    "dcgan": {"base_width": 8, "latent_dim": 8},
    "pix2pix": {"ngf": 8, "ndf": 8, "n_blocks": 1},
    "gpt": {"dim": 16, "depth": 1, "num_heads": 2},
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
    if type(model).data_layout == "tokens":  # next-token prediction on a sequence
        hp = model.hparams()
        seq = torch.randint(hp["vocab_size"], (BATCH, hp["context"] + 1), generator=g)
        return seq[:, :-1], seq[:, 1:]
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
    batch = _batch(model)
    for phase, opt in model.configure_optimizers().items():  # trained away from its init
        opt.zero_grad(set_to_none=True)
        StepModule(model)(batch, phase)["loss"].backward()  # moves BN statistics too
        opt.step()
    torch.manual_seed(123)  # another init than the model's
    clone = create_model(name, **model.hparams())
    model.eval()
    clone.eval()
    differs = [
        not torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), clone.state_dict().values(), strict=True)
    ]
    assert any(differs), "the clone must start elsewhere, or loading proves nothing"
    clone.load_state_dict(model.state_dict())
    torch.manual_seed(5)
    a = StepModule(model)(batch)
    torch.manual_seed(5)
    b = StepModule(clone)(batch)
    for key in a:
        torch.testing.assert_close(a[key], b[key])


# ------------------------------------------------------------------- derived registry entries
def _registered_in_source() -> set[str]:
    """Names passed to @register_model in the package's files, read from the source."""
    package = Path(models.__file__).parent
    names = set()
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "register_model"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                names.add(node.args[0].value)
    return names


def test_every_model_in_the_package_is_found_by_scanning():
    assert _registered_in_source() <= set(list_models())
    assert {"classifier", "dcgan", "mlp", "pix2pix"} <= _registered_in_source()


@pytest.mark.parametrize("name", list_models())
def test_hparams_are_the_constructor_arguments(name):
    cls = get_model_class(name)
    model = _build(name)
    hparams = model.hparams()
    assert set(hparams) == set(accepted_arguments(cls))  # every argument, none kept by hand
    for key, value in TINY.get(name, {}).items():
        assert hparams[key] == value
    assert json.loads(json.dumps(hparams)) == hparams  # JSON-safe, as checkpoints need


def test_hparams_record_the_outermost_constructor():
    class Wider(get_model_class("mlp")):
        def __init__(self, *, extra: int = 3, **kwargs) -> None:
            super().__init__(hidden=[7], **kwargs)

    model = Wider(extra=5, num_classes=4)
    assert model.hparams() == {"extra": 5, "num_classes": 4}  # what rebuilds a Wider


def test_model_arguments_are_checked_against_the_signature():
    spec = DataSpec(channels=1, image_size=8, num_classes=3)
    with pytest.raises(
        UserError, match=r"--model-arg width='abc' must be int; it accepts: .*width \(int\)"
    ):
        create_model("classifier", spec, width="abc")
    with pytest.raises(UserError, match=r"unexpected keyword argument 'depth'.*num_blocks"):
        create_model("classifier", spec, depth=3)
    with pytest.raises(UserError, match=r"hidden=\[16, 'x'\] must be"):
        create_model("mlp", spec, hidden=[16, "x"])
    with pytest.raises(UserError, match=r"dropout must be in \[0, 1\), got 2"):
        create_model("mlp", spec, dropout=2)
    with pytest.raises(UserError, match=r"model 'dcgan': image_size must be 32 or 64, got 48"):
        create_model("dcgan", image_size=48)
    create_model("mlp", spec, dropout=0, hidden=(4,))  # an int is a fine float, a tuple a list


def test_optimizers_come_from_the_registry():
    model = _build("mlp")
    for name, cls in OPTIMIZERS.items():
        (opt,) = model.configure_optimizers(name, 0.1).values()
        assert isinstance(opt, cls)
    with pytest.raises(UserError, match="unknown optimizer 'lbfgs'; choose from sgd"):
        model.configure_optimizers("lbfgs", 0.1)


@pytest.mark.parametrize("name", list_models())
def test_every_model_keeps_the_constructor_contract(name):
    """Hinted constructor arguments, and a from_spec whose arguments the constructor takes."""
    check_contract(name, get_model_class(name), TorchstyleModel.from_spec.__func__)


def test_a_broken_constructor_contract_is_one_line_naming_the_fix():
    class Unhinted(TorchstyleModel):
        def __init__(
            self, *, width=8, in_channels: int = 1, image_size: int = 8, num_classes: int = 10
        ):
            super().__init__()

    class NoClasses(TorchstyleModel):
        def __init__(self, *, width: int = 8) -> None:
            super().__init__()

    base = TorchstyleModel.from_spec.__func__
    with pytest.raises(
        UserError, match=r"^model 'unhinted' .*width have no type hint; annotate"
    ) as e:
        check_contract("unhinted", Unhinted, base)
    assert "\n" not in str(e.value)
    with pytest.raises(
        UserError,
        match=r"^model 'noclasses' .*unexpected keyword argument 'in_channels'.*override from_spec",
    ):
        check_contract("noclasses", NoClasses, base)

    class Overridden(NoClasses):
        @classmethod
        def from_spec(cls, spec, **kwargs):
            return cls(**kwargs)

    check_contract("overridden", Overridden, base)
