"""How a run spreads over devices: one strategy object per way, chosen once, asked everywhere.

A strategy owns everything that differs between one device, DataParallel and DDP: wrapping
the step module, the context of a step (autocast, and DDP's ``no_sync`` on the inner
micro-batches of an accumulation), reductions across processes (sums, means, agreement on a
flag), and which process writes. The loop never asks which strategy it runs under; a new way
(FSDP, say) is a new subclass that overrides what differs.

Batch-size semantics, stated once: ``--batch-size`` is the *global* batch of one optimizer
step (before ``--accumulate``). DataParallel splits it across the GPUs of one process; under
DDP each of the ``world_size`` processes loads ``batch_size / world_size`` samples. Batch 64
on one GPU is 32 per GPU on two, as the guide says, and the optimizer sees the same step.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import os
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from torchstyle.errors import UserError
from torchstyle.models.base import Batch, StepModule, TorchstyleModel

#: The step the loop calls: ``step(batch, phase) -> {"loss": ..., ...}``.
StepFn = Callable[[Batch, str], dict[str, Tensor]]

AMP_DTYPES: dict[str, torch.dtype | None] = {
    "off": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}

# Stateless, so one instance serves every step that needs no context.
_NULL: contextlib.nullcontext[None] = contextlib.nullcontext()


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


class Strategy:
    """One process on one device: no wrapper, no reductions; the base of the others.

    Args:
        device: The device this process computes on.
        amp: Mixed precision: ``off``, ``bf16`` or ``fp16``.
        rank: Global rank of this process.
        local_rank: Rank within the machine (picks the GPU).
        world_size: Number of processes.
    """

    name: ClassVar[str] = "single"

    def __init__(
        self,
        device: torch.device,
        *,
        amp: str = "off",
        rank: int = 0,
        local_rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.device = device
        self.amp_dtype = AMP_DTYPES[amp]
        self.rank = rank
        self.local_rank = local_rank
        self.world_size = world_size
        self.module: nn.Module | None = None  # the wrapped step module, once `wrap` ran

    @classmethod
    def create(cls, device_name: str, *, amp: str) -> Strategy:
        """The strategy for ``--device`` in this process, checking what it needs.

        Raises:
            UserError: The device (or the launch) does not suit the strategy.
        """
        return cls(resolve_device(device_name), amp=amp)

    @property
    def is_main(self) -> bool:
        """True on the process that logs and writes checkpoints."""
        return self.rank == 0

    def launch(self) -> None:
        """Joins whatever the strategy runs in (the process group for DDP); here nothing."""

    def wrap(self, model: TorchstyleModel, *, compile: bool, several_phases: bool) -> StepFn:
        """The training step to call, wrapped as the strategy needs.

        On one device, uncompiled, there is no wrapper whose hooks must fire: the model's own
        ``training_step`` is returned, which saves a module call per step.

        Args:
            model: The model to train.
            compile: ``torch.compile`` the step.
            several_phases: The model has more than one optimizer, so each phase leaves some
                parameters without a gradient.
        """
        if not compile:
            return model.training_step
        self.module = self._wrap_module(model, compile=True)
        return self.module

    def _wrap_module(self, model: TorchstyleModel, *, compile: bool) -> nn.Module:
        # The engine calls steps through a module's __call__, so DP/DDP hooks fire and a
        # "super network" (networks + losses in one module) gets its whole batch split.
        module: nn.Module = StepModule(model)
        if compile:
            module = torch.compile(module)  # type: ignore[assignment]  # compile returns a callable wrapping the module
        return module

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The mixed-precision context (the shared empty one when ``--amp off``)."""
        if self.amp_dtype is None:
            return _NULL
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def step_context(self, *, inner_micro_batch: bool) -> contextlib.AbstractContextManager[Any]:
        """The context of one forward and backward.

        Args:
            inner_micro_batch: Not the last micro-batch of an accumulation (DDP need not
                all-reduce its gradients yet).
        """
        if self.amp_dtype is None:  # the common case, once per micro-batch: no further call
            return _NULL
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def step_outputs(self, out: dict[str, Tensor]) -> dict[str, Tensor]:
        """The step's values as scalars (DataParallel returns one per replica)."""
        return out

    def all_reduce(self, t: Tensor, op: str = "sum") -> Tensor:
        """Reduces ``t`` in place across processes with ``op`` (sum, min or max)."""
        return t

    def mean(self, t: Tensor) -> Tensor:
        """The mean of ``t`` over the processes."""
        return self.all_reduce(t) / self.world_size

    def mean_of(self, values: dict[str, float]) -> dict[str, float]:
        """Each value's mean over the processes (logged numbers)."""
        return values

    def first_of(self, step: int | None) -> int | None:
        """The smallest ``step`` of any process (None where none has one)."""
        return step

    def any_flag(self, value: int, *, at_sync_point: bool) -> int:
        """The largest ``value`` of any process, so that every process decides alike.

        Args:
            value: This process's flag (0 when not raised; a signal number, say).
            at_sync_point: Whether this is a step where processes may talk (a logging step);
                elsewhere a strategy with several processes answers 0 without a collective.
        """
        return value

    def gather_objects(self, obj: object) -> list[object]:
        """Every process's ``obj``, in rank order."""
        return [obj]

    def barrier(self) -> None:
        """Waits for every process."""

    def teardown(self) -> None:
        """Drops the wrapper and leaves whatever ``launch`` joined."""
        self.module = None


