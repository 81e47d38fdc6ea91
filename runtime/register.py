"""DocClassifier's "register" folder convention.

Image files (.jpg/.jpeg/.png, any case) are found recursively. A file's label is its
sub-folder names joined by ``_``, plus ``_``, plus the file stem; a file at the root gets just
its stem: ``register/passport/front.jpg`` -> ``passport_front``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Tuple, Union

from .preprocess import list_images


def register_label(root: Union[str, Path], path: Union[str, Path]) -> str:
    """The label DocClassifier gives ``path`` inside register folder ``root``.

    Taken from where the file sits in the folder, not where a symlink points: a register
    entry that links to a file elsewhere keeps the label of its place in the folder."""
    base, p = Path(root), Path(path)
    try:
        rel = p.relative_to(base)
    except ValueError:
        rel = Path(os.path.abspath(p)).relative_to(Path(os.path.abspath(base)))
    parts = [*rel.parent.parts, rel.stem]
    return "_".join(parts)


def scan_register(root: Union[str, Path]) -> List[Tuple[str, Path]]:
    """``(label, path)`` for every image in a register folder, sorted by path."""
    return [(register_label(root, p), p) for p in list_images(root)]
