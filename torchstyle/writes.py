"""Every file torchstyle writes goes through here, so a failed write reads the same everywhere.

A write fails in a handful of ways: the disk is full (``ENOSPC``, ``EDQUOT``), the device
fails (``EIO``), the folder is read-only (``EROFS``) or not ours (``EACCES``, ``EPERM``).
Libraries do not always pass the ``OSError`` on: torch's zip writer turns it into
``RuntimeError: [enforce fail at inline_container.cc:...] unexpected pos``, safetensors into
its own error. So files are opened here, wrapped in a sink that remembers the ``OSError`` the
operating system raised, and whatever the library raises on top of it becomes one
:class:`WriteError` naming the path, the cause and the fix (exit code 2).

Whole files are written to a temporary file in the target folder and renamed over the target:
a reader sees the old file or the new one, never half of one, and a failed write removes its
temporary file (on a full disk it holds the space another write needs).

``tests/test_write_faults.py`` makes every write site fail with every fault, and fails when
the package writes a file anywhere else.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from torchstyle.errors import UserError

#: errno -> what to do about it (the cause is the system's own text, ``os.strerror``).
FAULTS: dict[int, str] = {
    errno.ENOSPC: "free disk space or write to another disk",
    errno.EDQUOT: "free space in your quota or write to another disk",
    errno.EFBIG: "write to another file system",
    errno.EIO: "check the disk or its mount (dmesg), or write to another disk",
    errno.EROFS: "write to a writable folder",
    errno.EACCES: "fix the folder's permissions or write elsewhere",
    errno.EPERM: "fix the folder's permissions or write elsewhere",
}
# Text of errors that libraries raise in place of the OSError (sqlite, safetensors' Rust io).
_TEXT_FAULTS = (
    ("database or disk is full", errno.ENOSPC),
    ("no space left", errno.ENOSPC),
    ("storagefull", errno.ENOSPC),
    ("os error 28", errno.ENOSPC),
    ("disk i/o error", errno.EIO),
    ("input/output error", errno.EIO),
    ("os error 5)", errno.EIO),
    ("read-only file system", errno.EROFS),
    ("readonly database", errno.EROFS),
    ("os error 30", errno.EROFS),
    ("permission denied", errno.EACCES),
    ("os error 13", errno.EACCES),
)


class WriteError(UserError):
    """A file could not be written; what was there before is intact."""

    #: What the failed write left as it was (ends the message).
    kept = "nothing was replaced"

    def __init__(self, path: Path | str, cause: str, fix: str) -> None:
        super().__init__(f"could not write {path}: {cause}; {fix}; {self.kept}")
        self.path = Path(path)
        self.cause = cause


def explain(
    error: BaseException, path: Path | str, *, fix: str = "", kind: type[WriteError] | None = None
) -> WriteError | None:
    """The :class:`WriteError` for ``error`` raised while writing ``path``, or None.

    Args:
        error: What the write raised (``OSError``, torch's zip writer ``RuntimeError``, a
            library's own error wrapping the ``OSError``).
        path: The file being written.
        fix: Added to the generic fix: how this command writes elsewhere (``or pass another
            --run-dir``).
        kind: The error class to raise (a subclass of :class:`WriteError`).
    """
    kind = kind or WriteError
    if isinstance(error, WriteError):
        return error
    code = _errno_of(error)
    if code is None:
        if not _is_torch_writer_error(error):
            return None
        return kind(path, f"the write failed ({_first_line(error)})", _fix("", fix))
    return kind(path, os.strerror(code), _fix(FAULTS[code], fix))


def _fix(generic: str, extra: str) -> str:
    parts = [p for p in (generic or "free disk space or fix permissions", extra) if p]
    return ", ".join(parts)


def _errno_of(error: BaseException) -> int | None:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:  # the cause chain, once
        seen.add(id(current))
        code = getattr(current, "errno", None)
        if isinstance(current, OSError) and code in FAULTS:
            return int(code)
        text = str(current).lower()
        for needle, found in _TEXT_FAULTS:
            if needle in text:
                return found
        current = current.__cause__ or current.__context__
    return None


def _is_torch_writer_error(error: BaseException) -> bool:
    text = str(error)
    return isinstance(error, RuntimeError) and (
        "inline_container" in text or "unexpected pos" in text or "file write failed" in text
    )


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:160]


class _Sink(io.RawIOBase):
    """A binary file that remembers the ``OSError`` its writes raised (libraries may hide it)."""

    def __init__(self, file: IO[bytes]) -> None:
        super().__init__()
        self._file = file
        self.error: OSError | None = None

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._file.seekable()

    def tell(self) -> int:
        return self._file.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def write(self, data: Any) -> int:
        try:
            written = self._file.write(data)
        except OSError as e:
            self.error = self.error or e
            raise
        return len(data) if written is None else written

    def flush(self) -> None:
        if self._file.closed:
            return
        try:
            self._file.flush()
        except OSError as e:
            self.error = self.error or e
            raise

    def sync(self) -> None:
        """Flushes and fsyncs: the bytes are on the disk when this returns."""
        self.flush()
        try:
            os.fsync(self._file.fileno())
        except OSError as e:
            self.error = self.error or e
            raise

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        super().close()


def _open_file(path: Path, mode: str) -> IO[bytes]:
    """Opens ``path`` for writing, in binary ``mode``: the only ``open`` for writing.

    The fault-injection tests replace this function to make a write fail as the operating
    system would.
    """
    return open(path, mode)


def _make_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)


def make_dirs(path: Path | str, *, fix: str = "", kind: type[WriteError] | None = None) -> None:
    """Creates folder ``path`` and its parents.

    Raises:
        WriteError: It cannot be created.
    """
    try:
        _make_dir(Path(path))
    except OSError as e:
        raise (explain(e, path, fix=fix, kind=kind) or e) from None


def temporary_name(path: Path) -> Path:
    """The temporary file a write of ``path`` goes through (same folder and suffix)."""
    # The suffix stays last: torch.export.save warns on a name not ending in .pt2.
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


def atomic_write(
    path: Path | str,
    fill: Callable[[IO[bytes]], Any],
    *,
    fix: str = "",
    kind: type[WriteError] | None = None,
) -> None:
    """Writes ``path`` whole or not at all: ``fill`` writes a temporary file, renamed over it.

    Args:
        path: The file to (re)place; its folder is created.
        fill: Writes the content to the binary file object it is given (``torch.save(obj,
            f)``, ``f.write(data)``, ``save_image(img, f, format="png")``).
        fix: How this command writes elsewhere, added to the error's fix.
        kind: The error class to raise (a subclass of :class:`WriteError`).

    Raises:
        WriteError: The write failed; ``path`` is untouched and no temporary file is left.
    """
    path = Path(path)
    make_dirs(path.parent, fix=fix, kind=kind)
    tmp = temporary_name(path)
    sink: _Sink | None = None
    try:
        sink = _Sink(_open_file(tmp, "wb"))
        with sink:
            fill(sink)  # type: ignore[arg-type]  # a RawIOBase is a binary file
            sink.sync()
        with contextlib.suppress(OSError):  # a rewritten file keeps its mode
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if not isinstance(e, Exception):
            raise
        # What the operating system raised, under whatever the library made of it.
        recorded = sink.error if sink is not None else None
        found = explain(recorded, path, fix=fix, kind=kind) if recorded is not None else None
        raise (found or explain(e, path, fix=fix, kind=kind) or e) from None
    _fsync_dir(path.parent)


def atomic_write_text(path: Path | str, text: str, *, fix: str = "") -> None:
    """Writes ``text`` (UTF-8) to ``path`` whole or not at all (see :func:`atomic_write`)."""
    data = text.encode("utf-8")
    atomic_write(path, lambda f: f.write(data), fix=fix)


def atomic_write_dir(
    path: Path | str,
    fill: Callable[[Path], Any],
    *,
    fix: str = "",
    kind: type[WriteError] | None = None,
) -> None:
    """Writes folder ``path`` whole or not at all: ``fill`` fills a temporary folder, renamed.

    The temporary folder is ``.NAME.tmp`` beside ``path`` (other processes may write into
    it as well); a folder left there by a killed attempt is the caller's to remove first.

    Raises:
        WriteError: The write failed; ``path`` is untouched and the temporary folder removed.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        _make_dir(tmp)
        fill(tmp)
        os.replace(tmp, path)
    except BaseException as e:  # torch.distributed.checkpoint raises a BaseException
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise (explain(e, path, fix=fix, kind=kind) or e) from None
    _fsync_dir(path.parent)


def copy_file(
    src: Path,
    dst: Path,
    *,
    link: bool = False,
    fix: str = "",
    kind: type[WriteError] | None = None,
) -> None:
    """Copies (or hard-links, where it can) ``src`` to ``dst`` whole or not at all."""
    if link:
        tmp = temporary_name(dst)
        try:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            os.link(src, tmp)
            os.replace(tmp, dst)
            return
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
    with open(src, "rb") as source:
        atomic_write(dst, lambda f: shutil.copyfileobj(source, f, 1 << 20), fix=fix, kind=kind)
    with contextlib.suppress(OSError):
        shutil.copystat(src, dst)


def open_append(path: Path | str, *, fix: str = "") -> AppendFile:
    """Opens ``path`` to append text lines (``metrics.jsonl``); its errors are :class:`WriteError`."""
    path = Path(path)
    make_dirs(path.parent, fix=fix)
    try:
        return AppendFile(path, _Sink(_open_file(path, "ab")), fix)
    except OSError as e:
        raise (explain(e, path, fix=fix) or e) from None


class AppendFile:
    """A text file open for appending whose write errors are :class:`WriteError`."""

    def __init__(self, path: Path, sink: _Sink, fix: str) -> None:
        self.path, self._sink, self._fix = path, sink, fix

    def write(self, text: str, *, sync: bool = False) -> None:
        """Appends ``text`` and flushes it (fsyncs it too with ``sync``)."""
        with guarded(self.path, fix=self._fix):
            self._sink.write(text.encode("utf-8"))
            if sync:
                self._sink.sync()
            else:
                self._sink.flush()

    def close(self) -> None:
        """Closes the file."""
        self._sink.close()


def append_text(path: Path | str, text: str, *, sync: bool = True, fix: str = "") -> None:
    """Appends ``text`` to ``path`` (fsynced: a record that must survive a crash)."""
    file = open_append(path, fix=fix)
    try:
        file.write(text, sync=sync)
    finally:
        file.close()


@contextlib.contextmanager
def guarded(path: Path | str, *, fix: str = "") -> Iterator[None]:
    """Turns a write failure inside the block into a :class:`WriteError` about ``path``.

    For writers that own their files (TensorBoard's event writer): other errors pass through.
    """
    try:
        yield
    except Exception as e:
        found = explain(e, path, fix=fix)
        if found is None:
            raise
        raise found from None


def _fsync_dir(path: Path) -> None:
    # The rename itself must reach the disk, or a power cut could undo it.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
