"""Fill galleries from images: DocClassifier register folders (with incremental sync), loose
files, and re-embedding from recorded sources when the model changes."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from .embedder import Embedder
from .errors import GalleryError
from .gallery import Gallery
from .hashing import sha256_file
from .register import scan_register

logger = logging.getLogger(__name__)


@dataclass
class SyncReport:
    """What a build/sync/add did. ``failed``: source -> problem; ``duplicates``: label ->
    number of exemplars now registered under it (labels seen more than once)."""

    added: List[str] = field(default_factory=list)
    unchanged: List[str] = field(default_factory=list)
    changed: List[str] = field(default_factory=list)
    removed: List[str] = field(default_factory=list)
    failed: Dict[str, str] = field(default_factory=dict)
    duplicates: Dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return {"added": len(self.added), "unchanged": len(self.unchanged),
                "changed": len(self.changed), "removed": len(self.removed),
                "failed": self.failed, "duplicates": self.duplicates}  # fmt: skip


def open_or_create(path: Union[str, Path], embedder: Embedder, dtype: str = "float16") -> Gallery:
    """Open the gallery for ``embedder``'s bundle/precision, creating it when absent."""
    fp = embedder.bundle.fingerprint(embedder.precision)
    p = Path(path)
    if p.exists():
        return Gallery.open(p, expect_fingerprint=fp)
    return Gallery.create(p, fp, dim=embedder.dim, dtype=dtype)


def _embed_into(gallery: Gallery, embedder: Embedder, paths: Sequence[Path], labels: Sequence[str],
                report: SyncReport, origin: str, replace_ids: Sequence[int] = ()) -> None:  # fmt: skip
    """Embed ``paths`` and commit them (and the removal of ``replace_ids``) in one change."""
    result = embedder.embed_many([str(p) for p in paths])
    for i, err in result.errors.items():
        report.failed[str(paths[i])] = err.problem
    ok = [i for i in range(len(paths)) if result.ok[i]]
    if ok:
        gallery.add(
            result.embeddings[ok], [labels[i] for i in ok],
            sources=[str(Path(paths[i]).resolve()) for i in ok],
            sha256s=[sha256_file(paths[i]) for i in ok],
            metas=[{"origin": origin} for _ in ok], replace_ids=replace_ids,
        )  # fmt: skip
        report.added.extend(str(paths[i]) for i in ok)
    elif replace_ids:
        gallery.remove(ids=replace_ids)


def sync_register(gallery_path: Union[str, Path], embedder: Embedder,
                  register_dir: Union[str, Path], dtype: str = "float16") -> SyncReport:  # fmt: skip
    """Build or update a gallery from a register folder (DocClassifier's label rule).

    Unchanged files (same SHA-256) are not re-embedded; changed files are re-embedded; files
    gone from the folder are removed. A label that occurs more than once is kept as several
    exemplars and reported in ``duplicates``. Corrupt images are reported in ``failed``.
    """
    root = Path(register_dir)
    if not root.is_dir():
        raise GalleryError(f"{root}: register folder not found")
    gallery = open_or_create(gallery_path, embedder, dtype)
    origin = f"register:{root.resolve()}"
    report = SyncReport()
    current = {e.source: e for e in gallery.entries if e.meta.get("origin") == origin}
    todo_paths: List[Path] = []
    todo_labels: List[str] = []
    stale_ids: List[int] = []
    seen = set()
    for label, path in scan_register(root):
        src = str(path.resolve())
        seen.add(src)
        entry = current.get(src)
        digest = sha256_file(path)
        if entry is not None and entry.sha256 == digest and entry.label == label:
            report.unchanged.append(str(path))
            continue
        if entry is not None:
            stale_ids.append(entry.id)
            report.changed.append(str(path))
        todo_paths.append(path)
        todo_labels.append(label)
    gone = [e for src, e in current.items() if src not in seen]
    report.removed.extend(str(e.source) for e in gone)
    # One commit for the whole sync: removals of changed/gone files and the new embeddings.
    _embed_into(gallery, embedder, todo_paths, todo_labels, report, origin,
                replace_ids=stale_ids + [e.id for e in gone])  # fmt: skip
    counts = Counter(e.label for e in Gallery.open(gallery.path).entries)
    report.duplicates = {lbl: n for lbl, n in sorted(counts.items()) if n > 1}
    if report.duplicates:
        logger.warning("%s: labels with several exemplars: %s", gallery.path, report.duplicates)
    return report


def add_images(gallery_path: Union[str, Path], embedder: Embedder, paths: Sequence[Path],
               labels: Optional[Sequence[str]] = None, dtype: str = "float16") -> SyncReport:  # fmt: skip
    """Add image files (label = given, or the file stem); folders use the register rule."""
    gallery = open_or_create(gallery_path, embedder, dtype)
    report = SyncReport()
    files: List[Path] = []
    names: List[str] = []
    for i, p in enumerate(paths):
        if p.is_dir():
            for label, f in scan_register(p):
                files.append(f)
                names.append(label)
        else:
            files.append(p)
            names.append(labels[i] if labels else p.stem)
    _embed_into(gallery, embedder, files, names, report, "add")
    return report


def rebuild(gallery_path: Union[str, Path], embedder: Embedder,
            out_path: Optional[Union[str, Path]] = None) -> SyncReport:  # fmt: skip
    """Re-embed every entry from its recorded source file with ``embedder`` (new model or
    precision) into ``out_path`` (default: replace the gallery). Entries whose source is
    missing are reported in ``failed`` and left out."""
    old = Gallery.open(gallery_path)
    target = Path(out_path or gallery_path)
    fp = embedder.bundle.fingerprint(embedder.precision)
    report = SyncReport()
    sources = [e for e in old.entries if e.source and Path(e.source).is_file()]
    for e in old.entries:
        if e not in sources:
            report.failed[str(e.source)] = "source file not available"
    result = embedder.embed_many([str(e.source) for e in sources])
    ok = [i for i in range(len(sources)) if result.ok[i]]
    for i, err in result.errors.items():
        report.failed[str(sources[i].source)] = err.problem
    new = Gallery.create(target.with_name(target.name + ".rebuild"), fp, embedder.dim, old.dtype,
                         overwrite=True)  # fmt: skip
    if ok:
        new.add(result.embeddings[ok], [sources[i].label for i in ok],
                sources=[sources[i].source for i in ok],
                sha256s=[sources[i].sha256 for i in ok],
                metas=[sources[i].meta for i in ok],
                parents=[sources[i].parent for i in ok])  # fmt: skip
    new.path.replace(target)
    report.added = [str(sources[i].source) for i in ok]
    return report
