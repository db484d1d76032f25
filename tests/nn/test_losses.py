"""Losses against hand-computed values."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from torchstyle.nn import (
    GAN_MODES,
    CustomLoss,
    GANLoss,
    PerceptualLoss,
    Vgg19Features,
    gradient_penalty,
)
from torchstyle.nn.errors import ArgumentError

# ---------------------------------------------------------------- CustomLoss


def test_custom_loss_is_mean_squared_error() -> None:
    x = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    y = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    assert CustomLoss()(x, y).item() == pytest.approx((1 + 4 + 4 + 4) / 4)
    assert CustomLoss()(x, x).item() == 0.0


# ---------------------------------------------------------------- GANLoss

PRED = [-1.0, 0.5, 3.0]


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def _softplus(v: float) -> float:
    return math.log1p(math.exp(v))


# (mode, D on real, D on fake, G), each computed by hand from PRED.
EXPECTED = {
    # BCE with logits: -log(sigmoid(x)) = softplus(-x); -log(1 - sigmoid(x)) = softplus(x).
    "vanilla": (
        _mean(_softplus(-p) for p in PRED),
        _mean(_softplus(p) for p in PRED),
        _mean(_softplus(-p) for p in PRED),
    ),
    "lsgan": ((4 + 0.25 + 4) / 3, (1 + 0.25 + 9) / 3, (4 + 0.25 + 4) / 3),
    # relu(1 - x) = [2, 0.5, 0]; relu(1 + x) = [0, 1.5, 4]; -mean(x) = -2.5 / 3.
    "hinge": (2.5 / 3, 5.5 / 3, -2.5 / 3),
    "wgan": (-2.5 / 3, 2.5 / 3, -2.5 / 3),
}


def test_expected_table_covers_every_mode() -> None:
    assert set(EXPECTED) == set(GAN_MODES)


@pytest.mark.parametrize("mode", sorted(EXPECTED))
def test_gan_loss_matches_hand_computed_values(mode: str) -> None:
    d_real, d_fake, g = EXPECTED[mode]
    loss = GANLoss(mode)
    pred = torch.tensor(PRED)
    assert loss(pred, True).item() == pytest.approx(d_real, rel=1e-6)
    assert loss(pred, False).item() == pytest.approx(d_fake, rel=1e-6)
    assert loss(pred, True, for_discriminator=False).item() == pytest.approx(g, rel=1e-6)


@pytest.mark.parametrize("mode", GAN_MODES)
def test_gan_loss_works_on_patch_maps_and_has_gradients(mode: str) -> None:
    torch.manual_seed(0)
    pred = torch.randn(2, 1, 3, 3, requires_grad=True)
    loss = GANLoss(mode)(pred, True)
    assert loss.dim() == 0
    loss.backward()
    # Pushing D(real) up must lower the loss: the gradient is negative on average.
    assert pred.grad.mean() < 0


def test_gan_loss_rejects_unknown_mode_and_fake_target_for_generator() -> None:
    with pytest.raises(ArgumentError, match="unknown GAN mode"):
        GANLoss("minimax")
    with pytest.raises(ArgumentError, match="target_is_real=True"):
        GANLoss("hinge")(torch.zeros(2), False, for_discriminator=False)


# ---------------------------------------------------------------- gradient_penalty


def _linear_critic(weight: torch.Tensor):
    return lambda x: x.flatten(1) @ weight  # (B, D) @ (D,) -> (B,)


def test_gradient_penalty_is_zero_for_a_unit_norm_linear_critic() -> None:
    torch.manual_seed(0)
    w = torch.randn(3 * 4 * 4)
    w = w / w.norm()
    real, fake = torch.randn(6, 3, 4, 4), torch.randn(6, 3, 4, 4)
    # Per-sample norms: a norm over the whole batch would give sqrt(6) and a penalty of ~21.
    assert gradient_penalty(_linear_critic(w), real, fake).item() == pytest.approx(0.0, abs=1e-8)


@pytest.mark.parametrize(("norm", "weight"), [(2.0, 10.0), (3.0, 1.0), (0.5, 10.0)])
def test_gradient_penalty_of_a_linear_critic_is_known(norm: float, weight: float) -> None:
    torch.manual_seed(0)
    w = torch.randn(12)
    w = w / w.norm() * norm
    real, fake = torch.randn(4, 12), torch.randn(4, 12)
    penalty = gradient_penalty(_linear_critic(w), real, fake, weight=weight)
    assert penalty.item() == pytest.approx(weight * (norm - 1.0) ** 2, rel=1e-5)


def test_gradient_penalty_trains_the_critic_but_not_the_generator() -> None:
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 1))
    generator_param = torch.ones(1, requires_grad=True)
    real = torch.randn(4, 3, 2, 2)
    fake = torch.randn(4, 3, 2, 2) * generator_param
    penalty = gradient_penalty(critic, real, fake)
    assert penalty.item() > 0
    penalty.backward()  # needs create_graph=True to reach the critic's weights
    assert critic[1].weight.grad is not None and critic[1].weight.grad.abs().sum() > 0
    assert generator_param.grad is None


def test_gradient_penalty_interpolates_between_real_and_fake() -> None:
    seen = []

    def critic(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.detach())
        return x.flatten(1).sum(dim=1)

    real, fake = torch.zeros(64, 2), torch.ones(64, 2)
    gradient_penalty(critic, real, fake)
    mix = seen[0]
    # x = alpha * real + (1 - alpha) * fake with one alpha per sample, uniform in [0, 1).
    assert (mix >= 0).all() and (mix <= 1).all()
    torch.testing.assert_close(mix[:, 0], mix[:, 1])
    assert mix[:, 0].std() > 0.1


# ---------------------------------------------------------------- PerceptualLoss


@pytest.fixture
def perceptual(vgg_features: Vgg19Features) -> PerceptualLoss:
    return PerceptualLoss(features=vgg_features)


def test_perceptual_loss_is_zero_for_identical_inputs(perceptual: PerceptualLoss) -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert perceptual(x, x.clone()).item() == 0.0


def test_perceptual_loss_is_positive_for_different_inputs(perceptual: PerceptualLoss) -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1)
    assert perceptual(x, y).item() > 0


def test_perceptual_loss_equals_the_weighted_feature_distances(
    vgg_features: Vgg19Features,
) -> None:
    torch.manual_seed(0)
    x, y = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    weights = (0.5, 2.0, 0.0)
    loss = PerceptualLoss(
        features=vgg_features, layer_weights=weights, criterion=nn.MSELoss, input_range="[0,1]"
    )
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    fx, fy = vgg_features((x - mean) / std), vgg_features((y - mean) / std)
    expected = sum(
        w * nn.functional.mse_loss(a, b) for w, a, b in zip(weights, fx, fy, strict=True)
    )
    torch.testing.assert_close(loss(x, y), expected)


def test_perceptual_loss_input_ranges_agree(vgg_features: Vgg19Features) -> None:
    torch.manual_seed(0)
    x, y = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    signed = PerceptualLoss(features=vgg_features, input_range="[-1,1]")(x, y)
    unit = PerceptualLoss(features=vgg_features, input_range="[0,1]")((x + 1) / 2, (y + 1) / 2)
    torch.testing.assert_close(signed, unit)
    wrong = PerceptualLoss(features=vgg_features, input_range="[0,1]")(x, y)
    assert not torch.allclose(signed, wrong)


def test_perceptual_loss_repeats_grayscale(perceptual: PerceptualLoss) -> None:
    torch.manual_seed(0)
    x, y = torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32)
    torch.testing.assert_close(
        perceptual(x, y), perceptual(x.repeat(1, 3, 1, 1), y.repeat(1, 3, 1, 1))
    )


def test_perceptual_loss_gradient_reaches_input_only(perceptual: PerceptualLoss) -> None:
    torch.manual_seed(0)
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    y = torch.rand(1, 3, 32, 32, requires_grad=True)
    perceptual(x, y).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert y.grad is None  # target features are computed without grad
    assert all(p.grad is None for p in perceptual.features.parameters())


def test_perceptual_loss_state_dict_holds_no_constants(perceptual: PerceptualLoss) -> None:
    keys = perceptual.state_dict().keys()
    assert "mean" not in keys and "std" not in keys
    assert all(k.startswith("features.") for k in keys)


def test_perceptual_loss_builds_vgg_when_not_given(no_vgg_cache) -> None:
    with pytest.warns(UserWarning, match="RANDOM"):
        loss = PerceptualLoss()
    assert isinstance(loss.features, Vgg19Features)


def test_perceptual_loss_rejects_bad_arguments(vgg_features: Vgg19Features) -> None:
    with pytest.raises(ArgumentError, match="input_range"):
        PerceptualLoss(features=vgg_features, input_range="0-255")
    with pytest.raises(ArgumentError, match="layer_weights"):
        PerceptualLoss(features=vgg_features, layer_weights=(1.0, 1.0))
    with pytest.raises(ArgumentError, match="images"):
        PerceptualLoss(features=vgg_features)(torch.rand(1, 2, 8, 8), torch.rand(1, 2, 8, 8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_losses_run_on_cuda(vgg_features: Vgg19Features) -> None:
    torch.manual_seed(0)
    device = torch.device("cuda")
    w = torch.randn(12, device=device)
    w = w / w.norm() * 2.0
    real, fake = torch.randn(4, 12, device=device), torch.randn(4, 12, device=device)
    penalty = gradient_penalty(_linear_critic(w), real, fake)
    assert penalty.device.type == "cuda"
    assert penalty.item() == pytest.approx(10.0, rel=1e-4)
    for mode in GAN_MODES:
        assert GANLoss(mode)(real[:, 0], True).device.type == "cuda"
    x = torch.rand(1, 3, 32, 32)
    y = torch.rand(1, 3, 32, 32)
    cpu_loss = PerceptualLoss(features=vgg_features, input_range="[0,1]")(x, y)
    # A copy, so the session's shared CPU extractor stays on the CPU.
    gpu_loss_module = PerceptualLoss(features=copy.deepcopy(vgg_features), input_range="[0,1]")
    gpu_loss = gpu_loss_module.to(device)(x.to(device), y.to(device))
    assert gpu_loss.item() == pytest.approx(cpu_loss.item(), rel=2e-2)
