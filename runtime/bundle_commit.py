"""Staged, atomic changes to a model bundle.

Every change to a bundle (export of a precision, INT8 calibration, threshold tables, an
imported file, a converted mobile artifact, a device-built engine) goes through one
:class:`BundleTransaction`:

1. the bundle's writer lock is taken (``.docedge-bundle.lock``, ``flock``);
2. new files are written under temporary names inside the bundle (``tx.stage(name)``);
3. the caller gates them (accuracy checks against the reference) while the bundle still lists
   only its previous files;
4. on success the staged files are renamed to names that the previous manifest does not use
   (an artifact that replaces a listed file gets a content-derived name), then ``manifest.json``
   is replaced atomically: that rename is the single commit point;
5. files the previous manifest listed and the new one does not are deleted afterwards.

A failure or a kill at any moment before step 4's manifest rename leaves the previous manifest
and every file it lists untouched, so the previous bundle stays loadable; after it, the new one
is complete. Left-over staged files and orphans are removed by the next transaction.
"""

from __future__ import annotations

import copy
import logging
import os
import secrets
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple, Union

from .atomic import fsync_dir, mode_for
from .bundle import MANIFEST_NAME, read_manifest, write_manifest
from .errors import BundleError
from .hashing import sha256_file

logger = logging.getLogger(__name__)

LOCK_NAME = ".docedge-bundle.lock"
STAGED_SUFFIX = ".staged"


class _FileLock:
    """An exclusive advisory lock on a file (``fcntl.flock``; a no-op where it is missing)."""

    def __init__(self, path: Path, timeout_s: float) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self._fd: Optional[int] = None

    def acquire(self) -> None:
        import time

        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: single-writer by convention
            return
        fd = os.open(str(self.path), os.O_RDWR | os.O_CREAT, 0o666)
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise BundleError(
                        f"{self.path.parent}: another docedge process is changing this bundle "
                        f"(lock {self.path.name} held for more than {self.timeout_s:g} s)"
                    ) from None
                time.sleep(0.05)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def _unique_name(name: str, digest: str) -> str:
    """``model_int8.onnx`` -> ``model_int8.3f2a9c1b7d4e.onnx``."""
    stem, dot, ext = name.rpartition(".")
    if not dot:
        return f"{name}.{digest[:12]}"
    return f"{stem}.{digest[:12]}.{ext}"


def listed_files(manifest: Dict[str, Any]) -> Set[str]:
    """Every file name a manifest's artifacts refer to (main files and their extra files)."""
    names: Set[str] = set()
    for rec in manifest.get("artifacts") or []:
        if not isinstance(rec, dict):
            continue
        if isinstance(rec.get("file"), str):
            names.add(rec["file"])
        for extra in rec.get("files") or []:
            if isinstance(extra, dict) and isinstance(extra.get("file"), str):
                names.add(extra["file"])
    return names


