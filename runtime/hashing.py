"""SHA-256 helpers (streamed; files of any size)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Union

_CHUNK = 1 << 20


def sha256_file(path: Union[str, Path]) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of a byte string."""
    return hashlib.sha256(data).hexdigest()
