"""Reading image files as people have them: any mode, any bit depth, EXIF-rotated, hidden
files about, the odd corrupt or gigantic file.

What is done with each file, on every path (training, evaluation, ``predict``, ``--decode
gpu``):

* Hidden files and folders (a name starting with ``.``, such as macOS's ``._0.png`` or a
  ``.thumbnails/`` folder) are skipped wherever folders are listed.
* EXIF orientation is honoured: an image is read as it is displayed, not as it is stored.
* 16-bit images (PIL modes ``I;16*`` and ``I``) are scaled to 8 bits (``v / 257``, so
  65535 becomes 255); 16-bit RGB(A) images are read by PIL at 8 bits per channel.
  Float images (mode ``F``) are taken as 0..255 and clipped.
* Alpha is dropped; palette images are read as RGB (as grayscale if the palette is gray).
* An image over :data:`MAX_IMAGE_PIXELS` is refused as a bad image (a decompression-bomb
  guard), before any pixel is decoded; ``--skip-bad-images`` skips and counts it.
"""

from __future__ import annotations

import io
import logging
import re
import warnings
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from torchstyle.errors import UserError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
# PIL's own default limit (about 9459 x 9459): larger files are refused before decoding.
MAX_IMAGE_PIXELS = 89_478_485
# PIL modes that hold one gray channel.
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_SIXTEEN_BIT = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
# What PIL raises on a file it cannot decode (unknown format, truncated or corrupt data).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError)
_EXIF_ORIENTATION = 0x0112

DATASET_HINT = "fix or delete the file, or pass --skip-bad-images to skip unreadable images"


class BadImageError(UserError):
    """An image file that cannot be decoded. The message names the file and the fix."""


def bad_image(path: Path, problem: object, hint: str = DATASET_HINT) -> BadImageError:
    """The one error every decoding path raises for an unreadable image."""
    return BadImageError(f"cannot read image {path}: {problem}; {hint}")


