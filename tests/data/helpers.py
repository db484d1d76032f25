"""Image folders the data tests write to disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, value: int, size: int = 12, mode: str = "RGB") -> None:
    """Writes a small solid image with a bright left column (so flips are visible)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = 3 if mode == "RGB" else 1
    arr = np.full((size, size, channels), value, dtype=np.uint8)
    arr[:, 0] = 255
    Image.fromarray(arr.squeeze(-1) if channels == 1 else arr, mode=mode).save(path)


def make_image_folder(
    root: Path, classes=("cat", "dog"), per_class: int = 3, mode: str = "RGB"
) -> Path:
    """ROOT/{train,test}/<class>/<i>.png with a distinct gray level per class."""
    for split in ("train", "test"):
        for c, name in enumerate(classes):
            for i in range(per_class):
                write_image(root / split / name / f"{i}.png", 40 + 80 * c, mode=mode)
    return root


def write_gradient16(path: Path, width: int = 256, height: int = 8) -> None:
    """A 16-bit grayscale PNG whose rows run 0..65535 (mean 32767.5, i.e. 127.5 in 8 bits)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    row = np.linspace(0, 65535, width).round().astype(np.uint16)
    Image.fromarray(np.tile(row, (height, 1))).save(path)


def asymmetric(height: int = 16, width: int = 24) -> np.ndarray:
    """An RGB image no flip or rotation maps onto itself: a bright top-left block on dark."""
    arr = np.full((height, width, 3), 30, dtype=np.uint8)
    arr[: height // 2, : width // 3] = 230
    arr[:, -2:, 2] = 200  # a blue right edge
    return arr


def write_oriented(path: Path, orientation: int, arr: np.ndarray | None = None) -> np.ndarray:
    """Saves ``arr`` (stored orientation) with an EXIF orientation tag; returns the image
    as a viewer displays it (PIL's own ``exif_transpose``)."""
    from PIL import ImageOps

    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(asymmetric() if arr is None else arr)
    exif = img.getexif()
    exif[0x0112] = orientation
    img.save(path, exif=exif, **({"quality": 95} if path.suffix == ".jpg" else {}))
    with Image.open(path) as saved:
        return np.asarray(ImageOps.exif_transpose(saved).convert("RGB"))


def write_huge_png(path: Path, side: int = 14000) -> None:
    """A valid all-black ``side x side`` grayscale PNG (196 megapixels at 14000), written
    row by row so the test never holds the pixels in memory."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit gray, no interlace
    packer = zlib.compressobj(1)
    row = b"\x00" * (side + 1)  # filter byte + pixels
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def write_fake_cifar10(root: Path, per_batch: int = 4, test: int = 10) -> Path:
    """A tiny ``ROOT/cifar-10-batches-py`` in the published format: five training batches and
    a test batch (pickled dicts of an ``(N, 3072)`` uint8 ``data`` array and ``labels``, byte
    keys as Python 2 wrote them) and ``batches.meta`` with the ten class names.

    Each image's red plane is its label times 20, so a reader that mixes up planes or labels
    is caught; the labels cycle through the ten classes.
    """
    import pickle

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = ["airplane", "automobile", "bird", "cat", "deer"]
    names += ["dog", "frog", "horse", "ship", "truck"]

    def batch(n: int, start: int) -> dict[bytes, object]:
        labels = [(start + i) % 10 for i in range(n)]
        data = np.zeros((n, 3, 32, 32), dtype=np.uint8)
        data[:, 0] = np.array(labels, dtype=np.uint8)[:, None, None] * 20
        data[:, 2, 0, 0] = 255  # blue top-left pixel: the planes are R, G, B in that order
        return {b"data": data.reshape(n, 3072), b"labels": labels, b"batch_label": b"fake"}

    files = {f"data_batch_{i}": batch(per_batch, (i - 1) * per_batch) for i in range(1, 6)}
    files["test_batch"] = batch(test, 0)
    files["batches.meta"] = {b"label_names": [n.encode() for n in names], b"num_vis": 3072}
    for name, content in files.items():
        (folder / name).write_bytes(pickle.dumps(content, protocol=2))
    return root
