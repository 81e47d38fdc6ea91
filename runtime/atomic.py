"""Atomic file replacement: write a temporary file beside the target, fsync, rename, fsync the
directory. A crash at any moment leaves the old file or the new one, never a mixture.

File modes: a new file gets ``0o666 & ~umask`` (what ``open()`` would give it); a replaced file
keeps the mode of the file it replaces. ``mkstemp``'s private 0600 never leaks into a bundle or
a gallery, so a service account can read what CI built.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import BinaryIO, Callable, Optional, Union

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask (read without changing it for longer than two system calls)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def mode_for(target: Union[str, Path]) -> int:
    """Permission bits a file written at ``target`` should get: the old file's, or the umask's."""
    try:
        return os.stat(str(target)).st_mode & 0o7777
    except OSError:
        return 0o666 & ~current_umask()


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
    mode = mode_for(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=str(target.parent))
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
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