def is_hidden(path: Path, root: Path) -> bool:
    """True if ``path`` or any folder between ``root`` and it is hidden (name starts with ``.``)."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def is_image_file(path: Path) -> bool:
    """True for a file whose extension is a known image type."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def list_files(root: Path) -> list[Path]:
    """Every visible file under ``root``, recursively, sorted; hidden files and folders skipped.

    Symlinked folders are followed, as training follows a symlinked class folder (a link
    back to a folder already walked is not walked again).
    """
    import os

    found, seen = [], set()
    for folder, subfolders, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            subfolders[:] = []
            continue
        seen.add(real)
        subfolders[:] = [d for d in subfolders if not d.startswith(".")]
        found += [Path(folder) / n for n in names if not n.startswith(".")]
    return sorted(p for p in found if p.is_file() and not is_hidden(p, root))


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header says, read without decoding the pixels.

    Attributes:
        mode: PIL mode (``L``, ``RGB``, ``I;16``, ...).
        width: Displayed width (after EXIF orientation).
        height: Displayed height.
        orientation: EXIF orientation, 1 (none) to 8.
        gray: The image holds gray values only (a gray mode, or a palette of grays).
    """

    mode: str
    width: int
    height: int
    orientation: int
    gray: bool


@contextmanager
def open_image(path: Path | io.BytesIO, name: Path, hint: str = DATASET_HINT) -> Iterator[Any]:
    """Opens an image with PIL, refusing it as a :class:`BadImageError` if it is unreadable
    or over :data:`MAX_IMAGE_PIXELS` (whatever PIL's own global limit is set to).

    Args:
        path: The file, or its bytes.
        name: The file's path, for the message.
        hint: The fix the message suggests.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError as e:
        found = re.search(r"\((\d+) pixels\)", str(e))
        raise bad_image(name, _too_large_problem(int(found[1]) if found else None), hint) from None
    except (UnidentifiedImageError, *_DECODE_ERRORS) as e:
        raise bad_image(name, e, hint) from None
    with img:
        w, h = img.size
        if w * h > MAX_IMAGE_PIXELS:
            raise bad_image(name, _too_large_problem(w * h, (w, h)), hint)
        try:
            yield img
        except _DECODE_ERRORS as e:
            raise bad_image(name, e, hint) from None


def _too_large_problem(pixels: int | None, size: tuple[int, int] | None = None) -> str:
    shown = f"{size[0]}x{size[1]} = " if size else ""
    shown = f"{shown}{pixels:,} pixels, " if pixels else ""
    return (
        f"{shown}over the limit of {MAX_IMAGE_PIXELS:,} pixels that guards against "
        "decompression bombs; downscale it"
    )


def orientation_of(img: Any) -> int:
    """The EXIF orientation (1-8) of an open PIL image; 1 when it has none or a bad one."""
    try:
        value = int(img.getexif().get(_EXIF_ORIENTATION, 1))
    except (*_DECODE_ERRORS, TypeError):
        return 1
    return value if 1 <= value <= 8 else 1


def _is_gray(img: Any) -> bool:
    if img.mode in GRAY_MODES:
        return True
    if img.mode in ("P", "PA"):
        palette = img.getpalette() or []
        return all(
            palette[i] == palette[i + 1] == palette[i + 2] for i in range(0, len(palette) - 2, 3)
        )
    return False


def read_header(path: Path, hint: str = DATASET_HINT) -> ImageHeader:
    """Reads an image's header (mode, displayed size, orientation) without decoding it.

    Raises:
        BadImageError: The file is not an image, or it is over the pixel limit.
    """
    with open_image(path, path, hint) as img:
        w, h = img.size
        orientation = orientation_of(img)
        if orientation >= 5:  # rotated by 90 degrees: displayed sides swap
            w, h = h, w
        return ImageHeader(img.mode, w, h, orientation, _is_gray(img))


def pil_to_uint8(img: Any, channels: int) -> Tensor:
    """A PIL image (any mode, any bit depth) as a ``(C, H, W)`` uint8 tensor.

    16-bit images are scaled ``v / 257`` (65535 -> 255); float images clipped to 0..255.
    """
    import numpy as np

    if img.mode in _SIXTEEN_BIT or img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        if img.mode in _SIXTEEN_BIT:
            arr = arr / 257.0
        gray = np.clip(np.rint(arr), 0, 255).astype(np.uint8)  # (H, W)
        out = torch.from_numpy(gray).unsqueeze(0)  # (1, H, W)
        return out.expand(channels, -1, -1).contiguous()
    img = img.convert("L" if channels == 1 else "RGB")
    w, h = img.size
    data = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    return data.view(h, w, channels).permute(2, 0, 1)  # (H, W, C) -> (C, H, W)


def read_image(path: Path, channels: int, hint: str = DATASET_HINT) -> Tensor:
    """Decodes one image, as displayed (EXIF orientation applied), to ``(C, H, W)`` uint8.

    Args:
        path: The image file.
        channels: 1 reads grayscale, 3 RGB; other images are converted.
        hint: The fix the error message suggests.

    Raises:
        BadImageError: The file is not a readable image (corrupt, truncated, not an image,
            over the pixel limit).
    """
    with open_image(path, path, hint) as img:
        orientation = orientation_of(img)
        img.load()
        data = pil_to_uint8(img, channels)
    return apply_orientation(data, orientation)


def apply_orientation(image: Tensor, orientation: int) -> Tensor:
    """Turns a stored ``(C, H, W)`` image to its displayed orientation (EXIF values 1-8).

    Pure tensor ops, so the CPU and the ``--decode gpu`` paths do exactly the same.
    """
    if orientation == 2:
        return image.flip(-1)
    if orientation == 3:
        return image.flip(-1).flip(-2)
    if orientation == 4:
        return image.flip(-2)
    if orientation == 5:  # transpose: mirror across the main diagonal
        return image.transpose(-1, -2)
    if orientation == 6:  # displayed turned 90 degrees clockwise
        return image.transpose(-1, -2).flip(-1)
    if orientation == 7:  # transverse: mirror across the anti-diagonal
        return image.transpose(-1, -2).flip(-1).flip(-2)
    if orientation == 8:  # displayed turned 90 degrees counter-clockwise
        return image.transpose(-1, -2).flip(-2)
    return image


def check_bytes(raw: bytes, path: Path, hint: str = DATASET_HINT) -> int:
    """Checks a JPEG's header from its bytes (pixel limit); returns its EXIF orientation.

    Raises:
        BadImageError: Not an image, or over the pixel limit.
    """
    with open_image(io.BytesIO(raw), path, hint) as img:
        return orientation_of(img)


def pixel_limit_note() -> str:
    """One line for logs and docs: the pixel limit."""
    return f"images over {MAX_IMAGE_PIXELS:,} pixels are refused (decompression-bomb guard)"


def warn_skipped(where: str, skipped: int) -> None:
    """Logs how many unreadable images ``--skip-bad-images`` dropped from ``where``."""
    if skipped:
        log.warning("%s: skipped %d unreadable images (--skip-bad-images)", where, skipped)


def inspect_image(path: Path, *, decode: bool, hint: str = DATASET_HINT) -> ImageHeader:
    """Reads an image's header, and with ``decode`` its pixels too (to catch truncation).

    Raises:
        BadImageError: The file is unreadable or over the pixel limit.
    """
    if decode:
        read_image(path, 1, hint)
    return read_header(path, hint)


def inspect_images(
    paths: list[Path],
    *,
    skip_bad: bool,
    hint: str = DATASET_HINT,
    decode: Collection[Path] = (),
) -> dict[Path, ImageHeader]:
    """Headers of many images, read by a few threads (file reads wait on the disk).

    Args:
        paths: The files.
        skip_bad: Decode each file fully and leave the unreadable ones out (each logged);
            without it the first unreadable file raises.
        hint: The fix a message suggests.
        decode: Files to decode fully (a truncated file has a good header), besides all of
            them under ``skip_bad``.

    Returns:
        Path to header, for the readable files.

    Raises:
        BadImageError: A file is unreadable and ``skip_bad`` is off.
    """
    from concurrent.futures import ThreadPoolExecutor

    decoded = set(decode)
    if skip_bad:  # the user passed the flag: no advice to pass it
        hint = "left out (--skip-bad-images)"

    def one(path: Path) -> ImageHeader | BadImageError:
        try:
            return inspect_image(path, decode=skip_bad or path in decoded, hint=hint)
        except BadImageError as e:
            if not skip_bad:
                raise
            return e

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, paths))
    headers = {}
    for path, result in zip(paths, results, strict=True):
        if isinstance(result, BadImageError):
            log.warning("%s", result)
        else:
            headers[path] = result
    return headers


