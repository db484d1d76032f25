"""Sharding a model past one device's memory: FSDP2 units, and sharded checkpoints through DCP.

Under ``--strategy fsdp`` every process holds ``1/N`` of each parameter, of its gradient and
of the optimizer state. :func:`shard_model` calls ``fully_shard`` on each of the model's
blocks (the classes a model names in ``shard_blocks``; for other models, every submodule
holding at least :data:`DEFAULT_MIN_PARAMS` parameters not already in a smaller unit), then on
the root the engine calls (the step module holding the model), so a forward gathers one
block's full weights at a time.

Checkpoints go through Distributed Checkpoint (``torch.distributed.checkpoint``): every process
writes its own shards into a folder (nothing is gathered on one process), and the run's small
``latest.pt`` names that folder. The folder is written under a temporary name and renamed
when every process has finished, and only then is ``latest.pt`` replaced, atomically: a
killed run leaves the previous checkpoint whole. DCP stores each tensor with its global shape
and offsets, so a run resumes on any number of processes (resharding), and
:func:`consolidate` reads a plain ``state_dict`` in one process (``test``, ``predict``, an
export).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributed.checkpoint import state_dict_loader, state_dict_saver
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import CPUOffloadPolicy, FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor

from torchstyle.errors import UserError

log = logging.getLogger(__name__)

#: A submodule with at least this many parameters (outside smaller units) becomes its own unit
#: when the model names no block classes: large enough that one all-gather moves a useful
#: amount, small enough that a ResNet stage or a ViT block is a unit of its own.
DEFAULT_MIN_PARAMS = 1_000_000
#: Name prefix of shard folders in a run's ``checkpoints/``.
SHARDS_PREFIX = "shards-"

_PARAM_DTYPES = {"bf16": torch.bfloat16}


def mixed_precision(amp: str) -> MixedPrecisionPolicy:
    """FSDP's mixed-precision policy for ``--amp``.

    Parameters are gathered and computed in bf16; gradients are reduced in float32, so the
    sum over processes loses nothing to rounding; the sharded master weights stay float32.

    Raises:
        UserError: ``fp16``: its loss scaler would have to agree across processes on each
            skipped step, which the stock scaler does not do for sharded gradients.
    """
    if amp == "off":
        return MixedPrecisionPolicy()
    if amp not in _PARAM_DTYPES:
        raise UserError(f"--amp {amp} is not supported with --strategy fsdp; use --amp bf16")
    return MixedPrecisionPolicy(param_dtype=_PARAM_DTYPES[amp], reduce_dtype=torch.float32)


def block_modules(model: nn.Module, min_params: int = DEFAULT_MIN_PARAMS) -> list[nn.Module]:
    """The submodules that become shard units, innermost first.

    Args:
        model: The model.
        min_params: Size threshold of the default rule (models naming no ``shard_blocks``).

    Returns:
        Instances of the model's ``shard_blocks`` classes when it names any; otherwise every
        submodule (not the model itself) whose parameters outside smaller units number at
        least ``min_params``.
    """
    named: tuple[type[nn.Module], ...] = tuple(getattr(model, "shard_blocks", ()))
    if named:
        return [m for m in model.modules() if isinstance(m, named) and m is not model]
    units: list[nn.Module] = []

    def visit(module: nn.Module) -> int:
        # Parameters of `module` not yet claimed by a unit below it.
        free = sum(visit(child) for child in module.children())
        free += sum(p.numel() for p in module.parameters(recurse=False))
        if module is not model and free >= min_params:
            units.append(module)
            return 0
        return free

    visit(model)
    return units


def shard_model(
    model: nn.Module,
    *,
    root: nn.Module | None = None,
    optimizers: Iterable[torch.optim.Optimizer] = (),
    amp: str = "off",
    cpu_offload: bool = False,
    activation_checkpointing: bool = False,
    min_params: int = DEFAULT_MIN_PARAMS,
) -> list[nn.Module]:
    """Shards ``model`` in place across the default process group.

    Args:
        model: The model, on this process's device.
        root: The module the engine calls (one holding ``model``, such as the step module
            that routes to ``training_step``); sharded last, it gathers the parameters
            outside the blocks whichever submodules a step calls. Default: ``model``.
        optimizers: Optimizers already built over ``model``'s parameters: they are pointed at
            the sharded parameters, which replace the originals. Their state must be empty.
        amp: ``--amp``: ``off`` or ``bf16``.
        cpu_offload: Keep the sharded parameters, gradients and optimizer state in CPU
            memory; the optimizer step then runs on the CPU.
        activation_checkpointing: Recompute each block's activations in the backward pass
            instead of keeping them.
        min_params: Threshold of the size-based default.

    Returns:
        The shard units, the root last.
    """
    policy = mixed_precision(amp)
    _broadcast_from_first(model)
    kwargs: dict[str, Any] = {"mp_policy": policy}
    if cpu_offload:
        # Pinned host memory makes the copies to a GPU asynchronous; without CUDA there is none.
        kwargs["offload_policy"] = CPUOffloadPolicy(pin_memory=torch.cuda.is_available())
    names = {id(p): name for name, p in model.named_parameters()}
    blocks = block_modules(model, min_params)
    if activation_checkpointing:
        from torch.distributed._composable.checkpoint_activation import checkpoint

        for block in blocks:
            checkpoint(block)
    root = root if root is not None else model
    for unit in [*blocks, root]:
        fully_shard(unit, **kwargs)
    sharded = dict(model.named_parameters())
    for opt in optimizers:
        if opt.state:
            raise ValueError("optimizers must be re-pointed before their first step")
        for group in opt.param_groups:
            group["params"] = [sharded[names[id(p)]] for p in group["params"]]
    log.info(
        "fsdp: %d block units and the root; compute in %s",
        len(blocks),
        policy.param_dtype or "float32",
    )
    return [*blocks, root]


def _broadcast_from_first(model: nn.Module) -> None:
    # Each process built (and seeded) its own model; sharding keeps each process's slice of
    # its own copy, so every copy must first equal the first process's, as DDP does it.
    import torch.distributed as dist

    if dist.is_initialized() and dist.get_world_size() > 1:
        with torch.no_grad():
            for t in [*model.parameters(), *model.buffers()]:
                dist.broadcast(t.data, src=0)


def local_numel(tensors: Iterable[Tensor]) -> tuple[int, int]:
    """Elements this process holds and elements in total (sharded tensors count their shard)."""
    local = total = 0
    for t in tensors:
        total += t.numel()
        local += t.to_local().numel() if isinstance(t, DTensor) else t.numel()
    return local, total


def shard_report(model: nn.Module, optimizers: Iterable[torch.optim.Optimizer]) -> dict[str, int]:
    """How much of the parameters and of the optimizer state this process holds.

    Returns:
        ``params_local``, ``params_total``, ``optim_local`` and ``optim_total`` in elements;
        optimizer state counts tensors with more than one element (not step counters).
    """
    p_local, p_total = local_numel(model.parameters())
    state = [
        v
        for opt in optimizers
        for per_param in opt.state.values()
        for v in per_param.values()
        if isinstance(v, Tensor) and v.numel() > 1
    ]
    o_local, o_total = local_numel(state)
    return {
        "params_local": p_local,
        "params_total": p_total,
        "optim_local": o_local,
        "optim_total": o_total,
    }


@contextlib.contextmanager
def gathered(root: nn.Module) -> Any:
    """Full parameters on every process for the duration, so that processes may run forwards
    independently (an uneven evaluation split, sampling on one process).

    Args:
        root: The sharded root (what :func:`shard_model` sharded last).

    Every process must enter and leave it together (gathering is a collective).
    """
    units = [m for m in root.modules() if isinstance(m, FSDPModule)]
    for unit in units:
        unit.unshard()
        unit.set_reshard_after_forward(False)
    try:
        yield
    finally:
        for unit in units:
            unit.set_reshard_after_forward(True)
            unit.reshard()


def set_gradient_sync(root: nn.Module, enabled: bool) -> None:
    """Turns the gradient reduce-scatter off for the inner micro-batches of an accumulation."""
    if isinstance(root, FSDPModule):
        root.set_requires_gradient_sync(enabled)


# ---------------------------------------------------------------------------- checkpoints
@contextlib.contextmanager
def _quiet_without_group() -> Any:
    # Without a process group DCP warns that it assumes one process: exactly the intent.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*assuming the intent is to")
        yield


def _training_state(
    model: nn.Module, optimizers: dict[str, torch.optim.Optimizer]
) -> dict[str, Any]:
    return {
        "model": get_model_state_dict(model),
        "optim": {k: get_optimizer_state_dict(model, o) for k, o in optimizers.items()},
    }


def save_shards(
    directory: Path,
    name: str,
    model: nn.Module,
    optimizers: dict[str, torch.optim.Optimizer],
    *,
    is_main: bool,
    barrier: Callable[[], None],
) -> Path:
    """Writes the model's and optimizers' shards to ``directory/name``; every process calls it.

    Each process writes only its own shards; the main process writes DCP's metadata once all
    are written, then renames the temporary folder to ``name``.

    Args:
        directory: The run's ``checkpoints/`` folder.
        name: The shard folder's name, the same on every process and not in use
            (:func:`new_shard_name`).
        model: The (sharded or plain) model.
        optimizers: Its optimizers by phase.
        is_main: Whether this is the process that renames.
        barrier: Waits for every process.

    Returns:
        The finished folder.

    Raises:
        CheckpointWriteError: A write failed; the previous checkpoint is intact.
    """
    from torchstyle import writes
    from torchstyle.engine.checkpoint import WRITE_FIX, CheckpointWriteError

    tmp, final = directory / f".{name}.tmp", directory / name
    if is_main:
        writes.make_dirs(directory, fix=WRITE_FIX, kind=CheckpointWriteError)
        shutil.rmtree(tmp, ignore_errors=True)  # a killed earlier attempt at this name
    barrier()

    def fill(folder: Path) -> None:
        with _quiet_without_group():
            state_dict_saver.save(_training_state(model, optimizers), checkpoint_id=folder)
        barrier()  # DCP's metadata is written last, by rank 0: all shards exist now

    try:
        if is_main:
            writes.atomic_write_dir(final, fill, fix=WRITE_FIX, kind=CheckpointWriteError)
        else:
            fill(tmp)
    except BaseException as e:  # torch.distributed.checkpoint raises a BaseException
        found = writes.explain(e, tmp, fix=WRITE_FIX, kind=CheckpointWriteError)
        if found is None or isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise found from None
    barrier()
    return final


def load_shards(
    folder: Path, model: nn.Module, optimizers: dict[str, torch.optim.Optimizer]
) -> None:
    """Loads a shard folder into a model and its optimizers, resharding as needed.

    Works for a sharded model on any number of processes and for a plain model in one.

    Raises:
        CheckpointLoadError: The folder is missing or does not fit the model.
    """
    from torchstyle.engine.checkpoint import CheckpointLoadError

    if not (folder / ".metadata").is_file():
        raise CheckpointLoadError(
            f"shard folder {folder} is missing or incomplete; resume from another checkpoint"
        )
    state = _training_state(model, optimizers)
    missing = sorted(set(optimizers) - set(state["optim"]))
    if missing:
        raise CheckpointLoadError(f"{folder} has no optimizer state for {missing}")
    _load_into(state, folder, model)
    set_model_state_dict(model, state["model"])
    for k, opt in optimizers.items():
        set_optimizer_state_dict(model, opt, state["optim"][k])


def consolidate(folder: Path, model: nn.Module) -> dict[str, Tensor]:
    """A plain ``state_dict`` of ``model``'s shape, read from a shard folder in one process.

    Args:
        folder: A shard folder written by :func:`save_shards`.
        model: An unsharded model of the same architecture (its tensors give the shapes).

    Raises:
        CheckpointLoadError: The folder is missing or does not fit the model.
    """
    from torchstyle.engine.checkpoint import CheckpointLoadError

    if not (folder / ".metadata").is_file():
        raise CheckpointLoadError(f"shard folder {folder} is missing or incomplete")
    state = {"model": {k: v.detach().clone() for k, v in model.state_dict().items()}}
    _load_into(state, folder, model)
    return state["model"]


def _load_into(state: dict[str, Any], folder: Path, model: nn.Module) -> None:
    """Reads the shard folder into ``state`` in place.

    Raises:
        CheckpointLoadError: The shards do not fit ``model``.
    """
    from torchstyle.engine.checkpoint import CheckpointLoadError

    try:
        with _quiet_without_group():
            state_dict_loader.load(state, checkpoint_id=folder)
    except (CheckpointException, RuntimeError, ValueError) as e:
        raise CheckpointLoadError(
            f"{folder} does not fit model {type(model).__name__} ({_first_cause(e)}); "
            "was it saved with other --model-arg values?"
        ) from None


def _first_cause(e: BaseException) -> str:
    # DCP wraps each rank's exception; the last line of its text names the real problem.
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return (lines[-1] if lines else type(e).__name__)[:200]


def new_shard_name(directory: Path, n_iter: int) -> str:
    """A shard folder name for a save at optimizer step ``n_iter`` that no folder has yet."""
    name, i = f"{SHARDS_PREFIX}{n_iter:08d}", 1
    while (directory / name).exists():
        name, i = f"{SHARDS_PREFIX}{n_iter:08d}-{i}", i + 1
    return name


def shard_folders(directory: Path) -> list[Path]:
    """The finished shard folders of a ``checkpoints/`` folder, oldest name first."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_dir() and p.name.startswith(SHARDS_PREFIX))


def referenced_shards(directory: Path) -> set[str]:
    """The shard folders the checkpoint files of ``directory`` name (latest, best, epochs)."""
    from torchstyle.engine.checkpoint import CheckpointLoadError, load_checkpoint

    names = set()
    for path in directory.glob("*.pt"):
        try:
            name = load_checkpoint(path).get("shards")
        except CheckpointLoadError:
            continue  # not ours to judge here; pruning keeps what anything might name
        if isinstance(name, str):
            names.add(name)
    return names


def prune_shards(directory: Path, referenced: set[str]) -> None:
    """Deletes shard folders no checkpoint file names, and temporaries of killed writes."""
    for folder in shard_folders(directory):
        if folder.name not in referenced:
            shutil.rmtree(folder, ignore_errors=True)
    for tmp in directory.glob(f".{SHARDS_PREFIX}*.tmp"):
        shutil.rmtree(tmp, ignore_errors=True)
