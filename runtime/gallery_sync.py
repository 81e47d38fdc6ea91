"""Fill galleries from images: DocClassifier register folders (with incremental sync), loose
files and folders, and re-embedding from recorded sources when the model changes."""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from .embedder import Embedder
from .errors import GalleryError
from .gallery import Gallery, writer_lock
from .hashing import sha256_file
from .register import register_label, scan_register

logger = logging.getLogger(__name__)


@dataclass
class SyncReport:
    """What a build/sync/add/rebuild did (lists of source paths).

    ``added``: embedded and registered; ``reused``: registered with the embedding of an
    identical file already in the gallery (moved/renamed/copied, not re-embedded);
    ``unchanged``: same path and content, left alone; ``changed``: content changed,
    re-embedded; ``removed``: gone from the folder, dropped; ``failed``: source -> problem
    (corrupt image, missing file); ``duplicates``: label -> number of exemplars registered
    under it, for labels registered more than once (kept, never overwritten)."""

    added: List[str] = field(default_factory=list)
    reused: List[str] = field(default_factory=list)
    unchanged: List[str] = field(default_factory=list)
    changed: List[str] = field(default_factory=list)
    removed: List[str] = field(default_factory=list)
    failed: Dict[str, str] = field(default_factory=dict)
    duplicates: Dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return {"added": len(self.added), "reused": len(self.reused),
                "unchanged": len(self.unchanged), "changed": len(self.changed),
                "removed": len(self.removed), "failed": self.failed,
                "duplicates": self.duplicates}  # fmt: skip


def _fingerprint(embedder: Any) -> Dict[str, str]:
    """The fingerprint of the artifact ``embedder`` runs (:meth:`Embedder.fingerprint`; a
    duck-typed embedder without one: its bundle's ONNX artifact of its precision)."""
    fn = getattr(embedder, "fingerprint", None)
    if callable(fn):
        fp: Dict[str, str] = fn()
        return fp
    return dict(embedder.bundle.fingerprint(embedder.precision))


def open_or_create(path: Union[str, Path], embedder: Embedder, dtype: str = "float16") -> Gallery:
    """Open the gallery for ``embedder``'s bundle/precision (refusing one made with another
    model: :class:`FingerprintMismatchError`), creating it when absent."""
    fp = _fingerprint(embedder)
    p = Path(path)
    if p.exists():
        return Gallery.open(p, expect_fingerprint=fp)
    return Gallery.create(p, fp, dim=embedder.dim, dtype=dtype)


def _duplicates(gallery: Gallery, report: SyncReport) -> None:
    counts = Counter(Gallery.open(gallery.path).row_labels)
    report.duplicates = {lbl: n for lbl, n in sorted(counts.items()) if n > 1}
    if report.duplicates:
        logger.warning("%s: labels with several exemplars (all kept): %s", gallery.path,
                       report.duplicates)  # fmt: skip


def _embed_into(gallery: Gallery, embedder: Embedder, paths: Sequence[Path],
                labels: Sequence[str], digests: Sequence[str], report: SyncReport, origin: str,
                replace_ids: Sequence[int] = (),
                reuse: Optional[Dict[str, np.ndarray[Any, Any]]] = None) -> None:  # fmt: skip
    """Embed ``paths`` (or reuse the embedding of an identical file) and commit them, with
    the removal of ``replace_ids``, as one change."""
    reuse = reuse or {}
    fresh = [i for i in range(len(paths)) if digests[i] not in reuse]
    vectors = np.full((len(paths), embedder.dim), np.nan, np.float32)
    ok = np.zeros(len(paths), bool)
    for i in range(len(paths)):
        if digests[i] in reuse:
            vectors[i] = reuse[digests[i]]
            ok[i] = True
    if fresh:
        result = embedder.embed_many([str(paths[i]) for i in fresh])
        for j, err in result.errors.items():
            report.failed[str(paths[fresh[j]])] = err.problem
        for j, i in enumerate(fresh):
            if result.ok[j]:
                vectors[i] = result.embeddings[j]
                ok[i] = True
    rows = np.flatnonzero(ok).tolist()
    if rows:
        gallery.add(
            vectors[rows], [labels[i] for i in rows],
            sources=[str(Path(paths[i]).resolve()) for i in rows],
            sha256s=[digests[i] for i in rows],
            metas=[{"origin": origin} for _ in rows], replace_ids=replace_ids,
        )  # fmt: skip
        for i in rows:
            (report.reused if digests[i] in reuse else report.added).append(str(paths[i]))
    elif replace_ids:
        gallery.remove(ids=replace_ids)


