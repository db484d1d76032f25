"""Batching, loading and device prefetch, independent of the engine.

:class:`EpochBatchSampler` decides every batch of every epoch from ``(seed, epoch)`` alone,
so a resumed run can start at batch ``k`` without reading the ``k`` batches it skips, and a
distributed run shards the same order across ranks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

# Mixes the epoch into the seed; a large odd constant keeps (seed, epoch) pairs apart.
_EPOCH_STRIDE = 1_000_003


class BatchIndex(NamedTuple):
    """A whole batch's sample indices and its epoch (the keys of its augmentation draws)."""

    index: Tensor  # type: ignore[assignment]  # shadows tuple.index; datasets read batch.index
    epoch: int


class EpochBatchSampler(Sampler[Any]):
    """Yields the batches of one epoch for one rank, optionally starting part-way through.

    Args:
        num_samples: Dataset length.
        batch_size: Samples per batch *on this rank*.
        shuffle: Draw a new order each epoch (from ``seed`` and the epoch) or keep 0..N-1.
        seed: Base seed of the order.
        rank: This process's rank.
        world_size: Number of processes sharing the epoch.
        drop_last: Drop a last batch smaller than ``batch_size``.
        pad: Repeat samples so every rank gets the same number (training under DDP needs
            equal step counts); evaluation leaves it off so no sample counts twice.
        keys: What a batch is: ``indices`` (a list of ints), ``epoch`` (a list of
            ``(index, epoch)`` pairs, for datasets whose augmentation is keyed on the epoch,
            ``epoch_aware`` ones) or ``batch`` (one :class:`BatchIndex`, for datasets that
            fetch a whole batch with one indexing op). :func:`make_loader` sets it.
    """

    def __init__(
        self,
        num_samples: int,
        *,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        pad: bool = False,
        keys: str = "indices",
    ) -> None:
        assert batch_size > 0, f"batch_size must be positive, got {batch_size}"
        assert 0 <= rank < world_size, f"rank {rank} out of range for world size {world_size}"
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.pad = pad
        assert keys in ("indices", "epoch", "batch"), f"unknown keys {keys!r}"
        self.keys = keys
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Selects the epoch to yield and the batch to start at (for a resumed run)."""
        assert start_batch >= 0, "start_batch must be >= 0"
        self.epoch = epoch
        self.start_batch = start_batch

    def epoch_order(self) -> Tensor:
        """This rank's sample indices for the epoch, in order (batches are slices of it)."""
        return self._rank_indices()

    def batch_bounds(self) -> list[tuple[int, int]]:
        """``(start, end)`` into :meth:`epoch_order` of each batch still to yield."""
        end = self.batches_per_epoch() * self.batch_size
        n = len(range(self.rank, self._padded_len(), self.world_size))
        return [
            (s, min(s + self.batch_size, n))
            for s in range(self.start_batch * self.batch_size, min(end, n), self.batch_size)
        ]

    def _rank_indices(self) -> Tensor:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * _EPOCH_STRIDE + self.epoch)
            order = torch.randperm(self.num_samples, generator=g)
        else:
            order = torch.arange(self.num_samples)
        if self.pad and self.num_samples % self.world_size:
            total = math.ceil(self.num_samples / self.world_size) * self.world_size
            order = torch.cat([order, order[: total - self.num_samples]])
        return order[self.rank :: self.world_size]

    def batches_per_epoch(self) -> int:
        """Number of batches in a whole epoch on this rank."""
        n = len(range(self.rank, self._padded_len(), self.world_size))
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _padded_len(self) -> int:
        if self.pad:
            return math.ceil(self.num_samples / self.world_size) * self.world_size
        return self.num_samples

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch() - self.start_batch)

    def __iter__(self) -> Iterator[Any]:
        indices = self._rank_indices()
        for start, end in self.batch_bounds():
            if self.keys == "batch":  # no list of ints to build and turn back into a tensor
                yield BatchIndex(indices[start:end], self.epoch)
            elif self.keys == "epoch":
                yield [(i, self.epoch) for i in indices[start:end].tolist()]
            else:
                yield indices[start:end].tolist()


def _passthrough(batch: Any) -> Any:
    return batch


