"""Write faults, injected where the operating system would raise them.

Every file torchstyle writes is opened by ``torchstyle.writes._open_file``; TensorBoard opens
its event files through its ``gfile`` module and torch.distributed.checkpoint through
``FileSystem.create_stream``. :func:`injected` replaces those three openers: a read-only or
forbidden folder fails at ``open`` (``EROFS``, ``EACCES``), a full or failing disk at the
first ``write`` after a few bytes reached the file (``ENOSPC``, ``EIO``), as a real one does.
The libraries on top (torch's zip writer, PIL, matplotlib, safetensors, TensorBoard) then
raise whatever they really raise for it.

A subprocess gets the same fault from the environment: ``TORCHSTYLE_TEST_FAULT=FAULT:GLOB:SKIP``
with ``tests/faultsite`` on ``PYTHONPATH`` (its ``sitecustomize`` calls :func:`install_from_env`).
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

FAULTS = {
    "ENOSPC": errno.ENOSPC,
    "EIO": errno.EIO,
    "EROFS": errno.EROFS,
    "EACCES": errno.EACCES,
}
AT_OPEN = {errno.EROFS, errno.EACCES}
ENV = "TORCHSTYLE_TEST_FAULT"


class FailingFile(io.RawIOBase):
    """A real file whose first write puts ``room`` bytes on disk (half when None), then fails."""

    def __init__(self, file: Any, code: int, room: int | None) -> None:
        super().__init__()
        self._file, self._code, self._room = file, code, room

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._file.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def fileno(self) -> int:
        return self._file.fileno()

    def write(self, data: Any) -> int:
        data = bytes(data)
        if self._room is None:
            self._room = len(data) // 2
        if len(data) <= self._room:
            self._room -= len(data)
            return self._file.write(data)
        self._file.write(data[: self._room])
        self._room = 0
        self._file.flush()
        raise OSError(self._code, os.strerror(self._code))

    def flush(self) -> None:
        if not self._file.closed:
            self._file.flush()

    def close(self) -> None:
        self._file.close()
        super().close()


def opener(real: Callable[..., Any], fault: str, pattern: str, skip: int = 0) -> Callable[..., Any]:
    """``real`` (an ``open``), failing with ``fault`` for files named like ``pattern``.

    The first ``skip`` matching opens succeed (the previous checkpoint gets written).
    """
    code = FAULTS[fault]
    seen = {"n": 0}

    def open_(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        name = Path(os.fsdecode(path)).name
        writing = any(c in mode for c in "wax+")
        if not writing or not fnmatch.fnmatch(name, pattern):
            return real(path, mode, *args, **kwargs)
        seen["n"] += 1
        if seen["n"] <= skip:
            return real(path, mode, *args, **kwargs)
        if code in AT_OPEN:
            raise OSError(code, os.strerror(code), str(path))
        binary = real(path, mode if "b" in mode else mode + "b")
        room = 0 if "a" in mode else None
        failing = FailingFile(binary, code, room)
        if "b" in mode:
            return failing
        return io.TextIOWrapper(io.BufferedWriter(failing), encoding=kwargs.get("encoding"))

    return open_


@contextlib.contextmanager
def injected(fault: str, pattern: str, skip: int = 0) -> Iterator[None]:
    """Makes every write of a file named like ``pattern`` fail with ``fault`` in this block."""
    undo = install(fault, pattern, skip)
    try:
        yield
    finally:
        undo()


def install(fault: str, pattern: str, skip: int = 0) -> Callable[[], None]:
    """Installs the fault; returns the function that removes it."""
    import types

    from torchstyle import writes

    undo: list[Callable[[], None]] = []
    real_open = writes._open_file
    writes._open_file = opener(real_open, fault, pattern, skip)
    undo.append(lambda: setattr(writes, "_open_file", real_open))
    with contextlib.suppress(ImportError):
        from tensorboard.compat.tensorflow_stub.io import gfile

        real_io = gfile.io
        gfile.io = types.SimpleNamespace(open=opener(io.open, fault, pattern, skip))
        undo.append(lambda: setattr(gfile, "io", real_io))
    with contextlib.suppress(ImportError):
        from torch.distributed.checkpoint import filesystem

        real_stream = filesystem.FileSystem.create_stream
        open_ = opener(open, fault, pattern, skip)

        @contextlib.contextmanager
        def create_stream(self: Any, path: Any, mode: str) -> Iterator[Any]:
            with open_(path, mode) as stream:
                yield stream

        filesystem.FileSystem.create_stream = create_stream
        undo.append(lambda: setattr(filesystem.FileSystem, "create_stream", real_stream))

    def remove() -> None:
        for step in reversed(undo):
            step()

    return remove


def install_from_env() -> None:
    """Installs ``$TORCHSTYLE_TEST_FAULT`` (``FAULT:GLOB[:SKIP]``) in this process, if set."""
    value = os.environ.get(ENV)
    if not value:
        return
    fault, pattern, *rest = value.split(":")
    install(fault, pattern, int(rest[0]) if rest else 0)


def leftovers(folder: Path) -> list[str]:
    """Temporary files or folders a write left under ``folder``."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if ".tmp" in p.name)
