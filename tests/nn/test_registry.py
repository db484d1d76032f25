"""Every block and network, generated from one list: build, forward, backward, state_dict.

Adding a public module to torchstyle.nn.layers or torchstyle.nn.networks without a case here
fails ``test_every_public_module_has_a_case``.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor, nn

from torchstyle.nn import layers, networks
from torchstyle.nn.layers import (
    AdaptiveInstanceNorm,
    ConvBlock,
    ResnetBlock,
    SelfAttention,
    SNConv2d,
    SNLinear,
)
from torchstyle.nn.networks import (
    DCGANDiscriminator,
    DCGANGenerator,
    PatchGANDiscriminator,
    ResNetClassifier,
    ResnetGenerator,
    SimpleNetwork,
    Vgg19Features,
)


@dataclass(frozen=True)
class Case:
    """A module to build, the inputs it takes and the output shapes it must give."""

    name: str
    build: Callable[[], nn.Module]
    inputs: Callable[[], tuple[Tensor, ...]]
    shapes: tuple[tuple[int, ...], ...]


def _images(*shape: int) -> Callable[[], tuple[Tensor, ...]]:
    return lambda: (torch.randn(*shape),)


def _attention_with_gamma() -> SelfAttention:
    layer = SelfAttention(in_channels=16)
    # gamma starts at 0 (identity); a non-zero gamma lets the weights show in the output.
    with torch.no_grad():
        layer.gamma.fill_(0.7)
    return layer


def _vgg_random() -> Vgg19Features:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return Vgg19Features(requires_grad=False)


CASES: list[Case] = [
    Case(
        "ConvBlock",
        lambda: ConvBlock(in_channels=3, out_channels=8),
        _images(2, 3, 8, 8),
        ((2, 8, 8, 8),),
    ),
    Case(
        "ConvBlock-transpose-spectral",
        lambda: ConvBlock(
            in_channels=4,
            out_channels=6,
            kernel_size=4,
            stride=2,
            padding=1,
            order="nac",
            transpose=True,
            spectral=True,
        ),
        _images(2, 4, 5, 5),
        ((2, 6, 10, 10),),
    ),
    Case(
        "ResnetBlock",
        lambda: ResnetBlock(dim=8, use_dropout=True),
        _images(2, 8, 6, 6),
        ((2, 8, 6, 6),),
    ),
    Case("SelfAttention", _attention_with_gamma, _images(2, 16, 5, 4), ((2, 16, 5, 4),)),
    Case(
        "AdaptiveInstanceNorm",
        lambda: AdaptiveInstanceNorm(),
        lambda: (torch.randn(2, 5, 6, 6), torch.randn(2, 5, 3, 4) * 2 + 1),
        ((2, 5, 6, 6),),
    ),
    Case("SNConv2d", lambda: SNConv2d(3, 5, 3, padding=1), _images(2, 3, 6, 6), ((2, 5, 6, 6),)),
    Case("SNLinear", lambda: SNLinear(7, 4), _images(3, 7), ((3, 4),)),
    Case(
        "SimpleNetwork",
        lambda: SimpleNetwork(in_channels=3, dim=8, num_resnet_blocks=2),
        _images(2, 3, 8, 8),
        ((2, 8, 8, 8),),
    ),
    Case(
        "ResnetGenerator-16px",
        lambda: ResnetGenerator(in_channels=3, out_channels=2, ngf=8, n_blocks=2),
        _images(2, 3, 16, 16),
        ((2, 2, 16, 16),),
    ),
    Case(
        "ResnetGenerator-32px-batchnorm-dropout",
        lambda: ResnetGenerator(
            in_channels=1,
            out_channels=3,
            ngf=4,
            n_blocks=1,
            norm_layer=nn.BatchNorm2d,
            use_dropout=True,
            padding_type="zero",
        ),
        _images(2, 1, 32, 32),
        ((2, 3, 32, 32),),
    ),
    Case(
        "DCGANGenerator-32",
        lambda: DCGANGenerator(latent_dim=16, image_size=32, base_width=8),
        _images(2, 16),
        ((2, 3, 32, 32),),
    ),
    Case(
        "DCGANGenerator-64",
        lambda: DCGANGenerator(latent_dim=8, out_channels=1, image_size=64, base_width=4),
        _images(2, 8, 1, 1),
        ((2, 1, 64, 64),),
    ),
    Case(
        "DCGANDiscriminator-32",
        lambda: DCGANDiscriminator(image_size=32, base_width=8),
        _images(2, 3, 32, 32),
        ((2,),),
    ),
    Case(
        "DCGANDiscriminator-64-spectral",
        lambda: DCGANDiscriminator(in_channels=1, image_size=64, base_width=4, spectral=True),
        _images(2, 1, 64, 64),
        ((2,),),
    ),
    Case(
        "PatchGANDiscriminator",
        lambda: PatchGANDiscriminator(in_channels=3, ndf=8),
        _images(2, 3, 32, 32),
        ((2, 1, 2, 2),),
    ),
    Case(
        "PatchGANDiscriminator-instancenorm-spectral",
        lambda: PatchGANDiscriminator(
            in_channels=6, ndf=4, n_layers=2, norm_layer=nn.InstanceNorm2d, spectral=True
        ),
        _images(2, 6, 32, 32),
        ((2, 1, 6, 6),),
    ),
    Case(
        "Vgg19Features",
        _vgg_random,
        _images(1, 3, 32, 32),
        ((1, 128, 16, 16), (1, 512, 4, 4), (1, 512, 2, 2)),
    ),
    Case(
        "ResNetClassifier-digits",
        lambda: ResNetClassifier(in_channels=1, num_classes=10, image_size=8),
        _images(4, 1, 8, 8),
        ((4, 10),),
    ),
    Case(
        "ResNetClassifier-32px-3stages",
        lambda: ResNetClassifier(image_size=32, width=8, num_blocks=(1, 1, 1), dropout=0.2),
        _images(3, 3, 32, 32),
        ((3, 10),),
    ),
]


def _as_list(out: Tensor | list[Tensor]) -> list[Tensor]:
    return list(out) if isinstance(out, list | tuple) else [out]


def _run(module: nn.Module, inputs: tuple[Tensor, ...]) -> list[Tensor]:
    return _as_list(module(*inputs))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_forward_backward_gives_finite_gradients(case: Case) -> None:
    torch.manual_seed(0)
    module = case.build().train()
    # The case name starts with the class it covers; keep them honest.
    cls_name = case.name.split("-")[0]
    assert isinstance(module, getattr(layers, cls_name, None) or getattr(networks, cls_name))
    inputs = tuple(t.requires_grad_(True) for t in case.inputs())

    outputs = _run(module, inputs)

    assert [tuple(o.shape) for o in outputs] == [tuple(s) for s in case.shapes]
    assert all(torch.isfinite(o).all() for o in outputs)
    # Squares, so the gradient depends on the outputs and is not a constant.
    sum(o.square().mean() for o in outputs).backward()
    trainable = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    for name, param in trainable:
        assert param.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{name} has a non-finite gradient"
    if trainable:
        assert any(p.grad.abs().sum() > 0 for _, p in trainable), "all gradients are zero"
    for t in inputs:
        assert t.grad is not None and torch.isfinite(t.grad).all()
        assert t.grad.abs().sum() > 0, "the output does not depend on the input"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_state_dict_round_trip_reproduces_outputs(case: Case) -> None:
    torch.manual_seed(0)
    original = case.build()
    inputs = case.inputs()
    with torch.no_grad():
        # Training-mode passes move BatchNorm statistics and spectral-norm vectors off their
        # initial values, so the round trip must carry buffers, not only parameters.
        original.train()
        for _ in range(2):
            _run(original, inputs)
        original.eval()
        expected = _run(original, inputs)

        torch.manual_seed(1)
        fresh = case.build().eval()
        before = _run(fresh, inputs)
        has_state = len(original.state_dict()) > 0
        if has_state:
            assert not all(torch.equal(a, b) for a, b in zip(before, expected, strict=True)), (
                "a differently seeded instance gives the same output; the test would prove nothing"
            )
        fresh.load_state_dict(original.state_dict())
        after = _run(fresh, inputs)

    for a, b in zip(after, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def _public_module_classes() -> set[str]:
    names = set()
    for source in (layers, networks):
        for name in source.__all__:
            obj = getattr(source, name)
            if inspect.isclass(obj) and issubclass(obj, nn.Module):
                names.add(name)
    return names


def test_every_public_module_has_a_case() -> None:
    covered = {case.name.split("-")[0] for case in CASES}
    missing = _public_module_classes() - covered
    assert not missing, f"add registry cases for {sorted(missing)}"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_cuda_matches_cpu(case: Case) -> None:
    torch.manual_seed(0)
    module = case.build().eval()
    inputs = case.inputs()
    with torch.no_grad():
        expected = _run(module, inputs)
    module = module.cuda()
    gpu_inputs = tuple(t.cuda().requires_grad_(True) for t in inputs)
    outputs = _run(module, gpu_inputs)
    for out, ref in zip(outputs, expected, strict=True):
        assert out.device.type == "cuda"
        # cuDNN may use TF32 for convolutions, so compare at that precision.
        scale = ref.abs().max().item() + 1e-6
        torch.testing.assert_close(out.detach().cpu(), ref, rtol=2e-2, atol=2e-2 * scale)
    sum(o.square().mean() for o in outputs).backward()
    for t in gpu_inputs:
        assert t.grad is not None and torch.isfinite(t.grad).all()