def make_loader(
    dataset: Dataset[Any],
    batch_sampler: EpochBatchSampler,
    *,
    workers: int = 0,
    pin_memory: bool = False,
    collate_fn: Callable[[list[Any]], Any] | None = None,
) -> DataLoader[Any]:
    """Builds a DataLoader with settings that suit the dataset.

    Args:
        dataset: The dataset. A dataset with ``batched = True`` returns whole batches from
            ``__getitems__`` and skips per-sample collation.
        batch_sampler: Decides the batches.
        workers: Worker processes; 0 loads in the main process (best for in-memory data).
        pin_memory: Pin host memory so device copies can be asynchronous (CUDA only).
        collate_fn: Batches the samples (default: torch's default collation).

    Returns:
        The loader. With workers, they persist across epochs (no re-fork each epoch) and keep
        four batches each in flight, DataLoader's own background prefetch.
    """
    assert workers >= 0, f"workers must be >= 0, got {workers}"
    if getattr(dataset, "batched", False):
        batch_sampler.keys = "batch"
    elif getattr(dataset, "epoch_aware", False):
        batch_sampler.keys = "epoch"
    else:
        batch_sampler.keys = "indices"
    kwargs: dict[str, Any] = {}
    if workers > 0:
        kwargs.update(persistent_workers=True, prefetch_factor=4)
    if getattr(dataset, "batched", False):
        kwargs["collate_fn"] = _passthrough
    elif collate_fn is not None:
        kwargs["collate_fn"] = collate_fn
    # A private generator: creating an iterator draws worker seeds from it, not from the
    # global RNG, so a resumed run's global RNG stream matches the uninterrupted run's.
    generator = torch.Generator().manual_seed(batch_sampler.seed)
    return DataLoader(
        dataset,
        batch_sampler=batch_sampler,
        generator=generator,
        num_workers=workers,
        pin_memory=pin_memory,
        **kwargs,
    )


def rebuild(container: list[Any] | tuple[Any, ...], items: list[Any]) -> Any:
    """A list, tuple or named tuple like ``container``, holding ``items``."""
    if hasattr(container, "_fields"):  # a named tuple takes its fields as arguments
        return type(container)(*items)
    return type(container)(items)


def to_device(batch: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """Moves every tensor in a (nested) batch to ``device``."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, (list, tuple)):
        return rebuild(batch, [to_device(b, device, non_blocking) for b in batch])
    if isinstance(batch, dict):
        return {k: to_device(v, device, non_blocking) for k, v in batch.items()}
    return batch


class DevicePrefetcher:
    """Copies the next batch to the device on a side CUDA stream while the current one computes.

    On the CPU (or any non-CUDA device) it moves batches synchronously and adds nothing else.

    Args:
        loader: Any iterable of batches.
        device: The target device.
        transform: Runs on each batch once it is on the device, on the same side stream
            (GPU decoding and augmentation), so it overlaps the previous step too.
    """

    def __init__(
        self,
        loader: Iterable[Any],
        device: torch.device,
        transform: Callable[[Any], Any] | None = None,
    ) -> None:
        self.loader = loader
        self.device = device
        self.transform = transform
        self.cuda = device.type == "cuda"
        self.stream = torch.cuda.Stream(device) if self.cuda else None

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        if not self.cuda:
            if self.device.type == "cpu" and self.transform is None:  # already CPU tensors
                yield from self.loader
            else:
                for batch in self.loader:
                    batch = to_device(batch, self.device)
                    yield self.transform(batch) if self.transform else batch
            return
        assert self.stream is not None
        it = iter(self.loader)
        nxt = self._preload(it)
        while nxt is not None:
            torch.cuda.current_stream(self.device).wait_stream(self.stream)
            batch = nxt
            _record_stream(batch, torch.cuda.current_stream(self.device))
            nxt = self._preload(it)
            yield batch

    def _preload(self, it: Iterator[Any]) -> Any:
        try:
            batch = next(it)
        except StopIteration:
            return None
        with torch.cuda.stream(self.stream):
            batch = to_device(batch, self.device, non_blocking=True)
            return self.transform(batch) if self.transform else batch


def _record_stream(batch: Any, stream: torch.cuda.Stream) -> None:
    # The copy was allocated on the side stream; tell the caching allocator the main stream
    # uses it too, or the memory may be reused while the step still reads it.
    if isinstance(batch, Tensor):
        batch.record_stream(stream)
    elif isinstance(batch, (list, tuple)):
        for b in batch:
            _record_stream(b, stream)
    elif isinstance(batch, dict):
        for b in batch.values():
            _record_stream(b, stream)