class BundleTransaction:
    """One staged, atomic change of a bundle directory (see the module docstring).

    ``create=True`` allows a directory without a manifest (a new bundle); otherwise the bundle
    must exist. ``tx.manifest`` is a deep copy of the current manifest to edit; the change is
    committed when the ``with`` block ends without an exception, and discarded otherwise.
    """

    def __init__(self, bundle_dir: Union[str, Path], create: bool = False,
                 lock_timeout_s: float = 30.0) -> None:  # fmt: skip
        self.root = Path(bundle_dir)
        self.create = create
        self._lock = _FileLock(self.root / LOCK_NAME, lock_timeout_s)
        self.base: Dict[str, Any] = {}
        self.manifest: Dict[str, Any] = {}
        self._staged: List[Path] = []
        self._renames: List[Tuple[Path, str]] = []  # (staged path, final name)
        self._preferred: Dict[str, str] = {}  # content-derived name -> the name asked for
        self._open = False

    # --- life cycle -----------------------------------------------------------------------
    def __enter__(self) -> BundleTransaction:
        if self.create:
            self.root.mkdir(parents=True, exist_ok=True)
        elif not self.root.is_dir():
            raise BundleError(f"{self.root}: not a bundle directory (does not exist or is a file)")
        self._lock.acquire()
        try:
            if (self.root / MANIFEST_NAME).exists() or not self.create:
                self.base = read_manifest(self.root)
            self.manifest = copy.deepcopy(self.base)
            self._remove_leftovers()
        except BaseException:
            self._lock.release()
            raise
        self._open = True
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                self.commit()
            else:
                self.discard()
        finally:
            self._open = False
            self._lock.release()

    # --- staging --------------------------------------------------------------------------
    def stage(self, name: str) -> Path:
        """A temporary path inside the bundle to write the future ``name`` into."""
        self._check_open()
        if os.path.basename(name) != name or name in ("", ".", "..") or name == MANIFEST_NAME:
            raise BundleError(f"{self.root}: {name!r} is not a valid artifact file name")
        path = self.root / f".{name}.{secrets.token_hex(4)}{STAGED_SUFFIX}"
        self._staged.append(path)
        return path

    def add_file(self, staged: Path, name: str) -> Dict[str, Any]:
        """Schedule ``staged`` to become a bundle file; returns ``{file, sha256, size}``.

        The final name is ``name`` unless the current manifest lists a file of that name with
        other content, in which case a content-derived name is used (the old file stays valid
        until the commit point).
        """
        self._check_open()
        if staged not in self._staged or not staged.is_file():
            raise BundleError(f"{staged}: not a file staged by this transaction")
        digest = sha256_file(staged)
        size = staged.stat().st_size
        final = name
        if name in listed_files(self.base):
            old = self.root / name
            same = old.is_file() and old.stat().st_size == size and sha256_file(old) == digest
            final = name if same else _unique_name(name, digest)
        if final != name:
            self._preferred[final] = name
        self._renames.append((staged, final))
        os.chmod(staged, mode_for(self.root / final))
        return {"file": final, "sha256": digest, "size": size}

    def add_artifact(self, staged: Path, name: str, format: str, precision: str,
                     replace: bool = True, **fields: Any) -> Dict[str, Any]:  # fmt: skip
        """Add (or, with ``replace``, swap in) an artifact record for a staged file.

        Records of the same ``format``, ``precision`` and ``variant`` are replaced. Extra keyword
        fields go into the record (``producers``, ``verification``, ``input``, ...).
        """
        entry = self.add_file(staged, name)
        record: Dict[str, Any] = {
            "file": entry["file"],
            "format": format,
            "precision": precision,
            "sha256": entry["sha256"],
            "size": entry["size"],
        }
        record.update(fields)
        key = (format, precision, fields.get("variant"))
        arts = self.manifest.setdefault("artifacts", [])
        if replace:
            arts[:] = [a for a in arts if (a.get("format"), a.get("precision"), a.get("variant")) != key]
        elif any((a.get("format"), a.get("precision"), a.get("variant")) == key for a in arts):
            raise BundleError(
                f"{self.root}: already has a {format}/{precision} artifact (use replace=True)"
            )
        arts.append(record)
        return record

    def remove_artifacts(self, format: str, precision: str) -> int:
        """Drop the records of ``format``/``precision`` (files go at commit); how many."""
        self._check_open()
        arts = self.manifest.get("artifacts") or []
        keep = [a for a in arts if not (a.get("format") == format and a.get("precision") == precision)]
        self.manifest["artifacts"] = keep
        return len(arts) - len(keep)

    # --- commit / discard -----------------------------------------------------------------
    def commit(self) -> None:
        """Rename staged files to their final names, then replace the manifest atomically."""
        self._check_open()
        for staged, final in self._renames:
            target = self.root / final
            if final in listed_files(self.base) and target.exists():
                staged.unlink()  # identical content already listed
                continue
            os.replace(staged, target)
        fsync_dir(self.root)
        write_manifest(self.root, self.manifest)  # the commit point
        logger.debug("bundle %s committed (%d files)", self.root, len(self._renames))
        self._staged = []
        self._renames = []
        self._collect_garbage()
        self._restore_names()

    def _restore_names(self) -> None:
        """Give files committed under content-derived names their asked-for names back.

        A second commit of the same kind: link (or copy) to the free name, replace the
        manifest, then delete the other name; a kill between steps leaves a valid bundle."""
        renames = {u: n for u, n in self._preferred.items() if not (self.root / n).exists()}
        self._preferred = {}
        if not renames:
            return
        for unique, name in renames.items():
            try:
                os.link(self.root / unique, self.root / name)
            except OSError:
                import shutil

                shutil.copy2(self.root / unique, self.root / name)
        for rec in self.manifest.get("artifacts") or []:
            if rec.get("file") in renames:
                rec["file"] = renames[rec["file"]]
            for extra in rec.get("files") or []:
                if isinstance(extra, dict) and extra.get("file") in renames:
                    extra["file"] = renames[extra["file"]]
        fsync_dir(self.root)
        write_manifest(self.root, self.manifest)
        for unique in renames:
            (self.root / unique).unlink()

    def discard(self) -> None:
        """Delete staged files; the bundle is left exactly as it was."""
        for path in self._staged:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        self._staged = []
        self._renames = []

    # --- helpers --------------------------------------------------------------------------
    def _check_open(self) -> None:
        if not self._open:
            raise BundleError(f"{self.root}: bundle transaction used outside its `with` block")

    def _staged_leftovers(self) -> Iterator[Path]:
        for p in self.root.iterdir():
            if p.name.startswith(".") and p.name.endswith(STAGED_SUFFIX):
                yield p

    def _remove_leftovers(self) -> None:
        """Staged files of a killed transaction (we hold the lock, so none is in progress)."""
        for p in self._staged_leftovers():
            logger.info("removing %s left by an interrupted bundle change", p)
            p.unlink()

    def _collect_garbage(self) -> None:
        """Delete files the previous manifest listed and the committed one does not."""
        keep = listed_files(self.manifest)
        for name in sorted(listed_files(self.base) - keep):
            path = self.root / name
            if os.path.basename(name) == name and path.is_file() and not path.is_symlink():
                logger.debug("removing %s (no longer listed)", path)
                path.unlink()
