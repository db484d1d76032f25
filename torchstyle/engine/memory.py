"""Estimates of a run's memory, checked before anything is allocated.

``--image-size 100000`` or ``--model-arg width=100000`` used to end in an allocation failure
(or the OOM killer) after minutes of set-up. The model is first built on PyTorch's ``meta``
device, where tensors have shapes but no storage, and one forward pass there gives the sizes
of the activations. The estimate is rough (about 4x the parameters for weights, gradients and
two optimizer slots, 2x the activations for the forward values kept for backward and their
gradients); it only needs to tell "fits" from "cannot possibly fit".
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from torchstyle.errors import UserError

log = logging.getLogger(__name__)

GiB = 2**30


def available_bytes(device: torch.device) -> int | None:
    """Free memory of ``device`` in bytes (None when it cannot be told)."""
    if device.type == "cuda":
        with contextlib.suppress(RuntimeError):
            return int(torch.cuda.mem_get_info(device)[0])
        return None
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return None


def check_input_size(*, image_size: int, batch_size: int, device: torch.device) -> None:
    """Refuses an image size whose batches alone cannot fit, before the data is resized.

    Raises:
        UserError: One batch of one-channel float images is larger than the free memory.
    """
    free = available_bytes(device)
    need = batch_size * image_size * image_size * 4
    if free is not None and need > free:
        raise UserError(
            f"--image-size {image_size}: one batch of {batch_size} images needs at least "
            f"{need / GiB:.1f} GiB, more than the {free / GiB:.1f} GiB free on {device}; "
            "pass a smaller --image-size or --batch-size"
        )


def estimate_training_bytes(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """Parameter and activation bytes of training ``model`` (built on the meta device).

    Returns:
        Bytes of the parameters, and of one forward pass's outputs (0 when the forward pass
        cannot run on the meta device).
    """
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    total = [0]

    def count(module: nn.Module, inputs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            total[0] += output.numel() * output.element_size()

    leaves = [m for m in model.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.no_grad():
            model(torch.empty(input_shape, device="meta"))
    except Exception as e:  # a forward that needs real values: the parameters still count
        log.debug("no activation estimate: %s", e)
        total[0] = 0
    finally:
        for h in hooks:
            h.remove()
    return params, total[0]


def check_model_fits(
    build: Callable[[], nn.Module],
    *,
    input_shape: tuple[int, ...],
    device: torch.device,
    what: str,
) -> None:
    """Builds the model on the meta device and refuses it when it cannot fit on ``device``.

    Args:
        build: Builds the model (called under ``torch.device("meta")``).
        input_shape: One batch's shape, (batch, channels, height, width).
        device: Where the run trains.
        what: The settings to name in the message (e.g. ``--model-arg width=100000``).

    Raises:
        UserError: The estimate exceeds the free memory of ``device``.
    """
    free = available_bytes(device)
    if free is None:
        return
    try:
        with torch.device("meta"):
            model = build()
    except UserError:
        raise
    except Exception as e:  # a constructor that needs real values: no estimate, build for real
        log.debug("no memory estimate: %s", e)
        return
    params, activations = estimate_training_bytes(model, input_shape)
    need = 4 * params + 2 * activations
    if need > free:
        raise UserError(
            f"{what}: training needs about {need / GiB:.1f} GiB ({params / GiB:.1f} GiB of "
            f"weights, {activations / GiB:.1f} GiB of activations per batch), more than the "
            f"{free / GiB:.1f} GiB free on {device}; use a smaller model, --image-size or "
            "--batch-size"
        )
