"""BatchNorm whose training statistics cover every process's share of the batch.

``nn.SyncBatchNorm`` serves CUDA and refuses CPU tensors; :class:`DistributedBatchNorm` does
the same on any device with one differentiable all-reduce of (sum, sum of squares, count) per
layer and forward, so a CPU run under torchrun (gloo) normalises as one process would.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


class DistributedBatchNorm(_BatchNorm):
    """BatchNorm over the whole batch of every process; any input rank ``(N, C, ...)``.

    Same parameters and buffers as ``nn.BatchNorm*d`` (a ``state_dict`` moves between them).
    In training, each process's per-channel sum, sum of squares and count are summed across
    processes with a differentiable all-reduce, so the gradient flows through the shared mean
    and variance as it would in one process; the running statistics are updated as BatchNorm
    does (momentum, unbiased variance). In eval mode, or alone, it is plain BatchNorm.

    Keyword args: as ``nn.BatchNorm2d``.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected an input of 2 or more dimensions, got {input.dim()}")

    def forward(self, input: Tensor) -> Tensor:
        """Normalises ``input`` with the statistics of the global batch (in training)."""
        several = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if not (self.training and several):
            return super().forward(input)
        self._check_input_dim(input)
        from torch.distributed.nn.functional import all_reduce

        channels = input.size(1)
        dims = [0, *range(2, input.dim())]
        x = input.double()  # sum of squares minus squared sum: float64 keeps it exact enough
        count = torch.full((1,), input.numel() / channels, dtype=x.dtype, device=x.device)
        stats = all_reduce(torch.cat([x.sum(dims), (x * x).sum(dims), count]))
        n = stats[-1]
        mean = stats[:channels] / n
        var = (stats[channels : 2 * channels] / n - mean * mean).clamp_min(0)
        if self.track_running_stats and self.running_mean is not None:
            self._update_running_stats(mean.detach(), var.detach(), n.detach())
        shape = [1, channels] + [1] * (input.dim() - 2)
        y: Tensor = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        y = y.to(input.dtype)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, var: Tensor, n: Tensor) -> None:
        assert self.running_mean is not None and self.running_var is not None  # tracked
        assert self.num_batches_tracked is not None
        self.num_batches_tracked.add_(1)
        factor = self.momentum
        if factor is None:  # a cumulative moving average, as BatchNorm does
            factor = 1.0 / float(self.num_batches_tracked)
        unbiased = var * n / (n - 1).clamp_min(1)
        self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
        self.running_var.mul_(1 - factor).add_(unbiased.to(self.running_var.dtype), alpha=factor)


def has_batchnorm(module: nn.Module) -> bool:
    """Whether ``module`` holds a BatchNorm layer (whose statistics depend on the batch)."""
    return any(isinstance(m, _BatchNorm) for m in module.modules())


def convert_batchnorm(module: nn.Module, *, device_type: str) -> int:
    """Replaces ``module``'s BatchNorm layers in place by synchronised ones; returns how many.

    On CUDA they become ``nn.SyncBatchNorm``; elsewhere :class:`DistributedBatchNorm`. The
    parameters and buffers are the same tensor objects, so optimizers built on the model keep
    their parameters.

    Args:
        module: The model (its children are replaced, not the module itself).
        device_type: ``cuda``, ``cpu``...
    """
    converted = 0
    for name, child in module.named_children():
        new = _converted(child, device_type)
        if new is not child:
            setattr(module, name, new)
            converted += 1
        else:
            converted += convert_batchnorm(child, device_type=device_type)
    return converted


def _converted(layer: nn.Module, device_type: str) -> nn.Module:
    if not isinstance(layer, _BatchNorm) or isinstance(
        layer, nn.SyncBatchNorm | DistributedBatchNorm
    ):
        return layer
    if device_type == "cuda":
        synced: nn.Module = nn.SyncBatchNorm.convert_sync_batchnorm(layer)
        return synced
    new = DistributedBatchNorm(
        layer.num_features,
        eps=layer.eps,
        momentum=layer.momentum,
        affine=layer.affine,
        track_running_stats=layer.track_running_stats,
    )
    if layer.affine:
        new.weight, new.bias = layer.weight, layer.bias  # the very parameters the optimizer holds
    new.running_mean, new.running_var = layer.running_mean, layer.running_var
    new.num_batches_tracked = layer.num_batches_tracked
    new.train(layer.training)
    return new
