"""How a run spreads over devices: one strategy object per way, chosen once, asked everywhere.

A strategy owns everything that differs between one device, DataParallel and DDP: wrapping
the step module, the context of a step (autocast, and DDP's ``no_sync`` on the inner
micro-batches of an accumulation), reductions across processes (sums, means, agreement on a
flag), which process writes, and how a checkpoint holds the weights (whole, or sharded by
FSDP). The loop never asks which strategy it runs under; a new way is a new subclass that
overrides what differs.

Batch-size semantics, stated once: ``--batch-size`` is the *global* batch of one optimizer
step (before ``--accumulate``). DataParallel splits it across the GPUs of one process; under
DDP each of the ``world_size`` processes loads ``batch_size / world_size`` samples. Batch 64
on one GPU is 32 per GPU on two, as the guide says, and the optimizer sees the same step
(for BatchNorm layers too while ``--sync-batchnorm``, the default, makes them normalise over
the global batch).
"""

from __future__ import annotations

import abc
import contextlib
import datetime
import gc
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from torchstyle.errors import UserError
from torchstyle.models.base import Batch, StepModule, TorchstyleModel

log = logging.getLogger(__name__)

Optimizers = Mapping[str, torch.optim.Optimizer]

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


@dataclass(frozen=True)
class LaunchPlace:
    """Where a launcher (torchrun) put this process: read once from its environment."""

    rank: int
    local_rank: int
    world_size: int

    @classmethod
    def from_env(cls) -> LaunchPlace | None:
        """This process's place, or None when no launcher started it."""
        if not launched_by_torchrun():
            return None
        return cls(
            rank=int(os.environ["RANK"]),
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
            world_size=int(os.environ["WORLD_SIZE"]),
        )


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


