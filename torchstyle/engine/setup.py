"""Building what the loop needs: the data and the model, the batches, the run folder.

Kept out of ``trainer.py`` so that file stays the loop, readable top to bottom.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from torchstyle import writes
from torchstyle.config import TrainConfig
from torchstyle.data import (
    DataBundle,
    DataOptions,
    DevicePrefetcher,
    EpochBatchSampler,
    TensorImageDataset,
    build_data,
    make_loader,
)
from torchstyle.data.device import DeviceBatches
from torchstyle.data.folder import ImageFolderDataset
from torchstyle.data.loaders import rebuild
from torchstyle.engine import building, memory
from torchstyle.engine.finetune import InputSize, describe_input
from torchstyle.engine.strategies import Strategy
from torchstyle.errors import UserError
from torchstyle.models import TorchstyleModel
from torchstyle.models.loading import ModelBuild, build_for_data
from torchstyle.models.sources import ModelSource


def build_data_and_model(
    cfg: TrainConfig,
    model: TorchstyleModel | None,
    data: DataBundle | None,
    *,
    source: ModelSource | None = None,
    record: dict[str, Any] | None = None,
    resume_state: dict[str, Any] | None = None,
    run_dir: Path,
    device: torch.device | None = None,
    sizing: InputSize | None = None,
) -> tuple[DataBundle, ModelBuild]:
    """The datasets and the model, each the one given or built as ``cfg`` says.

    Data first: the model's input shape comes from it, and the model says which image size
    and folder layout it wants. The model then takes ``--weights`` and ``--freeze``; a
    resumed run rebuilds its own from the checkpoint's record (see ``building.py``). With
    ``device``, sizes that cannot fit in its memory are refused before anything is allocated.
    ``source`` is ``--model`` as the run's builder parsed it (None for a given model): this
    module never parses ``--model`` itself; ``sizing`` is ``finetune.input_size``'s decision.
    """
    model_size, layout = building.model_preferences(source, model)
    sizing = sizing or InputSize(cfg.image_size)
    if device is not None and sizing.size:
        memory.check_input_size(image_size=sizing.size, batch_size=cfg.batch_size, device=device)
    if data is None:
        options = DataOptions(
            name=cfg.data or building.default_data(source, model),
            data_dir=cfg.data_dir,
            image_size=sizing.size or model_size,
            resize=sizing.resize,
            channels=cfg.channels,
            skip_bad_images=cfg.skip_bad_images,
            download=cfg.download,
            seed=cfg.seed,
            layout=layout,
            augment=cfg.augment,
            val_split=cfg.val_split,
            test_split=cfg.test_split,
        )
        data = build_data(options)
        data.info.update(describe_input(sizing))
    if model is None and resume_state is None and device is not None:
        spec = data.spec
        memory.check_model_fits(
            lambda: build_for_data(source or cfg.model, cfg.model_args, spec).model,
            input_shape=(cfg.batch_size, *spec.sample_shape),
            device=device,
            what=_size_settings(cfg),
        )
    made = building.prepare_model(
        cfg,
        data.spec,
        source=source,
        model=model,
        record=record,
        resume_state=resume_state,
        run_dir=run_dir,
    )
    return data, made


def _size_settings(cfg: TrainConfig) -> str:
    """The flags that set a model's size, as typed (for messages)."""
    parts = [f"--model {cfg.model}"]
    parts += [f"--model-arg {k}={v}" for k, v in cfg.model_args.items()]
    if cfg.image_size:
        parts.append(f"--image-size {cfg.image_size}")
    return " ".join(parts)


def total_steps(cfg: TrainConfig, micro_batches_per_epoch: int) -> int:
    """Optimizer steps the whole run takes (what a schedule spans)."""
    steps = cfg.epochs * math.ceil(micro_batches_per_epoch / cfg.accumulate)
    return min(steps, cfg.max_steps) if cfg.max_steps else steps


def channels_last(batch: Any) -> Any:
    """Images (4-D tensors) of a batch in channels-last memory format; the rest unchanged."""
    if isinstance(batch, Tensor):
        return batch.contiguous(memory_format=torch.channels_last) if batch.ndim == 4 else batch
    if isinstance(batch, (list, tuple)):
        return rebuild(batch, [channels_last(b) for b in batch])
    return batch


