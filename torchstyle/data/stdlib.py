"""``stdlib``: the Python standard library's own source files as a byte-level text corpus.

Every Python installation carries them, so a language model trains offline on any machine.
The corpus is the top-level modules of the running interpreter's library folder (``*.py``
directly in it, no packages and no tests: about 170 files, 4 to 5 MB), split *by file* into
train, validation and test with a hash of the file name, so a file never straddles two
splits and the split does not depend on the order the file system lists them in. The file
names of each split are returned with the data, for the run to record.

Samples are fixed windows: window ``i`` is bytes ``[i*T, i*T + T]`` of the split's
concatenated files; the model reads the first ``T`` and predicts the last ``T``. Windows do not
overlap, so an epoch predicts each byte once. Validation and test keep at most
:data:`EVAL_WINDOWS` windows, evenly spaced over their files, so an evaluation costs seconds
on a CPU whatever the context length.
"""

from __future__ import annotations

import sysconfig
import zlib
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from torchstyle.data.base import DataBundle, DataOptions
from torchstyle.errors import UserError
from torchstyle.spec import DataSpec

VOCAB_SIZE = 256
DEFAULT_CONTEXT = 64
# crc32(file name) % BUCKETS picks the split: bucket 0 is test, 1 validation, the rest train.
BUCKETS = 20
# Windows an evaluation split keeps at most (evenly spaced, so every file is represented).
EVAL_WINDOWS = 1024
SPLITS = ("train", "validation", "test")


def stdlib_dir() -> Path:
    """The running interpreter's standard library folder."""
    return Path(sysconfig.get_paths()["stdlib"])


def split_of(name: str) -> str:
    """The split a file belongs to, from its name alone (the same on every machine)."""
    bucket = zlib.crc32(name.encode("utf-8")) % BUCKETS
    return "test" if bucket == 0 else "validation" if bucket == 1 else "train"


def split_files(root: Path) -> dict[str, list[str]]:
    """The corpus's file names per split, each list sorted.

    Raises:
        UserError: The folder holds no ``.py`` files.
    """
    names = sorted(p.name for p in root.glob("*.py") if p.is_file())
    if not names:
        raise UserError(
            f"no .py files in {root}; --data stdlib reads the standard library of the "
            "running Python, which this installation lacks; use another --data"
        )
    splits: dict[str, list[str]] = {s: [] for s in SPLITS}
    for name in names:
        splits[split_of(name)].append(name)
    return splits


def read_bytes(root: Path, names: list[str]) -> Tensor:
    """The files' bytes, concatenated in the given order, as a uint8 tensor ``(N,)``."""
    data = b"".join((root / name).read_bytes() for name in names)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


class ByteWindows(Dataset[tuple[Tensor, Tensor]]):
    """Non-overlapping windows of a byte stream: ``(input (T,), target (T,))`` int64 pairs.

    ``__getitems__`` cuts a whole batch with one gather, so loaders built by
    :func:`torchstyle.data.make_loader` skip per-sample collation.

    Args:
        data: The byte stream ``(N,)``, uint8.
        context: Window length ``T``.
        max_windows: Keep at most this many windows, evenly spaced; None keeps all.
    """

    batched = True

    def __init__(self, data: Tensor, *, context: int, max_windows: int | None = None) -> None:
        if context < 1:
            raise UserError(f"the context length must be positive, got {context}")
        if data.numel() <= context:
            raise UserError(
                f"{data.numel()} bytes hold no window of {context + 1}; pass a smaller "
                "--image-size (the context length)"
            )
        self.data = data
        self.context = context
        count = (data.numel() - 1) // context
        every = -(-count // max_windows) if max_windows else 1  # ceil: at most max_windows
        self.starts = torch.arange(0, count, every) * context  # (N,) first byte of each window
        self._offsets = torch.arange(context + 1)  # (T+1,)

    def __len__(self) -> int:
        return self.starts.numel()

    def targets(self) -> Tensor:
        """Every byte the windows predict, ``(len * T,)`` uint8 (for baselines)."""
        return self.data[self.starts.unsqueeze(1) + self._offsets[1:]].flatten()

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        x, y = self.batch(torch.tensor([index]))
        return x[0], y[0]

    def __getitems__(self, keys: Any) -> tuple[Tensor, Tensor]:
        """A batch from a ``BatchIndex`` (index tensor, epoch) or from a list of indices."""
        if isinstance(keys, tuple) and len(keys) == 2 and isinstance(keys[0], Tensor):
            return self.batch(keys[0])
        return self.batch(torch.as_tensor(keys, dtype=torch.long))

    def batch(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """Windows ``idx``: inputs and next-byte targets, each ``(B, T)`` int64."""
        rows = self.data[self.starts[idx].unsqueeze(1) + self._offsets].long()  # (B, T+1)
        return rows[:, :-1], rows[:, 1:]


def build_stdlib(options: DataOptions, root: Path | None = None) -> DataBundle:
    """Data source ``stdlib``: windows of ``options.image_size`` bytes (default 64).

    Args:
        options: Data options; ``image_size`` is read as the context length.
        root: The library folder (default: the running interpreter's).

    Returns:
        Train, validation and test windows; ``info`` records the library folder and the file
        names of each split.
    """
    root = root or stdlib_dir()
    context = options.image_size or DEFAULT_CONTEXT
    files = split_files(root)
    asked = {"train": "train", "validation": "val", "test": "test"}  # ours -> DataOptions'
    parts: dict[str, Dataset[Any] | None] = {
        s: ByteWindows(
            read_bytes(root, files[s]),
            context=context,
            max_windows=None if s == "train" else EVAL_WINDOWS,
        )
        if options.wants(asked[s])
        else None  # its files are not read
        for s in SPLITS
    }
    spec = DataSpec(channels=1, image_size=context, num_classes=VOCAB_SIZE, layout="tokens")
    return DataBundle(
        train=parts["train"],
        test=parts["test"],
        spec=spec,
        val=parts["validation"],
        info={"source": "stdlib", "root": str(root), "context": context, "files": files},
    )


def unigram_loss(train: Tensor, evaluated: Tensor) -> float:
    """Cross-entropy (nats per byte) on ``evaluated`` of a model that knows only byte frequencies.

    The baseline a language model must beat: counts over the training bytes, add-one
    smoothed so a byte unseen in training costs a finite amount.

    Args:
        train: Training bytes ``(N,)``, uint8.
        evaluated: Bytes to score ``(M,)``, uint8.

    Returns:
        The mean negative log-likelihood per byte.
    """
    counts = torch.bincount(train.long(), minlength=VOCAB_SIZE).double() + 1.0
    log_probs = (counts / counts.sum()).log()
    return float(-log_probs[evaluated.long()].mean())