class DataParallelStrategy(Strategy):
    """One process, several GPUs: ``nn.DataParallel`` splits each batch across them."""

    name = "dp"

    @classmethod
    def create(cls, device_name: str, *, amp: str) -> Strategy:
        """Needs CUDA GPUs: DataParallel splits batches across them."""
        device = resolve_device(device_name)
        if device.type != "cuda":
            raise UserError("--strategy dp needs CUDA GPUs; use --strategy single on the CPU")
        return cls(device, amp=amp)

    def wrap(self, model: TorchstyleModel, *, compile: bool, several_phases: bool) -> StepFn:
        """The step module in ``nn.DataParallel``."""
        self.module = nn.DataParallel(self._wrap_module(model, compile=compile))
        return self.module

    def step_outputs(self, out: dict[str, Tensor]) -> dict[str, Tensor]:
        """Replicas' scalars come back as a vector: their mean."""
        return {k: v.mean() for k, v in out.items()}


class DDPStrategy(Strategy):
    """One process per device, launched by torchrun; gradients all-reduced by DDP.

    Nothing happens at construction: :meth:`launch` joins the process group, when training
    starts.
    """

    name = "ddp"

    @classmethod
    def create(cls, device_name: str, *, amp: str) -> Strategy:
        """Reads its place from the launcher's environment (joins nothing yet)."""
        if not launched_by_torchrun():
            raise UserError(
                "--strategy ddp needs a launcher; run `torchrun --nproc_per_node N -m torchstyle "
                "train ...` (or use --strategy dp for several GPUs in one process)"
            )
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        return cls(
            resolve_device(device_name, local_rank),
            amp=amp,
            rank=int(os.environ["RANK"]),
            local_rank=local_rank,
            world_size=int(os.environ["WORLD_SIZE"]),
        )

    def launch(self) -> None:
        """Joins the process group (nccl on GPUs, gloo on the CPU)."""
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if not dist.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            dist.init_process_group(backend, timeout=datetime.timedelta(minutes=10))

    def wrap(self, model: TorchstyleModel, *, compile: bool, several_phases: bool) -> StepFn:
        """The step module in DDP; a model with several phases leaves some parameters
        without a gradient in each, which DDP must be told."""
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        self.module = nn.parallel.DistributedDataParallel(
            self._wrap_module(model, compile=compile),
            device_ids=device_ids,
            find_unused_parameters=several_phases,
        )
        return self.module

    def step_context(self, *, inner_micro_batch: bool) -> contextlib.AbstractContextManager[Any]:
        """Autocast, and ``no_sync`` on the inner micro-batches of an accumulation."""
        if not inner_micro_batch:
            return self.autocast()
        assert isinstance(self.module, nn.parallel.DistributedDataParallel)  # set by wrap
        stack = contextlib.ExitStack()
        stack.enter_context(self.module.no_sync())
        stack.enter_context(self.autocast())
        return stack

    def all_reduce(self, t: Tensor, op: str = "sum") -> Tensor:
        """Reduces ``t`` in place across processes with ``op`` (sum, min or max)."""
        ops = {"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}
        dist.all_reduce(t, op=ops[op])
        return t

    def mean_of(self, values: dict[str, float]) -> dict[str, float]:
        """Each value's mean over the processes (one all-reduce for all of them)."""
        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=self.device)
        return dict(zip(keys, self.mean(t).tolist(), strict=True))

    def first_of(self, step: int | None) -> int | None:
        """The smallest ``step`` of any process (None where none has one)."""
        none = 2**62
        t = torch.tensor([none if step is None else step], device=self.device)
        first = int(self.all_reduce(t, op="min").item())
        return None if first == none else first

    def any_flag(self, value: int, *, at_sync_point: bool) -> int:
        """Agreed at sync points only, so there is no collective on every step."""
        if not at_sync_point:
            return 0
        flag = torch.tensor([value], device=self.device)
        return int(self.all_reduce(flag, op="max").item())

    def gather_objects(self, obj: object) -> list[object]:
        """Every process's ``obj``, in rank order."""
        out: list[object] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        """Waits for every process."""
        dist.barrier()

    def teardown(self) -> None:
        """Leaves the process group once every process is done with it.

        The DDP wrapper holds the process group: dropped after it, gloo's threads may still
        be alive during interpreter shutdown, which aborts the process (SIGABRT) at exit. And
        without the barrier a fast rank could tear its group down while a slower one still
        finishes its last collective.
        """
        self.module = None
        gc.collect()
        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (Strategy, DataParallelStrategy, DDPStrategy)
}


def make_strategy(name: str, device_name: str, *, amp: str = "off") -> Strategy:
    """Resolves ``--strategy`` and ``--device`` into a strategy; joins nothing yet.

    Args:
        name: ``auto``, or a key of :data:`STRATEGIES`. ``auto`` is ``ddp`` under torchrun
            with more than one process, else ``single``.
        device_name: ``--device``.
        amp: ``--amp``.

    Raises:
        UserError: DDP without a launcher, DataParallel without CUDA, or CUDA asked for
            where there is none.
    """
    if name == "auto":
        several = launched_by_torchrun() and int(os.environ["WORLD_SIZE"]) > 1
        name = DDPStrategy.name if several else Strategy.name
    return STRATEGIES[name].create(device_name, amp=amp)
