"""Devices and multi-device strategies: one device, DataParallel, or DDP launched by torchrun.

Batch-size semantics, stated once: ``--batch-size`` is the *global* batch of one optimizer
step (before ``--accumulate``). DataParallel splits it across the GPUs of one process; under
DDP each of the ``world_size`` processes loads ``batch_size / world_size`` samples. Batch 64
on one GPU is 32 per GPU on two, as the guide says, and the optimizer sees the same step.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from torchstyle.errors import UserError


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands.

    Attributes:
        rank: Global rank (0 when not distributed).
        local_rank: Rank within the machine (picks the GPU).
        world_size: Number of processes.
        strategy: ``single``, ``dp`` or ``ddp`` (``auto`` resolved).
        device: The device this process computes on.
    """

    rank: int
    local_rank: int
    world_size: int
    strategy: str
    device: torch.device

    @property
    def is_main(self) -> bool:
        """True on the process that logs and checkpoints."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True when torchrun (or another launcher) set the rendezvous environment."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """Turns ``auto|cpu|cuda|cuda:N`` into a device, refusing CUDA where there is none."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(
                f"--device {name} asked for, but CUDA is not available; use --device cpu"
            )
        if name == "cuda":
            return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device(name)


def setup(strategy: str, device_name: str) -> DistInfo:
    """Resolves the strategy and device, and joins the process group under DDP.

    Args:
        strategy: ``auto``, ``single``, ``dp`` or ``ddp``. ``auto`` is ``ddp`` under torchrun
            with more than one process, else ``single``.
        device_name: ``--device``.

    Returns:
        This process's place.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if strategy == "auto":
        strategy = "ddp" if launched_by_torchrun() and world > 1 else "single"
    if strategy == "ddp":
        if not launched_by_torchrun():
            raise UserError(
                "--strategy ddp needs a launcher; run `torchrun --nproc_per_node N -m torchstyle "
                "train ...` (or use --strategy dp for several GPUs in one process)"
            )
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        device = resolve_device(device_name, local_rank)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend, timeout=datetime.timedelta(minutes=10))
        return DistInfo(dist.get_rank(), local_rank, dist.get_world_size(), "ddp", device)
    device = resolve_device(device_name)
    if strategy == "dp" and device.type != "cuda":
        raise UserError("--strategy dp needs CUDA GPUs; use --strategy single on the CPU")
    return DistInfo(0, 0, 1, strategy, device)


def wrap(module: nn.Module, info: DistInfo, *, find_unused_parameters: bool) -> nn.Module:
    """Wraps the step module for the strategy (the module itself for ``single``)."""
    if info.strategy == "dp":
        return nn.DataParallel(module)
    if info.strategy == "ddp":
        device_ids = [info.device.index] if info.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(
            module, device_ids=device_ids, find_unused_parameters=find_unused_parameters
        )
    return module


def all_reduce(t: torch.Tensor, info: DistInfo, op: str = "sum") -> torch.Tensor:
    """Reduces ``t`` in place across processes with ``op`` (sum, min or max); identity alone."""
    if info.strategy == "ddp":
        dist.all_reduce(
            t, op={"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}[op]
        )
    return t


def gather_objects(obj: object, info: DistInfo) -> list[object]:
    """Every process's ``obj``, in rank order (``[obj]`` when not distributed)."""
    if info.strategy != "ddp":
        return [obj]
    out: list[object] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    """Waits for every process (no-op when not distributed)."""
    if info.strategy == "ddp":
        dist.barrier()


def teardown(info: DistInfo) -> None:
    """Leaves the process group once every process is done with it.

    Without the barrier a fast rank could tear its group down while a slower one still
    finishes its last collective, and gloo aborts the slower process at exit.
    """
    if info.strategy == "ddp" and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