class Strategy(abc.ABC):
    """How a run spreads over devices; the base of every strategy.

    What processes must agree on (the reductions, ``barrier``, ``broadcast``) is abstract, so
    a new multi-process strategy cannot inherit a single process's no-ops by accident.
    A strategy declares the settings it takes in ``options`` (``TrainConfig`` field names);
    :func:`make_strategy` refuses them for any other strategy.

    Args:
        device: The device this process computes on.
        amp: Mixed precision: ``off``, ``bf16`` or ``fp16``.
        rank: Global rank of this process.
        local_rank: Rank within the machine (picks the GPU).
        world_size: Number of processes.
    """

    name: ClassVar[str]
    #: The ``TrainConfig`` fields only this strategy takes, passed to :meth:`create`.
    options: ClassVar[tuple[str, ...]] = ()

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
        self.sync_batchnorm = False  # --sync-batchnorm; set by make_strategy

    @classmethod
    def create(cls, device_name: str, *, amp: str, **options: Any) -> Strategy:
        """The strategy for ``--device`` in this process, checking what it needs.

        Args:
            device_name: ``--device``.
            amp: ``--amp``.
            **options: Values of the fields named in :attr:`options`.

        Raises:
            UserError: The device (or the launch) does not suit the strategy.
        """
        return cls(resolve_device(device_name), amp=amp, **options)

    @property
    def is_main(self) -> bool:
        """True on the process that logs and writes checkpoints."""
        return self.rank == 0

    def launch(self) -> None:
        """Joins whatever the strategy runs in (the process group for DDP); here nothing."""
        return None

    def wrap(
        self,
        model: TorchstyleModel,
        *,
        compile: bool,
        several_phases: bool,
        optimizers: Optimizers | None = None,
    ) -> StepFn:
        """The training step to call, wrapped as the strategy needs.

        On one device, uncompiled, there is no wrapper whose hooks must fire: the model's own
        ``training_step`` is returned, which saves a module call per step.

        Args:
            model: The model to train.
            compile: ``torch.compile`` the step.
            several_phases: The model has more than one optimizer, so each phase leaves some
                parameters without a gradient.
            optimizers: The model's optimizers, for a strategy that replaces the parameters
                they hold (FSDP); the others leave them alone.
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

    @abc.abstractmethod
    def all_reduce(self, t: Tensor, op: str = "sum") -> Tensor:
        """Reduces ``t`` in place across processes with ``op`` (sum, min or max)."""

    def mean(self, t: Tensor) -> Tensor:
        """The mean of ``t`` over the processes."""
        return self.all_reduce(t) / self.world_size

    @abc.abstractmethod
    def mean_of(self, values: dict[str, float]) -> dict[str, float]:
        """Each value's mean over the processes (logged numbers)."""

    @abc.abstractmethod
    def first_of(self, step: int | None) -> int | None:
        """The smallest ``step`` of any process (None where none has one)."""

    @abc.abstractmethod
    def any_flag(self, value: int, *, at_sync_point: bool) -> int:
        """The largest ``value`` of any process, so that every process decides alike.

        Args:
            value: This process's flag (0 when not raised; a signal number, say).
            at_sync_point: Whether this is a step where processes may talk (a logging step);
                elsewhere a strategy with several processes answers 0 without a collective.
        """

    @abc.abstractmethod
    def gather_objects(self, obj: object) -> list[object]:
        """Every process's ``obj``, in rank order."""

    @abc.abstractmethod
    def broadcast(self, obj: object) -> object:
        """The main process's ``obj``, on every process."""

    @abc.abstractmethod
    def barrier(self) -> None:
        """Waits for every process."""

    def warn_if_statistics_change(
        self, model: nn.Module, *, saved_world: int, saved_sync: bool
    ) -> None:
        """Warns (main process) when a resume changes the number of processes and the
        model's BatchNorm statistics depend on it: some process normalised, or will
        normalise, only its own share of the batch.

        Args:
            model: The resumed model.
            saved_world: Processes the checkpoint was trained with.
            saved_sync: Whether that run synchronised BatchNorm.
        """
        from torchstyle.nn.sync_batchnorm import has_batchnorm

        world = self.world_size
        if world == saved_world or not self.is_main or not has_batchnorm(model):
            return
        synced_now = self.sync_batchnorm and self.name == "ddp"
        if (saved_world > 1 and not saved_sync) or (world > 1 and not synced_now):
            log.warning(
                "the run trained with %d process(es) and resumes with %d: its BatchNorm layers "
                "see per-process batches of another size, so it does not continue as it would "
                "have; keep the number of processes, or train with --sync-batchnorm",
                saved_world,
                world,
            )

    @abc.abstractmethod
    def agree_buffers(self, model: nn.Module) -> None:
        """Gives every process the main process's buffers (BatchNorm's running statistics),
        so that each evaluates its shard with the weights the main process saves."""

    def full_weights(self) -> contextlib.AbstractContextManager[Any]:
        """A context in which every process holds the model's whole weights, so that each may
        run forwards on its own (its share of an evaluation, samples on the main process).

        Here the weights are whole already: the shared empty context.
        """
        return _NULL

    def checkpoint_weights(
        self, model: nn.Module, optimizers: Optimizers, directory: Path, n_iter: int
    ) -> dict[str, Any]:
        """The checkpoint entries holding the weights and the optimizer state.

        Every process calls it. Here every process holds whole copies, so they are the
        ``state_dict``s themselves (the main process writes them with the rest).

        Args:
            model: The model.
            optimizers: Its optimizers by phase.
            directory: The run's ``checkpoints/`` folder.
            n_iter: Optimizer steps taken (names what a strategy writes on its own).
        """
        return {
            "net": model.state_dict(),
            "optim": {k: o.state_dict() for k, o in optimizers.items()},
        }

    def checkpoint_saved(self, directory: Path) -> None:
        """Called on the main process once a checkpoint is complete; here nothing to tidy."""
        return None

    def teardown(self) -> None:
        """Drops the wrapper and leaves whatever ``launch`` joined."""
        self.module = None


class SingleDeviceStrategy(Strategy):
    """One process on one device: no wrapper; every reduction is the process's own value."""

    name = "single"

    def all_reduce(self, t: Tensor, op: str = "sum") -> Tensor:
        """``t`` itself: there is no other process."""
        return t

    def mean_of(self, values: dict[str, float]) -> dict[str, float]:
        """The values themselves."""
        return values

    def first_of(self, step: int | None) -> int | None:
        """``step`` itself."""
        return step

    def any_flag(self, value: int, *, at_sync_point: bool) -> int:
        """``value`` itself."""
        return value

    def gather_objects(self, obj: object) -> list[object]:
        """``[obj]``."""
        return [obj]

    def broadcast(self, obj: object) -> object:
        """``obj`` itself."""
        return obj

    def barrier(self) -> None:
        """Nothing to wait for."""

    def agree_buffers(self, model: nn.Module) -> None:
        """The buffers are this process's own already."""


