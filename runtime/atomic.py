"""Atomic file replacement: write a temporary file beside the target, fsync, rename, fsync the
directory. A crash at any moment leaves the old file or the new one, never a mixture."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Optional, Union


def fsync_dir(folder: Union[str, Path]) -> None:
    """Make a rename in ``folder`` durable (best effort where directories can't be opened)."""
    try:
        fd = os.open(str(folder), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Union[str, Path], write: Callable[[BinaryIO], None],
                 on_stage: Optional[Callable[[str], None]] = None) -> None:  # fmt: skip
    """Replace ``path`` with what ``write(file)`` writes, atomically.

    ``on_stage`` (tests) is called with ``"before-rename"`` and ``"after-rename"``.
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=str(target.parent))
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if on_stage:
            on_stage("before-rename")
        os.replace(tmp, target)
        if on_stage:
            on_stage("after-rename")
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(target.parent)


def atomic_write_bytes(path: Union[str, Path], data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically."""
    def write(f: BinaryIO) -> None:
        f.write(data)

    atomic_write(path, write)