def sync_register(
    gallery_path: Union[str, Path],
    embedder: Embedder,
    register_dir: Union[str, Path],
    dtype: str = "float16",
) -> SyncReport:
    """Build or update a gallery from a register folder (DocClassifier's label rule:
    sub-folder names joined by ``_``, plus ``_``, plus the file stem).

    Incremental: unchanged files (same path, same SHA-256) are not re-embedded; a file whose
    content is already registered (moved, renamed, copied) reuses that embedding; changed
    files are re-embedded; files gone from the folder are removed. The whole sync is one
    atomic change. A label that occurs more than once is kept as several exemplars and
    reported in ``duplicates``. Corrupt images are reported in ``failed`` (the rest goes on).
    """
    root = Path(register_dir)
    if not root.is_dir():
        raise GalleryError(f"{root}: register folder not found")
    # Planned and committed under the writer lock: two concurrent syncs cannot both add the
    # same files, and no change acknowledged meanwhile is lost.
    with writer_lock(gallery_path):
        return _sync_locked(gallery_path, embedder, root, dtype)


def _sync_locked(gallery_path: Union[str, Path], embedder: Embedder, root: Path,
                 dtype: str) -> SyncReport:  # fmt: skip
    gallery = open_or_create(gallery_path, embedder, dtype)
    origin = f"register:{root.resolve()}"
    report = SyncReport()
    mine = [e for e in gallery.entries if e.meta.get("origin") == origin]
    current = {e.source: e for e in mine}
    todo_paths: List[Path] = []
    todo_labels: List[str] = []
    todo_digests: List[str] = []
    stale_ids: List[int] = []
    seen = set()
    for label, path in scan_register(root):
        src = str(path.resolve())
        seen.add(src)
        entry = current.get(src)
        try:
            digest = sha256_file(path)
        except OSError as e:
            report.failed[str(path)] = f"cannot read ({e})"
            continue
        if entry is not None and entry.sha256 == digest and entry.label == label:
            report.unchanged.append(str(path))
            continue
        if entry is not None:
            stale_ids.append(entry.id)
            report.changed.append(str(path))
        todo_paths.append(path)
        todo_labels.append(label)
        todo_digests.append(digest)
    gone = [e for src, e in current.items() if src not in seen]
    report.removed.extend(str(e.source) for e in gone)
    # Embeddings of identical content already in the gallery (any origin, same model).
    wanted = set(todo_digests)
    reuse = {e.sha256: np.asarray(gallery.embeddings[e.row], np.float32)
             for e in gallery.entries if e.sha256 in wanted}  # fmt: skip
    # One commit for the whole sync: removals of changed/gone files and the new embeddings.
    _embed_into(gallery, embedder, todo_paths, todo_labels, todo_digests, report, origin,
                replace_ids=stale_ids + [e.id for e in gone], reuse=reuse)  # fmt: skip
    _duplicates(gallery, report)
    logger.info("%s: sync of %s: %s", gallery.path, root, report.to_dict())
    return report


def add_images(gallery_path: Union[str, Path], embedder: Embedder,
               paths: Sequence[Union[str, Path]], labels: Optional[Sequence[str]] = None,
               dtype: str = "float16") -> SyncReport:  # fmt: skip
    """Add image files and folders with the one label rule docedge uses everywhere: a file's
    label is its path relative to the register folder it belongs to (sub-folders joined by
    ``_``, plus ``_``, plus the stem), so ``add`` gives a file inside a register this gallery
    was synced from the same label ``sync_register``/``gallery build`` gives it; a file or
    folder outside any known register is its own root (a file: its stem). ``labels`` override.
    Corrupt images are reported, the others added in one atomic change. A label already
    registered gets another exemplar (reported)."""
    if labels is not None and len(labels) != len(paths):
        raise GalleryError(f"{len(labels)} labels for {len(paths)} paths")
    with writer_lock(gallery_path):
        gallery = open_or_create(gallery_path, embedder, dtype)
        return _add_locked(gallery, embedder, paths, labels)