class DataParallelStrategy(SingleDeviceStrategy):
    """One process, several GPUs: ``nn.DataParallel`` splits each batch across them."""

    name = "dp"

    @classmethod
    def create(cls, device_name: str, *, amp: str, **options: Any) -> Strategy:
        """Needs CUDA GPUs: DataParallel splits batches across them."""
        device = resolve_device(device_name)
        if device.type != "cuda":
            raise UserError("--strategy dp needs CUDA GPUs; use --strategy single on the CPU")
        return cls(device, amp=amp)

    def wrap(
        self,
        model: TorchstyleModel,
        *,
        compile: bool,
        several_phases: bool,
        optimizers: Optimizers | None = None,
    ) -> StepFn:
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
    #: What to run when no launcher started the process.
    launch_hint: ClassVar[str] = (
        "run `torchrun --nproc_per_node N -m torchstyle train ...` "
        "(or use --strategy dp for several GPUs in one process)"
    )

    @classmethod
    def create(cls, device_name: str, *, amp: str, **options: Any) -> Strategy:
        """Reads its place from the launcher's environment, once (joins nothing yet)."""
        place = LaunchPlace.from_env()
        if place is None:
            raise UserError(f"--strategy {cls.name} needs a launcher; {cls.launch_hint}")
        return cls(
            resolve_device(device_name, place.local_rank),
            amp=amp,
            rank=place.rank,
            local_rank=place.local_rank,
            world_size=place.world_size,
            **options,
        )

    def launch(self) -> None:
        """Joins the process group (nccl on GPUs, gloo on the CPU)."""
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if not dist.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            dist.init_process_group(backend, timeout=datetime.timedelta(minutes=10))

    def wrap(
        self,
        model: TorchstyleModel,
        *,
        compile: bool,
        several_phases: bool,
        optimizers: Optimizers | None = None,
    ) -> StepFn:
        """The step module in DDP; a model with several phases leaves some parameters
        without a gradient in each, which DDP must be told."""
        self._sync_batchnorm(model)
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        self.module = nn.parallel.DistributedDataParallel(
            self._wrap_module(model, compile=compile),
            device_ids=device_ids,
            find_unused_parameters=several_phases,
        )
        return self.module

    def _sync_batchnorm(self, model: nn.Module) -> None:
        """BatchNorm over the global batch (``--sync-batchnorm``), or a warning that each
        process normalises its own share."""
        from torchstyle.nn.sync_batchnorm import convert_batchnorm, has_batchnorm

        if self.world_size < 2 or not has_batchnorm(model):
            return
        if self.sync_batchnorm:
            convert_batchnorm(model, device_type=self.device.type)
        elif self.is_main:
            log.warning(
                "the model has BatchNorm and --no-sync-batchnorm is set: each of the %d "
                "processes normalises its %s of the batch, so training differs from one "
                "process; drop --no-sync-batchnorm to normalise over the global batch",
                self.world_size,
                f"1/{self.world_size}",
            )

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

    def broadcast(self, obj: object) -> object:
        """The main process's ``obj``, on every process."""
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        """Waits for every process."""
        dist.barrier()

    def agree_buffers(self, model: nn.Module) -> None:
        """Broadcasts rank 0's buffers: DDP does so before each training forward, so after
        the last one each process still holds the statistics of its own share."""
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)

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


