"""Reproducible zip archives of directory trees, and file lists with hashes.

Bundles hold plain files only, so directory artifacts (a Core ML ``.mlpackage``, the test
vectors) ship as one zip each; the record lists every archived file with its hash.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

from docedge.runtime.errors import BundleError
from docedge.runtime.hashing import sha256_file


def file_entry(root: Path, path: Path) -> Dict[str, Any]:
    """``{"path", "sha256", "size"}`` of one file, ``path`` relative to ``root`` (POSIX)."""
    return {"path": path.relative_to(root).as_posix(), "sha256": sha256_file(path),
            "size": path.stat().st_size}  # fmt: skip


def directory_entries(root: Path, folder: Path) -> List[Dict[str, Any]]:
    """Entries of every regular file under ``folder`` (recursively, sorted), relative to root."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    for p in folder.rglob("*"):
        if p.is_symlink():
            raise BundleError(f"{p}: symbolic links are not allowed in a bundle artifact")
    return [file_entry(root, p) for p in files]


def zip_tree(folder: Path, zip_path: Path) -> List[Dict[str, Any]]:
    """Write ``folder`` (recursively) into ``zip_path`` reproducibly: entries sorted, under
    ``folder.name/``, fixed timestamps and permissions, deflated. Returns the contents list
    (``path``, ``sha256``, ``size`` of every file) for the record.

    Bundles hold plain files only, so directory artifacts (a Core ML ``.mlpackage``, the test
    vectors) ship as one zip each.
    """
    import zipfile

    entries = directory_entries(folder.parent, folder)
    with zipfile.ZipFile(zip_path, "w") as zf:
        for e in entries:
            info = zipfile.ZipInfo(e["path"], date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, (folder.parent / e["path"]).read_bytes())
    return entries
