"""What every converter shares: typed errors, importing a converter behind its extra, file
records (one hash per file, also for multi-file artifacts) and producer versions."""

from __future__ import annotations

import importlib
import logging
import platform
from pathlib import Path
from typing import Any, Dict, List, Sequence, Union

from docedge.runtime.errors import BackendUnavailableError, BundleError
from docedge.runtime.hashing import sha256_bytes, sha256_file

logger = logging.getLogger(__name__)

#: format -> the pip extra that brings its converter (None: part of docedge[export]).
EXTRAS: Dict[str, Any] = {"ort": None, "fixed": None, "tflite": "litert", "coreml": "coreml",
                          "ncnn": "ncnn"}  # fmt: skip


class ConverterUnavailableError(BackendUnavailableError):
    """A converter (or the interpreter that verifies its output) is not installed."""


class ConversionError(BundleError):
    """A converter failed or produced an unusable artifact; the message names the file."""


def require(module: str, extra: str, what: str) -> Any:
    """Import ``module`` or raise :class:`ConverterUnavailableError` naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ConverterUnavailableError(
            f"{what} needs the Python module {module!r}, which is not installed ({e}); "
            f"install it with: pip install 'docedge[{extra}]'"
        ) from None


def dist_version(name: str) -> str:
    """Installed version of a distribution, or ``"unknown"``."""
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # PackageNotFoundError, or metadata missing
        return "unknown"


def versions(*dists: str) -> Dict[str, str]:
    """``{"python": ..., dist: version, ...}`` for provenance records."""
    out = {"python": platform.python_version()}
    for d in dists:
        out[d] = dist_version(d)
    return out


def file_entry(root: Path, path: Path) -> Dict[str, Any]:
    """``{"path", "sha256", "size"}`` of one file, ``path`` relative to ``root`` (POSIX)."""
    return {"path": path.relative_to(root).as_posix(), "sha256": sha256_file(path),
            "size": path.stat().st_size}  # fmt: skip


def files_digest(entries: Sequence[Dict[str, Any]]) -> str:
    """SHA-256 of a file list in ``sha256sum`` form (``"<sha256>  <path>\\n"``, sorted by path):
    the digest recorded for a directory artifact (a Core ML ``.mlpackage``)."""
    lines = "".join(f"{e['sha256']}  {e['path']}\n" for e in sorted(entries, key=lambda e: e["path"]))
    return sha256_bytes(lines.encode("utf-8"))


def directory_entries(root: Path, folder: Path) -> List[Dict[str, Any]]:
    """Entries of every regular file under ``folder`` (recursively, sorted), relative to root."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    for p in folder.rglob("*"):
        if p.is_symlink():
            raise ConversionError(f"{p}: symbolic links are not allowed in a bundle artifact")
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


def output_record(root: Union[str, Path], name: str, extra_files: Sequence[str] = ()) -> Dict[str, Any]:
    """``file``, ``sha256``, ``size`` and ``files`` of an artifact written at ``root/name``.

    A plain file: its own hash and size; ``extra_files`` (e.g. ncnn's ``.bin`` beside the
    ``.param``) are listed with theirs in ``files``. A directory (``.mlpackage``): every file in
    it is listed, ``sha256`` is :func:`files_digest` of the list and ``size`` the total.
    """
    base = Path(root)
    p = base / name
    if p.is_dir():
        entries = directory_entries(base, p)
        if not entries:
            raise ConversionError(f"{p}: the converter wrote an empty directory")
        return {"file": name, "sha256": files_digest(entries),
                "size": sum(int(e["size"]) for e in entries), "files": entries}  # fmt: skip
    if not p.is_file():
        raise ConversionError(f"{p}: the converter did not write this file")
    rec: Dict[str, Any] = {"file": name, "sha256": sha256_file(p), "size": p.stat().st_size}
    if extra_files:
        rec["files"] = [{"file": f, "sha256": sha256_file(base / f), "size": (base / f).stat().st_size}
                        for f in extra_files]  # fmt: skip
    return rec