def _add_locked(gallery: Gallery, embedder: Embedder, paths: Sequence[Union[str, Path]],
                labels: Optional[Sequence[str]]) -> SyncReport:  # fmt: skip
    report = SyncReport()
    files: List[Path] = []
    names: List[str] = []
    digests: List[str] = []
    roots = _register_roots(gallery)
    for i, item in enumerate(paths):
        p = Path(item)
        root = _root_of(p, roots)
        if p.is_dir():
            found = [(register_label(root, f) if root else lbl, f) for lbl, f in scan_register(p)]
        else:
            found = [(labels[i] if labels else (register_label(root, p) if root else p.stem), p)]
        for label, f in found:
            try:
                digests.append(sha256_file(f))
            except OSError as e:
                report.failed[str(f)] = f"cannot read ({e})"
                continue
            files.append(f)
            names.append(label)
    _embed_into(gallery, embedder, files, names, digests, report, "add")
    _duplicates(gallery, report)
    return report


def _register_roots(gallery: Gallery) -> List[Path]:
    """Register folders this gallery was synced from (recorded as each entry's origin)."""
    roots = {str(e.meta.get("origin", ""))[len("register:"):] for e in gallery.entries
             if str(e.meta.get("origin", "")).startswith("register:")}  # fmt: skip
    return sorted((Path(r) for r in roots if r), key=lambda r: -len(r.parts))


def _root_of(path: Path, roots: Sequence[Path]) -> Optional[Path]:
    """The innermost known register folder containing ``path``, if any."""
    full = Path(os.path.abspath(path))
    for r in roots:
        try:
            full.relative_to(r)
            return r
        except ValueError:
            continue
    return None


def rebuild(gallery_path: Union[str, Path], embedder: Embedder,
            out_path: Optional[Union[str, Path]] = None,
            drop_missing: bool = False) -> SyncReport:  # fmt: skip
    """Re-embed every entry from its recorded source file with ``embedder`` (a new model,
    artifact or precision), keeping entry ids, labels and records, into ``out_path``
    (default: replace the gallery, atomically).

    A source is usable when the file exists and still has the recorded SHA-256. Unless
    ``drop_missing``, a gallery with unusable sources is left untouched and
    :class:`GalleryError` lists them; with it, those entries are dropped (``failed``).
    """
    # The whole rebuild holds the writer lock: an add acknowledged meanwhile would otherwise be
    # dropped by the re-embedded commit.
    with writer_lock(gallery_path):
        return _rebuild_locked(gallery_path, embedder, out_path, drop_missing)


def _rebuild_locked(gallery_path: Union[str, Path], embedder: Embedder,
                    out_path: Optional[Union[str, Path]], drop_missing: bool) -> SyncReport:  # fmt: skip
    old = Gallery.open(gallery_path)
    old.check_embeddings()
    report = SyncReport()
    usable = []
    for e in old.entries:
        if not e.source:
            report.failed[f"entry {e.id} ({e.label})"] = "no recorded source file"
        elif not Path(e.source).is_file():
            report.failed[e.source] = "source file not available"
        elif e.sha256 and sha256_file(e.source) != e.sha256:
            report.failed[e.source] = "source file changed since it was registered"
        else:
            usable.append(e)
    if report.failed and not drop_missing:
        listed = "; ".join(f"{k}: {v}" for k, v in list(report.failed.items())[:10])
        raise GalleryError(
            f"{old.path}: {len(report.failed)} of {len(old)} entries cannot be re-embedded "
            f"({listed}); nothing changed. Restore the files or drop those entries "
            "(--drop-missing)"
        )
    result = embedder.embed_many([str(e.source) for e in usable])
    for i, err in result.errors.items():
        report.failed[str(usable[i].source)] = err.problem
    ok = [i for i in range(len(usable)) if result.ok[i]]
    if len(ok) < len(usable) and not drop_missing:
        raise GalleryError(f"{old.path}: {len(usable) - len(ok)} source images failed to "
                           f"embed ({report.failed}); nothing changed")  # fmt: skip
    fp = _fingerprint(embedder)
    kept, dropped = old.reembed([usable[i].id for i in ok], result.embeddings[ok], fp,
                                out_path=out_path)  # fmt: skip
    kept_set = set(kept)
    report.added = [str(usable[i].source) for i in ok if usable[i].id in kept_set]
    if dropped:
        logger.warning("%s: %d entries dropped by the rebuild (no usable source): %s",
                       old.path, len(dropped), dropped[:20])  # fmt: skip
    return report