class FSDPStrategy(DDPStrategy):
    """One process per device, launched by torchrun; each holds ``1/N`` of every parameter,
    gradient and optimizer tensor (FSDP2), and writes its own shards of each checkpoint.

    The sharding itself lives in :mod:`torchstyle.engine.fsdp`. Mixed precision is FSDP's
    policy (bf16 compute, float32 reductions and master weights), not autocast.

    Args:
        device: The device this process computes on.
        amp: ``off`` or ``bf16``.
        rank: Global rank of this process.
        local_rank: Rank within the machine.
        world_size: Number of processes.
        cpu_offload: Keep the shards in CPU memory; the optimizer step runs there.
        activation_checkpointing: Recompute each block's activations in the backward pass.
    """

    name = "fsdp"
    options = ("cpu_offload", "activation_checkpointing")
    launch_hint = "run `torchrun --nproc_per_node N -m torchstyle train --strategy fsdp ...`"

    def __init__(
        self,
        device: torch.device,
        *,
        amp: str = "off",
        rank: int = 0,
        local_rank: int = 0,
        world_size: int = 1,
        cpu_offload: bool = False,
        activation_checkpointing: bool = False,
    ) -> None:
        from torchstyle.engine import fsdp

        fsdp.mixed_precision(amp)  # refuses --amp fp16 before anything starts
        super().__init__(device, rank=rank, local_rank=local_rank, world_size=world_size)
        self.amp = amp
        self.cpu_offload = cpu_offload
        self.activation_checkpointing = activation_checkpointing
        self._sharded: tuple[nn.Module, Optimizers] | None = None

    def wrap(
        self,
        model: TorchstyleModel,
        *,
        compile: bool,
        several_phases: bool,
        optimizers: Optimizers | None = None,
    ) -> StepFn:
        """Shards the model's blocks, then the step module holding it (the root), and points
        the optimizers at the sharded parameters."""
        from torchstyle.engine import fsdp

        if compile:
            raise UserError("--compile is not supported with --strategy fsdp; drop --compile")
        optimizers = optimizers or {}
        if any(opt.state for opt in optimizers.values()):
            raise UserError(
                "this checkpoint holds whole (unsharded) optimizer state; resume it with the "
                "strategy that wrote it (--strategy single or ddp)"
            )
        root = self._wrap_module(model, compile=False)
        fsdp.shard_model(
            model,
            root=root,
            optimizers=optimizers.values(),
            amp=self.amp,
            cpu_offload=self.cpu_offload,
            activation_checkpointing=self.activation_checkpointing,
        )
        self.module, self._sharded = root, (model, optimizers)
        return root

    def step_context(self, *, inner_micro_batch: bool) -> contextlib.AbstractContextManager[Any]:
        """No reduce-scatter on the inner micro-batches of an accumulation."""
        from torchstyle.engine import fsdp

        assert self.module is not None  # set by wrap
        fsdp.set_gradient_sync(self.module, not inner_micro_batch)
        return _NULL

    def agree_buffers(self, model: nn.Module) -> None:
        """Nothing: FSDP keeps the buffers as the model has them."""

    def full_weights(self) -> contextlib.AbstractContextManager[Any]:
        """Gathers the whole weights on every process (a collective) for the duration."""
        from torchstyle.engine import fsdp

        assert self.module is not None  # set by wrap
        return fsdp.gathered(self.module)

    def checkpoint_weights(
        self, model: nn.Module, optimizers: Optimizers, directory: Path, n_iter: int
    ) -> dict[str, Any]:
        """Every process writes its shards to a new folder; the entry names the folder."""
        from torchstyle.engine import fsdp

        name = str(self.gather_objects(fsdp.new_shard_name(directory, n_iter))[0])
        fsdp.save_shards(
            directory, name, model, dict(optimizers), is_main=self.is_main, barrier=self.barrier
        )
        return {"shards": name}

    def checkpoint_saved(self, directory: Path) -> None:
        """Removes shard folders that no checkpoint file names any more."""
        from torchstyle.engine import fsdp

        fsdp.prune_shards(directory, fsdp.referenced_shards(directory))

    def teardown(self) -> None:
        """Logs how much of the model this process held, then leaves the process group."""
        from torchstyle.engine import fsdp

        if self._sharded is not None:
            model, optimizers = self._sharded
            # Every process's share, said by the main one: only rank 0 speaks.
            every = self.gather_objects(fsdp.shard_report(model, optimizers.values()))
            for rank, sizes in enumerate(every):
                if self.is_main and isinstance(sizes, dict):
                    log.info(
                        "fsdp rank %d of %d holds %d of %d parameter elements and %d of %d "
                        "optimizer-state elements",
                        rank,
                        self.world_size,
                        sizes["params_local"],
                        sizes["params_total"],
                        sizes["optim_local"],
                        sizes["optim_total"],
                    )
            self._sharded = None
        super().teardown()


STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (SingleDeviceStrategy, DataParallelStrategy, DDPStrategy, FSDPStrategy)
}


def make_strategy(
    name: str,
    device_name: str,
    *,
    amp: str = "off",
    cpu_offload: bool = False,
    activation_checkpointing: bool = False,
    sync_batchnorm: bool = False,
) -> Strategy:
    """Resolves ``--strategy`` and ``--device`` into a strategy; joins nothing yet.

    Args:
        name: ``auto``, or a key of :data:`STRATEGIES`. ``auto`` is ``ddp`` under torchrun
            with more than one process, else ``single``.
        device_name: ``--device``.
        amp: ``--amp``.
        cpu_offload: ``--cpu-offload`` (FSDP only).
        activation_checkpointing: ``--activation-checkpointing`` (FSDP only).
        sync_batchnorm: ``--sync-batchnorm`` (DDP with several processes).

    Raises:
        UserError: DDP or FSDP without a launcher, DataParallel without CUDA, CUDA asked for
            where there is none, or an FSDP option without FSDP.
    """
    if name == "auto":
        place = LaunchPlace.from_env()
        several = place is not None and place.world_size > 1
        name = DDPStrategy.name if several else SingleDeviceStrategy.name
    cls = STRATEGIES[name]
    given = {"cpu_offload": cpu_offload, "activation_checkpointing": activation_checkpointing}
    for option, value in given.items():
        if value and option not in cls.options:
            takers = [n for n, c in STRATEGIES.items() if option in c.options]
            raise UserError(
                f"--{option.replace('_', '-')} is an option of --strategy {' or '.join(takers)}; "
                f"add --strategy {takers[0]}, or drop --{option.replace('_', '-')}"
            )
    strategy = cls.create(
        device_name, amp=amp, **{k: v for k, v in given.items() if k in cls.options}
    )
    strategy.sync_batchnorm = sync_batchnorm
    return strategy