class BackgroundCheck:
    """Decodes images in a background thread; :meth:`wait` raises the first unreadable one.

    For a training folder too large to decode before the first step: the engine waits for
    it before the first evaluation, so a damaged file is named then, never after training.
    """

    def __init__(self, paths: list[Path], hint: str = DATASET_HINT) -> None:
        import threading

        self._paths, self._hint = paths, hint
        self._error: BadImageError | None = None
        self._thread = threading.Thread(target=self._run, name="image-check", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for path in self._paths:
            try:
                read_image(path, 1, self._hint)
            except BadImageError as e:
                self._error = e
                return
            except Exception:
                continue

    def wait(self) -> None:
        """Waits for the check to finish.

        Raises:
            BadImageError: An image is unreadable.
        """
        self._thread.join()
        if self._error is not None:
            raise self._error


def decide_channels(headers: list[ImageHeader], requested: int | None) -> tuple[int, str]:
    """The channels every image is converted to, and the sentence that says why.

    Args:
        headers: Every image of the dataset.
        requested: ``--channels`` (1 or 3), or None to decide from the images: 3 if any
            image has colour, else 1.
    """
    gray = sum(h.gray for h in headers)
    colour = len(headers) - gray
    counts = f"{colour} colour and {gray} grayscale images"
    if requested is not None:
        if requested not in (1, 3):
            raise UserError(f"--channels must be 1 (grayscale) or 3 (RGB), got {requested}")
        target = "grayscale" if requested == 1 else "RGB"
        return requested, f"{requested} (--channels; {counts}, all read as {target})"
    if colour:
        converted = ", the grayscale ones converted to RGB" if gray else ""
        return 3, f"3 ({counts}{converted}; pass --channels 1 for grayscale)"
    return 1, f"1 ({counts}; pass --channels 3 for RGB)"


def expand_image_paths(arguments: list[str]) -> list[Path]:
    """Image files named on a command line, each folder replaced by its images (recursively,
    sorted, hidden files and folders skipped).

    Raises:
        UserError: An argument does not exist, or a folder holds no image.
    """
    paths: list[Path] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            files = list_files(path)
            images = [p for p in files if is_image_file(p)]
            if not images:
                raise UserError(
                    f"folder {path} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))}); "
                    "pass image files or a folder of images"
                )
            if len(files) > len(images):
                log.warning("%s: ignored %d non-image files", path, len(files) - len(images))
            paths.extend(images)
        elif path.is_file():
            paths.append(path)
        else:
            raise UserError(f"no such image file or folder: {argument}; check the path")
    return paths