@dataclass(frozen=True)
class BatchSettings:
    """What batching a split needs: the fields of ``TrainConfig`` it reads, no more, so
    ``torchstyle test`` batches with the engine's code without a training config.

    Attributes:
        data: ``--data`` as given (for messages).
        batch_size: The global batch size (split over the processes).
        seed: Seeds the shuffle.
        workers: Loader worker processes (None: decided from the dataset).
        data_on_device: Keep the whole split in device memory.
        decode: ``cpu`` or ``gpu`` (decode image files on the device).
        skip_bad_images: Skip unreadable images.
    """

    data: str | None
    batch_size: int
    seed: int = 0
    workers: int | None = None
    data_on_device: bool = False
    decode: str = "cpu"
    skip_bad_images: bool = False

    @classmethod
    def of(cls, cfg: TrainConfig) -> BatchSettings:
        """The batching a training run's settings ask for."""
        return cls(
            data=cfg.data,
            batch_size=cfg.batch_size,
            seed=cfg.seed,
            workers=cfg.workers,
            data_on_device=cfg.data_on_device,
            decode=cfg.decode,
            skip_bad_images=cfg.skip_bad_images,
        )


def build_batches(
    dataset: Any, cfg: BatchSettings, strategy: Strategy, *, train: bool
) -> tuple[EpochBatchSampler, Any]:
    """The sampler of a split and an iterable of its batches, already on the device.

    The batches come from the stock loader behind a device prefetcher, from device memory
    (``--data-on-device``), or as bytes decoded on the device (``--decode gpu``).

    Raises:
        UserError: The dataset has no length (an iterable stream), or the batch does not
            split over the processes.
    """
    if not hasattr(dataset, "__len__"):
        raise UserError(
            f"--data {cfg.data}: its {'train' if train else 'evaluation'} split is a "
            f"{type(dataset).__name__} without a length; the engine draws samples by index so "
            "that a resume continues exactly: return a map-style Dataset (__len__ and "
            "__getitem__), e.g. the stream's samples in a TensorDataset"
        )
    if cfg.batch_size % strategy.world_size:
        raise UserError(
            f"--batch-size {cfg.batch_size} does not split evenly over {strategy.world_size} processes; "
            f"use a multiple of {strategy.world_size}"
        )
    sampler = EpochBatchSampler(
        len(dataset),
        batch_size=cfg.batch_size // strategy.world_size,
        shuffle=train,
        seed=cfg.seed,
        rank=strategy.rank,
        world_size=strategy.world_size,
        pad=train
        and strategy.world_size > 1,  # equal step counts; evaluation counts each sample once
    )
    if cfg.data_on_device:
        return sampler, DeviceBatches(_in_memory(dataset), sampler, strategy.device)
    workers = cfg.workers
    if workers is None:  # in-memory data gains nothing from worker processes
        workers = 0 if getattr(dataset, "batched", False) else min(8, os.cpu_count() or 1)
    loader = partial(
        make_loader,
        batch_sampler=sampler,
        workers=workers,
        pin_memory=strategy.device.type == "cuda",
    )
    if cfg.decode == "gpu":
        from torchstyle.data.jpeg import decode_on_device_loader

        if not isinstance(dataset, ImageFolderDataset):
            raise UserError(
                "--decode gpu decodes image files: use it with a folder of images (train/ and test/ of class folders)"
            )
        encoded, decoder = decode_on_device_loader(
            dataset, loader, strategy.device, skip_bad_images=cfg.skip_bad_images
        )
        return sampler, DevicePrefetcher(encoded, strategy.device, transform=decoder)
    return sampler, DevicePrefetcher(loader(dataset), strategy.device)


def _in_memory(dataset: Any) -> TensorImageDataset:
    if isinstance(dataset, TensorImageDataset):
        return dataset
    if isinstance(dataset, ImageFolderDataset):
        return dataset.to_tensor_dataset()
    raise UserError(
        f"--data-on-device needs a dataset held as tensors (digits, cifar10, synthetic, or a "
        f"folder of class folders), not {type(dataset).__name__}; drop --data-on-device"
    )


def write_data_info(run_dir: Path, info: dict[str, Any] | None) -> None:
    """Saves ``data.json``: how the data was decided (``DataBundle.info``: the validation
    split's origin, channels and size decisions, a corpus's split by file)."""
    if info:
        text = json.dumps(info, indent=2, sort_keys=True, default=str)
        writes.atomic_write_text(
            run_dir / "data.json", text + "\n", fix="or pass another --run-dir"
        )
