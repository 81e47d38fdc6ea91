"""A persistent, crash-safe, fingerprinted gallery of registered document embeddings.

One flat file (format: ``docs/gallery-format.md``, schema version 2): a 320-byte little-endian
header with a section table and SHA-256 checksums, three small UTF-8 JSON sections (``meta``:
fingerprint and counters; ``labels``: entry ids, labels and parent labels; ``records``:
source file, its SHA-256, time added and free-form metadata per entry), then the embedding
matrix (float16 or float32, 64-byte aligned, memory-mapped on open).

Every change is committed by writing a complete new file beside the old one, fsync, atomic
rename and directory fsync, so a reader or a crash only ever sees the old or the new state.
Writers take an exclusive ``flock`` on ``<gallery>.lock``; a second writer waits up to
``lock_timeout`` seconds, then fails with :class:`GalleryError`. Readers take no lock: an open
gallery is a consistent snapshot (its memory map pins the file it opened).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import struct
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import (
    Any,
    BinaryIO,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import numpy as np

from .atomic import atomic_write
from .errors import FingerprintMismatchError, GalleryError
from .label_table import LabelTable, scan_label_section

logger = logging.getLogger(__name__)

MAGIC = b"DEDGEGAL"
SCHEMA_VERSION = 2
#: Schema versions this module reads (version 1 files are rewritten as 2 on the next change).
READABLE_VERSIONS = (1, 2)
HEADER_SIZE = 320
ALIGN = 64
DTYPES = {1: "float16", 2: "float32"}
DTYPE_CODES = {v: k for k, v in DTYPES.items()}
_LE = {"float16": "<f2", "float32": "<f4"}
#: Section order in the header's section table (the file stores them in this order too).
SECTIONS = ("meta", "labels", "records", "embeddings")
LABEL_COLUMNS = ("id", "label", "parent")
RECORD_COLUMNS = ("source", "sha256", "added", "meta")
# magic, schema_version, header_size, dim, dtype code, count, fingerprint sha256
_HEAD = struct.Struct("<8sIIIIQ32s")
# offset, length, sha256 (one per section, 4 sections from byte 64)
_SECTION = struct.Struct("<QQ32s")
_RESERVED_AT = _HEAD.size + len(SECTIONS) * _SECTION.size  # 256
_HEADER_SHA_AT = HEADER_SIZE - 32  # 288: SHA-256 of bytes [0, 288)
#: At byte 256 (after the section table): a marker and the 64-bit wrap-around sum of the
#: embedding block read as little-endian uint64 words (zero-padded to 8 bytes). Any single
#: flipped bit changes it; it is checked at memory bandwidth before the first search.
_SUM64 = struct.Struct("<8sQ")
_SUM64_AT = 256
SUM64_MARKER = b"SUM64LE\0"
# Schema 1 (read only): magic, version, dim, dtype, reserved, count, table off/len, emb off/len,
# table sha256; the embedding sha256 follows; 128 bytes.
_HEAD_V1 = struct.Struct("<8sIIII QQQQQ 32s")
_HEADER_SIZE_V1 = 128
#: Rows copied per block when a change rewrites the embedding matrix (bounded memory).
_COPY_ROWS = 65536
#: Test hook: a writer crashes (``os._exit(86)``) at this commit stage when the variable names
#: it: ``begin``, ``header``, ``table``, ``data``, ``before-rename``, ``after-rename``.
CRASH_ENV = "DOCEDGE_GALLERY_CRASH_AT"
#: Writer lock timeout in seconds when none is given (default 30).
LOCK_TIMEOUT_ENV = "DOCEDGE_GALLERY_LOCK_TIMEOUT"

FINGERPRINT_FIELDS = {
    "model_sha256": "model hash",
    "artifact_sha256": "artifact",
    "precision": "precision",
    "preprocess": "pre-processing",
    "artifact_format": "artifact format",
    "artifact_weights_sha256": "artifact weights",
}


def _now() -> str:
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    return now.isoformat().replace("+00:00", "Z")


def parent_of(label: str) -> Optional[str]:
    """``passport/damaged`` -> ``passport``; labels without ``/`` have no parent."""
    return label.rsplit("/", 1)[0] if "/" in label else None


def fingerprint_digest(fingerprint: Dict[str, str]) -> bytes:
    """SHA-256 of the canonical JSON of a fingerprint (sorted keys, no spaces, ASCII)."""
    canon = json.dumps(fingerprint, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canon.encode("ascii")).digest()


#: Fingerprint fields whose value is JSON text: compared as parsed values, so a gallery written
#: by another encoder (compact Kotlin/Swift JSON, other key order) with the same values matches.
JSON_FINGERPRINT_FIELDS = ("preprocess",)


def _same_json(a: Optional[str], b: Optional[str]) -> bool:
    try:
        return a is not None and b is not None and json.loads(a) == json.loads(b)
    except ValueError:
        return False


def describe_fingerprint_difference(have: Dict[str, str], expected: Dict[str, str]) -> List[str]:
    """One human line per differing fingerprint field (model hash, artifact, precision,
    pre-processing, or any other recorded key)."""
    out = []
    for key in sorted(set(have) | set(expected), key=lambda k: (k not in FINGERPRINT_FIELDS, k)):
        a, b = have.get(key), expected.get(key)
        if a == b or (key in JSON_FINGERPRINT_FIELDS and _same_json(a, b)):
            continue
        name = FINGERPRINT_FIELDS.get(key, key)
        if key == "preprocess" and a and b:
            try:
                pa, pb = json.loads(a), json.loads(b)
                keys = sorted(k for k in set(pa) | set(pb) if pa.get(k) != pb.get(k))
                detail = ", ".join(f"{k}: gallery {pa.get(k)!r} vs bundle {pb.get(k)!r}"
                                   for k in keys)  # fmt: skip
                out.append(f"{name} [{key}] differs ({detail})")
                continue
            except (ValueError, AttributeError):
                pass
        if key.endswith("sha256"):
            a_s = f"{a[:16]}..." if a else "none"
            b_s = f"{b[:16]}..." if b else "none"
        else:
            a_s, b_s = repr(a), repr(b)
        out.append(f"{name} [{key}] differs (gallery {a_s}, bundle {b_s})")
    return out


@dataclass
class Entry:
    """One registered exemplar (row ``row`` of the embedding matrix)."""

    id: int
    label: str
    parent: Optional[str]
    source: Optional[str]
    sha256: Optional[str]
    added: str
    meta: Dict[str, Any]
    row: int

    def to_dict(self) -> Dict[str, Any]:
        return {"id": self.id, "label": self.label, "parent": self.parent,
                "source": self.source, "sha256": self.sha256, "added": self.added,
                "meta": self.meta}  # fmt: skip


def _crash_point(stage: str) -> None:
    if os.environ.get(CRASH_ENV) == stage:
        os._exit(86)


class Gallery:
    """An opened gallery: a consistent snapshot of one file. Mutations commit atomically.

    ``embeddings`` is ``(count, dim)`` float16/float32, memory-mapped (row ``i`` belongs to
    entry ``i``). The JSON sections are checksummed and parsed on first use. Open with
    :meth:`open` or :meth:`create`; mutations (:meth:`add`, :meth:`remove`, :meth:`compact`,
    :meth:`reembed`) re-read the file under the writer lock, commit, and refresh this object.
    """

    def __init__(self, path: Path, embeddings: np.ndarray[Any, Any], dtype: str, dim: int,
                 schema_version: int, sections: Dict[str, Callable[[], Any]],
                 emb_sha256: str, fingerprint_sha256: Optional[bytes],
                 lock_timeout: Optional[float] = None) -> None:  # fmt: skip
        self.path = path
        self.embeddings = embeddings
        self.dtype = dtype
        self.dim = dim
        self.schema_version = schema_version
        self.lock_timeout = lock_timeout
        self._loaders = sections
        self._parsed: Dict[str, Any] = {}  # meta, records: dicts; labels: a LabelTable
        self._emb_sha256 = emb_sha256
        self._fp_sha256 = fingerprint_sha256
        self._entries: Optional[List[Entry]] = None
        self._sum64: Optional[int] = None
        self._embeddings_checked = False

    # --- sections (parsed lazily, checksum verified on first use) ----------------------------
    def _section(self, name: str) -> Any:
        if name not in self._parsed:
            # meta and labels are small and always checked together (what every use needs)
            for n in ("meta", "labels") if name in ("meta", "labels") else (name,):
                if n not in self._parsed:
                    self._parsed[n] = self._loaders[n]()
        return self._parsed[name]

    def label_table(self) -> LabelTable:
        """The labels section as columns (entry ids, per-row label and parent codes; no
        Python object per entry)."""
        table: LabelTable = self._section("labels")
        return table

    @property
    def meta(self) -> Dict[str, Any]:
        """``fingerprint``, ``created``, ``updated``, ``next_id``."""
        meta: Dict[str, Any] = self._section("meta")
        if self._fp_sha256 is not None and "_fp_checked" not in meta:
            if fingerprint_digest(meta.get("fingerprint") or {}) != self._fp_sha256:
                raise GalleryError(f"{self.path}: the header's fingerprint checksum does not "
                                   "match the meta section (corrupt file)")  # fmt: skip
            meta["_fp_checked"] = True
        return meta

    @property
    def fingerprint(self) -> Dict[str, str]:
        """Model hash, artifact hash, precision and pre-processing that made the embeddings."""
        fp: Dict[str, str] = dict(self.meta.get("fingerprint") or {})
        return fp

    @property
    def ids(self) -> List[int]:
        """Entry id of every row."""
        ids: List[int] = self._section("labels")["id"]
        return ids

    @property
    def row_labels(self) -> List[str]:
        """Label of every row."""
        labels: List[str] = self._section("labels")["label"]
        return labels

    @property
    def row_parents(self) -> List[Optional[str]]:
        """Parent label (or None) of every row."""
        parents: List[Optional[str]] = self._section("labels")["parent"]
        return parents

    @property
    def entries(self) -> List[Entry]:
        """The label table as :class:`Entry` objects in row order (built on first use)."""
        if self._entries is None:
            lab, rec = self._section("labels"), self._section("records")
            self._entries = [
                Entry(int(i), str(lbl), par, src, sha, str(added or ""), dict(meta or {}), row)
                for row, (i, lbl, par, src, sha, added, meta) in enumerate(zip(
                    lab["id"], lab["label"], lab["parent"], rec["source"], rec["sha256"],
                    rec["added"], rec["meta"]))
            ]  # fmt: skip
        return self._entries

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def count(self) -> int:
        return len(self)

    @property
    def labels(self) -> List[str]:
        """Distinct labels, in first-registration order."""
        return self.label_table().labels

    def label_ids(self) -> np.ndarray[Any, Any]:
        """Index into :attr:`labels` for every row, ``(count,)`` int64."""
        return self.label_table().label_codes

    def label_parents(self) -> List[Optional[str]]:
        """Parent of every distinct label (its first row's; aligned with :attr:`labels`)."""
        return self.label_table().label_parents()

    def entry_ids(self) -> np.ndarray[Any, Any]:
        """Entry id of every row, ``(count,)`` int64 (:attr:`ids` as one array)."""
        return self.label_table().ids

    def rows_of(self, ids: Iterable[int]) -> List[int]:
        """Rows of the given entry ids (ids not present are skipped)."""
        want = {int(i) for i in ids}
        return [row for row, i in enumerate(self.ids) if i in want]

    # --- identity and integrity -------------------------------------------------------------
    def check_fingerprint(self, expected: Dict[str, str],
                          also: Sequence[Dict[str, str]] = ()) -> None:  # fmt: skip
        """Refuse (``FingerprintMismatchError``) a gallery made with another model bundle,
        precision, artifact or pre-processing; the message names every difference to
        ``expected``. ``also``: other fingerprints accepted as well (the artifacts the bundle
        records as interchangeable with the one in use: :meth:`Bundle.gallery_fingerprints`)."""
        diffs = describe_fingerprint_difference(self.fingerprint, expected)
        if diffs and any(not describe_fingerprint_difference(self.fingerprint, fp) for fp in also):
            return
        if diffs:
            prec = expected.get("precision") or "P"
            if expected.get("artifact_format"):  # an OpenVINO IR made the expected embeddings
                prec += f" --backend {expected['artifact_format']}"
            raise FingerprintMismatchError(
                f"{self.path}: made with another model bundle, precision or pre-processing: "
                + "; ".join(diffs)
                + f". Re-embed it from its recorded source files: docedge gallery rebuild "
                f"BUNDLE {self.path} --precision {prec}"
            )

    def check_embeddings(self) -> None:
        """Verify the embedding block once per opened snapshot, at memory bandwidth: its
        64-bit word sum (files written before the sum existed: the full SHA-256). Called
        before the first search and before any change re-checksums the block, so corrupt
        data is never searched silently nor "repaired" into a valid-looking file."""
        if self._embeddings_checked:
            return
        if self._sum64 is None:
            self.verify()
        else:
            raw = self.embeddings.reshape(-1).view(np.uint8)
            if sum64(raw) != self._sum64:
                raise GalleryError(f"{self.path}: embedding data checksum mismatch (corrupt "
                                   "file: a flipped bit or a partial overwrite); restore it or "
                                   "rebuild it from its sources (docedge gallery rebuild)")  # fmt: skip
        self._embeddings_checked = True

    def verify(self) -> None:
        """Check every section's SHA-256, including the embedding block (a full read)."""
        for name in ("meta", "labels", "records"):
            self._section(name)
        _ = self.meta
        h = hashlib.sha256()
        flat = self.embeddings.reshape(-1)
        step = _COPY_ROWS * max(1, self.dim)
        for start in range(0, flat.shape[0], step):
            h.update(np.ascontiguousarray(flat[start : start + step]).view(np.uint8).data)
        if h.hexdigest() != self._emb_sha256:
            raise GalleryError(f"{self.path}: embedding data checksum mismatch (corrupt file)")
        self._embeddings_checked = True

    # --- open / create ----------------------------------------------------------------------
    @classmethod
    def create(cls, path: Union[str, Path], fingerprint: Dict[str, str], dim: int = 256,
               dtype: str = "float16", overwrite: bool = False,
               lock_timeout: Optional[float] = None) -> Gallery:  # fmt: skip
        """Create an empty gallery file for embeddings with this ``fingerprint``."""
        p = Path(path)
        if dtype not in DTYPE_CODES:
            raise GalleryError(f"{p}: dtype must be one of {sorted(DTYPE_CODES)}, not {dtype!r}")
        if dim <= 0:
            raise GalleryError(f"{p}: dim must be positive, not {dim}")
        with _locked(p, lock_timeout):
            if p.exists() and not overwrite:
                raise GalleryError(f"{p}: exists already (use overwrite to replace it)")
            meta = {"fingerprint": dict(fingerprint), "created": _now(), "updated": _now(),
                    "next_id": 0}  # fmt: skip
            _commit(p, meta, _empty_columns(), [], 0, dim, dtype)
        return cls.open(p, lock_timeout=lock_timeout)

    @classmethod
    def open(cls, path: Union[str, Path], expect_fingerprint: Optional[Dict[str, str]] = None,
             verify: bool = False, lazy: bool = False, lock_timeout: Optional[float] = None,
             also_accept: Sequence[Dict[str, str]] = ()) -> Gallery:  # fmt: skip
        """Open a gallery: header checks and one memory map of the file.

        By default the ``meta`` and ``labels`` sections are checksummed and parsed now (the
        ``records`` section on first use). ``lazy``: nothing but the header now (milliseconds
        at any size; sections are checked when first used). ``verify``: every section and the
        embeddings (a full read). ``expect_fingerprint``: refuse
        (:class:`FingerprintMismatchError`) a gallery made with another model or precision
        (``also_accept``: fingerprints accepted as well, see :meth:`check_fingerprint`).
        """
        p = Path(path)
        try:
            with open(p, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                head = f.read(HEADER_SIZE)
                g = _parse(p, head, size, f, lock_timeout)
        except FileNotFoundError:
            raise GalleryError(f"{p}: gallery file not found") from None
        except IsADirectoryError:
            raise GalleryError(f"{p}: is a directory, not a gallery file") from None
        except OSError as e:
            raise GalleryError(f"{p}: cannot read ({e})") from None
        if expect_fingerprint is not None or not lazy:
            _ = g.meta
            g._section("labels")
        if expect_fingerprint is not None:
            g.check_fingerprint(expect_fingerprint, also_accept)
        if verify:
            g.verify()
        return g

    # --- mutations (each one commits atomically under the writer lock) ----------------------
    def add(
        self,
        embeddings: np.ndarray[Any, Any],
        labels: Sequence[str],
        sources: Optional[Sequence[Optional[str]]] = None,
        sha256s: Optional[Sequence[Optional[str]]] = None,
        metas: Optional[Sequence[Optional[Dict[str, Any]]]] = None,
        parents: Optional[Sequence[Optional[str]]] = None,
        replace_ids: Sequence[int] = (),
        normalize: bool = False,
    ) -> List[int]:
        """Append exemplars (unit vectors ``(n, dim)``); returns their new entry ids.

        A label already present is kept as another exemplar of that label (logged, never
        overwritten). ``parents`` default to the part of the label before its last ``/``.
        ``replace_ids``: entries removed in the same atomic commit (an update is then one
        change: a crash leaves the old gallery or the updated one). ``normalize``: scale rows
        to unit length instead of refusing vectors that are not.
        """
        n = len(labels)
        emb = _check_vectors(self.path, embeddings, n, self.dim, normalize)
        for name, col in (("sources", sources), ("sha256s", sha256s), ("metas", metas),
                          ("parents", parents)):  # fmt: skip
            if col is not None and len(col) != n:
                raise GalleryError(f"{self.path}: {len(col)} {name} for {n} labels")
        for lbl in labels:
            if not isinstance(lbl, str) or not lbl:
                raise GalleryError(f"{self.path}: labels must be non-empty strings, got {lbl!r}")
        with _locked(self.path, self.lock_timeout):
            cur = Gallery.open(self.path)
            cur.check_embeddings()
            existing = set(cur.labels)
            dup = sorted({lbl for lbl in labels if lbl in existing})
            if dup:
                logger.info("%s: %d label(s) already registered, kept as extra exemplars: %s",
                            self.path, len(dup), dup[:10])  # fmt: skip
            drop = {int(i) for i in replace_ids}
            keep = [row for row, i in enumerate(cur.ids) if i not in drop]
            meta = _clone_meta(cur.meta)
            cols = _take_columns(cur, keep)
            ids = []
            now = _now()
            for i, label in enumerate(labels):
                eid = int(meta["next_id"])
                meta["next_id"] = eid + 1
                ids.append(eid)
                cols["id"].append(eid)
                cols["label"].append(str(label))
                given = parents[i] if parents is not None else None
                cols["parent"].append(given if given else parent_of(str(label)))
                cols["source"].append(sources[i] if sources is not None else None)
                cols["sha256"].append(sha256s[i] if sha256s is not None else None)
                cols["added"].append(now)
                cols["meta"].append(dict(metas[i] or {}) if metas is not None else {})
            blocks = _chain(_row_blocks(cur.embeddings, keep), [emb])
            _commit(self.path, meta, cols, blocks, len(keep) + n, self.dim, cur.dtype)
        self._reload()
        return ids

    def remove(self, labels: Sequence[str] = (), ids: Sequence[int] = ()) -> int:
        """Remove every exemplar of ``labels`` and the entries ``ids``; returns how many.
        Nothing is written when nothing matches."""
        with _locked(self.path, self.lock_timeout):
            cur = Gallery.open(self.path)
            cur.check_embeddings()
            drop_labels, drop_ids = set(labels), {int(i) for i in ids}
            keep = [row for row, (i, lbl) in enumerate(zip(cur.ids, cur.row_labels))
                    if lbl not in drop_labels and i not in drop_ids]  # fmt: skip
            removed = len(cur) - len(keep)
            if removed:
                _commit(self.path, _clone_meta(cur.meta), _take_columns(cur, keep),
                        _row_blocks(cur.embeddings, keep), len(keep), cur.dim,
                        cur.dtype)  # fmt: skip
        self._reload()
        return removed

    def compact(self, dtype: Optional[str] = None) -> Dict[str, Any]:
        """Rewrite the file in the current schema (optionally converting the embedding dtype)
        and delete temporary files that crashed writers left beside it. Returns what it did."""
        with _locked(self.path, self.lock_timeout):
            cur = Gallery.open(self.path, verify=True)
            new_dtype = dtype or cur.dtype
            if new_dtype not in DTYPE_CODES:
                raise GalleryError(f"{self.path}: dtype must be one of {sorted(DTYPE_CODES)}")
            before = self.path.stat().st_size
            stale = sorted(self.path.parent.glob(f".{self.path.name}.*.tmp"))
            for t in stale:  # no writer is active while we hold the lock
                try:
                    t.unlink()
                except OSError as e:
                    logger.warning("cannot remove stale temporary file %s: %s", t, e)
            _commit(self.path, _clone_meta(cur.meta), _take_columns(cur, range(len(cur))),
                    _row_blocks(cur.embeddings, range(len(cur))), len(cur), cur.dim,
                    new_dtype)  # fmt: skip
        self._reload()
        return {"size_before": before, "size_after": self.path.stat().st_size,
                "stale_temp_files_removed": len(stale), "dtype": self.dtype,
                "schema_version": self.schema_version}  # fmt: skip

    def reembed(self, ids: Sequence[int], embeddings: np.ndarray[Any, Any],
                fingerprint: Dict[str, str], out_path: Optional[Union[str, Path]] = None,
                dtype: Optional[str] = None) -> Tuple[List[int], List[int]]:  # fmt: skip
        """Replace the fingerprint and the embeddings of entries ``ids`` (new model or
        precision), keeping their ids, labels and records; every other entry is dropped
        (its embedding belongs to the old model). Written to ``out_path`` (default: this
        gallery, atomically). Returns ``(kept ids, dropped ids)``."""
        ids = [int(i) for i in ids]
        if len(set(ids)) != len(ids):
            raise GalleryError(f"{self.path}: reembed got the same entry id twice")
        emb = _check_vectors(self.path, embeddings, len(ids), embeddings.shape[-1], False)
        target = Path(out_path) if out_path is not None else self.path
        with _locked(self.path, self.lock_timeout):
            cur = Gallery.open(self.path)
            row_of = {i: r for r, i in enumerate(cur.ids)}  # old embeddings are not kept
            pairs = sorted((row_of[i], k) for k, i in enumerate(ids) if i in row_of)
            rows = [r for r, _ in pairs]
            kept = [cur.ids[r] for r in rows]
            kept_set = set(kept)
            dropped = [i for i in cur.ids if i not in kept_set]
            meta = _clone_meta(cur.meta)
            meta["fingerprint"] = dict(fingerprint)
            cols = _take_columns(cur, rows)
            new = emb[[k for _, k in pairs]]
            new_dtype = dtype or cur.dtype
            if target.resolve() == self.path.resolve():
                _commit(target, meta, cols, [new], len(rows), new.shape[1], new_dtype)
            else:
                with _locked(target, self.lock_timeout):
                    _commit(target, meta, cols, [new], len(rows), new.shape[1], new_dtype)
        if target.resolve() == self.path.resolve():
            self._reload()
        return kept, dropped

    def _reload(self) -> None:
        fresh = Gallery.open(self.path, lock_timeout=self.lock_timeout)
        self.__dict__.update(fresh.__dict__)

    def info(self) -> Dict[str, Any]:
        """Summary for ``docedge gallery info``."""
        meta = self.meta
        return {"path": str(self.path), "schema_version": self.schema_version,
                "count": len(self), "labels": len(self.labels), "dim": self.dim,
                "dtype": self.dtype, "fingerprint": self.fingerprint,
                "created": meta.get("created"), "updated": meta.get("updated"),
                "next_id": meta.get("next_id"), "size_bytes": self.path.stat().st_size,
                "sub_labels": sum(1 for p in self.label_parents() if p)}  # fmt: skip


# --- helpers -------------------------------------------------------------------------------


def _empty_columns() -> Dict[str, List[Any]]:
    return {k: [] for k in LABEL_COLUMNS + RECORD_COLUMNS}


def _take_columns(g: Gallery, rows: Iterable[int]) -> Dict[str, List[Any]]:
    rows = list(rows)
    lab, rec = g._section("labels"), g._section("records")
    cols: Dict[str, List[Any]] = {}
    for k in LABEL_COLUMNS:
        cols[k] = [lab[k][r] for r in rows]
    for k in RECORD_COLUMNS:
        cols[k] = [rec[k][r] for r in rows]
    return cols


def _clone_meta(meta: Dict[str, Any]) -> Dict[str, Any]:
    m: Dict[str, Any] = json.loads(json.dumps({k: v for k, v in meta.items()
                                               if not k.startswith("_")}))  # fmt: skip
    m["updated"] = _now()
    return m


def _check_vectors(path: Path, embeddings: Any, n: int, dim: int,
                   normalize: bool) -> np.ndarray[Any, Any]:  # fmt: skip
    emb = np.asarray(embeddings, np.float32)
    if emb.ndim == 1 and n == 1:
        emb = emb[None]
    if emb.shape != (n, dim):
        raise GalleryError(f"{path}: expected embeddings of shape ({n}, {dim}), got {emb.shape}")
    if not np.all(np.isfinite(emb)):
        raise GalleryError(f"{path}: embeddings contain NaN/inf (failed images?)")
    norms = np.linalg.norm(emb, axis=1)
    if normalize:
        if np.any(norms == 0):
            raise GalleryError(f"{path}: cannot normalize an all-zero embedding")
        unit: np.ndarray[Any, Any] = emb / norms[:, None]
        return unit
    if n and np.max(np.abs(norms - 1.0)) > 1e-2:
        raise GalleryError(
            f"{path}: embeddings must be L2-normalized (norms {norms.min():.4g} to "
            f"{norms.max():.4g}); pass normalize=True to scale them"
        )
    return emb


def _row_blocks(emb: np.ndarray[Any, Any], rows: Iterable[int]) -> Iterator[np.ndarray[Any, Any]]:
    """The given rows of ``emb`` in blocks (contiguous slices where possible)."""
    idx = np.asarray(list(rows), np.int64)
    if idx.size == 0:
        return
    if idx.size == emb.shape[0] and np.array_equal(idx, np.arange(idx.size)):
        for start in range(0, idx.size, _COPY_ROWS):
            yield np.asarray(emb[start : start + _COPY_ROWS])
        return
    for start in range(0, idx.size, _COPY_ROWS):
        yield np.asarray(emb[idx[start : start + _COPY_ROWS]])


def _chain(*parts: Iterable[np.ndarray[Any, Any]]) -> Iterator[np.ndarray[Any, Any]]:
    for part in parts:
        yield from part


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _commit(path: Path, meta: Dict[str, Any], cols: Dict[str, List[Any]],
            blocks: Iterable[np.ndarray[Any, Any]], count: int, dim: int,
            dtype: str) -> None:  # fmt: skip
    """Write a complete new gallery file next to ``path``, fsync it, rename it over ``path``
    and fsync the directory. The caller holds the writer lock."""
    _crash_point("begin")
    meta = {k: v for k, v in meta.items() if not k.startswith("_")}
    fp_sha = fingerprint_digest(meta.get("fingerprint") or {})
    parts = [_json_bytes(meta), _json_bytes({k: cols[k] for k in LABEL_COLUMNS}),
             _json_bytes({k: cols[k] for k in RECORD_COLUMNS})]  # fmt: skip
    for k, v in cols.items():
        if len(v) != count:
            raise GalleryError(f"{path}: internal error: column {k} has {len(v)} != {count} rows")
    offsets = []
    pos = HEADER_SIZE
    for raw in parts:
        offsets.append(pos)
        pos += len(raw)
    e_off = (pos + ALIGN - 1) // ALIGN * ALIGN
    le = np.dtype(_LE[dtype])
    e_len = count * dim * le.itemsize

    def write(f: BinaryIO) -> None:
        f.write(b"\0" * HEADER_SIZE)  # placeholder: the real header is written last
        _crash_point("header")
        for raw in parts:
            f.write(raw)
        f.write(b"\0" * (e_off - pos))
        _crash_point("table")
        h = hashlib.sha256()
        total = _Sum64()
        rows = 0
        for block in blocks:
            b = np.ascontiguousarray(block, dtype=le)
            if b.ndim != 2 or b.shape[1] != dim:
                raise GalleryError(f"{path}: internal error: block of shape {b.shape}")
            rows += b.shape[0]
            flat = b.view(np.uint8).reshape(-1)
            h.update(flat.data)
            total.update(flat)
            f.write(flat.data)
        if rows != count:
            raise GalleryError(f"{path}: internal error: wrote {rows} rows, expected {count}")
        _crash_point("data")
        sections = [(o, len(raw), hashlib.sha256(raw).digest())
                    for o, raw in zip(offsets, parts)]  # fmt: skip
        sections.append((e_off, e_len, h.digest()))
        head = _HEAD.pack(MAGIC, SCHEMA_VERSION, HEADER_SIZE, dim, DTYPE_CODES[dtype],
                          count, fp_sha)  # fmt: skip
        head += b"".join(_SECTION.pack(*s) for s in sections)
        head = head.ljust(_SUM64_AT, b"\0") + _SUM64.pack(SUM64_MARKER, total.value())
        head = head.ljust(_HEADER_SHA_AT, b"\0")
        head += hashlib.sha256(head).digest()
        f.seek(0)
        f.write(head)

    # The one atomic-replace helper (temporary file beside it, fsync, rename, directory fsync;
    # the file's mode follows the umask or the replaced file): crash points at each stage.
    atomic_write(Path(path), write, on_stage=_crash_point)


def _validate_section(p: Path, name: str, obj: Dict[str, Any]) -> None:
    """Types and invariants of a parsed section (a crafted file with valid checksums must be a
    GalleryError here, never a KeyError/TypeError deep inside the classifier)."""
    def is_int(x: Any) -> bool:
        return isinstance(x, int) and not isinstance(x, bool)

    def opt_str(x: Any) -> bool:
        return x is None or isinstance(x, str)

    if name == "meta":
        fp = obj.get("fingerprint")
        if not isinstance(fp, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                               for k, v in fp.items()):  # fmt: skip
            raise _bad(p, "meta section: 'fingerprint' must be an object of strings")
        if not is_int(obj.get("next_id")) or obj["next_id"] < 0:
            raise _bad(p, "meta section: 'next_id' must be a non-negative integer")
    elif name == "labels":
        ids, labels, parents = obj["id"], obj["label"], obj["parent"]
        if not all(is_int(i) and i >= 0 for i in ids):
            raise _bad(p, "labels section: entry ids must be non-negative integers")
        if len(set(ids)) != len(ids):
            raise _bad(p, "labels section: duplicate entry ids")
        if not all(isinstance(x, str) and x for x in labels):
            raise _bad(p, "labels section: labels must be non-empty strings")
        if not all(opt_str(x) for x in parents):
            raise _bad(p, "labels section: parents must be strings or null")
    elif name == "records":
        for col in ("source", "sha256", "added"):
            if col in obj and not all(opt_str(x) for x in obj[col]):
                raise _bad(p, f"records section: {col!r} values must be strings or null")
        if "meta" in obj and not all(isinstance(x, dict) for x in obj["meta"]):
            raise _bad(p, "records section: 'meta' values must be objects")


class _Sum64:
    """Streaming 64-bit wrap-around sum of a byte stream read as little-endian uint64 words."""

    def __init__(self) -> None:
        self._sum = 0
        self._tail = b""

    def update(self, raw: np.ndarray[Any, Any]) -> None:
        data = np.asarray(raw, np.uint8).reshape(-1)
        if self._tail:
            need = 8 - len(self._tail)
            head, data = data[:need].tobytes(), data[need:]
            self._tail += head
            if len(self._tail) < 8:
                return
            self._sum += int.from_bytes(self._tail, "little")
            self._tail = b""
        whole = data.size // 8 * 8
        if whole:
            words = np.frombuffer(np.ascontiguousarray(data[:whole]).data, dtype="<u8")
            self._sum += int(words.sum(dtype=np.uint64))
        self._tail = data[whole:].tobytes()

    def value(self) -> int:
        total = self._sum
        if self._tail:
            total += int.from_bytes(self._tail.ljust(8, b"\0"), "little")
        return total % (1 << 64)


def sum64(raw: np.ndarray[Any, Any]) -> int:
    """The embedding block's fast checksum (see ``_SUM64``)."""
    s = _Sum64()
    s.update(raw)
    return s.value()


def _bad(p: Path, what: str) -> GalleryError:
    return GalleryError(f"{p}: {what}")


def _parse(p: Path, head: bytes, size: int, f: BinaryIO,
           lock_timeout: Optional[float]) -> Gallery:  # fmt: skip
    if len(head) < 16 or head[:8] != MAGIC:
        raise _bad(p, "not a docedge gallery (bad magic or truncated header)")
    version = struct.unpack_from("<I", head, 8)[0]
    if version not in READABLE_VERSIONS:
        raise _bad(p, f"unknown gallery schema version {version} (this docedge reads "
                      f"{', '.join(map(str, READABLE_VERSIONS))})")  # fmt: skip
    if version == 1:
        return _parse_v1(p, head, size, f, lock_timeout)
    if len(head) < HEADER_SIZE:
        raise _bad(p, "truncated header (truncated or corrupt file)")
    if hashlib.sha256(head[:_HEADER_SHA_AT]).digest() != head[_HEADER_SHA_AT:HEADER_SIZE]:
        raise _bad(p, "header checksum mismatch (corrupt file)")
    _magic, _v, header_size, dim, code, count, fp_sha = _HEAD.unpack_from(head)
    if header_size != HEADER_SIZE:
        raise _bad(p, f"header size {header_size} != {HEADER_SIZE} (corrupt file)")
    if code not in DTYPES:
        raise _bad(p, f"unknown embedding dtype code {code}")
    dtype = DTYPES[code]
    secs = {name: _SECTION.unpack_from(head, _HEAD.size + i * _SECTION.size)
            for i, name in enumerate(SECTIONS)}  # fmt: skip
    e_off, e_len, e_sha = secs["embeddings"]
    end = HEADER_SIZE
    for name in SECTIONS:
        off, length, _sha = secs[name]
        if off < end or off + length > size:
            raise _bad(p, f"inconsistent header: {name} section outside the file "
                          "(truncated or corrupt file)")  # fmt: skip
        end = off + length
    if e_off % ALIGN or e_len != count * dim * np.dtype(_LE[dtype]).itemsize:
        raise _bad(p, "inconsistent header: embedding block size or alignment (truncated or "
                      "corrupt file)")  # fmt: skip
    marker, emb_sum = _SUM64.unpack_from(head, _SUM64_AT)
    fast_sum = emb_sum if marker == SUM64_MARKER else None
    mm: np.ndarray[Any, Any] = np.memmap(f, dtype=np.uint8, mode="r", shape=(size,))

    def loader(name: str, columns: Tuple[str, ...]) -> Callable[[], Any]:
        off, length, sha = secs[name]

        def load() -> Any:
            raw = mm[off : off + length].tobytes()
            if hashlib.sha256(raw).digest() != sha:
                raise _bad(p, f"label table checksum mismatch ({name} section; corrupt file)")
            if name == "labels":
                fast = scan_label_section(raw, count)  # docedge's own layout, vectorized
                if fast is not None:
                    return fast
            try:
                obj = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as e:
                raise _bad(p, f"{name} section is not valid JSON ({e})") from None
            if not isinstance(obj, dict):
                raise _bad(p, f"{name} section is not a JSON object")
            for c in columns:
                if not isinstance(obj.get(c), list) or len(obj[c]) != count:
                    raise _bad(p, f"{name} section: column {c!r} missing or not {count} long")
            _validate_section(p, name, obj)
            if name == "labels":
                return LabelTable.from_columns(obj["id"], obj["label"], obj["parent"])
            return obj

        return load

    sections = {"meta": loader("meta", ()), "labels": loader("labels", LABEL_COLUMNS),
                "records": loader("records", RECORD_COLUMNS)}  # fmt: skip
    emb = mm[e_off : e_off + e_len].view(_LE[dtype]).reshape(count, dim)
    g = Gallery(p, emb, dtype, dim, version, sections, e_sha.hex(), fp_sha, lock_timeout)
    g._sum64 = fast_sum
    return g


def _parse_v1(p: Path, head: bytes, size: int, f: BinaryIO,
              lock_timeout: Optional[float]) -> Gallery:  # fmt: skip
    """Schema 1 (one JSON table of entry objects); read only, rewritten as 2 on change."""
    if len(head) < _HEADER_SIZE_V1:
        raise _bad(p, "truncated header (truncated or corrupt file)")
    (_m, _v, dim, code, _r, count, t_off, t_len, e_off, e_len,
     t_sha) = _HEAD_V1.unpack_from(head)  # fmt: skip
    e_sha = head[_HEAD_V1.size : _HEAD_V1.size + 32]
    if code not in DTYPES:
        raise _bad(p, f"unknown embedding dtype code {code}")
    dtype = DTYPES[code]
    if (
        t_off < _HEADER_SIZE_V1
        or t_off + t_len > size
        or e_off % ALIGN
        or e_off + e_len > size
        or e_len != count * dim * np.dtype(dtype).itemsize
    ):
        raise _bad(p, "inconsistent header (truncated or corrupt file)")
    mm: np.ndarray[Any, Any] = np.memmap(f, dtype=np.uint8, mode="r", shape=(size,))
    cache: Dict[str, Any] = {}

    def table() -> Dict[str, Any]:
        if not cache:
            raw = mm[t_off : t_off + t_len].tobytes()
            if hashlib.sha256(raw).digest() != t_sha:
                raise _bad(p, "label table checksum mismatch (corrupt file)")
            try:
                t = json.loads(raw.decode("utf-8"))
                rows = t["entries"]
            except (UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
                raise _bad(p, f"label table is not valid ({e})") from None
            if len(rows) != count:
                raise _bad(p, f"header count {count} != {len(rows)} entries")
            cache["meta"] = {k: t.get(k) for k in ("fingerprint", "created", "updated",
                                                   "next_id")}  # fmt: skip
            cols = {k: [r.get(k) for r in rows] for k in LABEL_COLUMNS}
            cache["labels"] = LabelTable.from_columns(cols["id"], cols["label"], cols["parent"])
            cache["records"] = {k: [r.get(k) for r in rows] for k in RECORD_COLUMNS}
            cache["records"]["meta"] = [r.get("meta") or {} for r in rows]
        return cache

    sections: Dict[str, Callable[[], Any]] = {
        name: (lambda name=name: table()[name])  # type: ignore[misc]
        for name in ("meta", "labels", "records")
    }
    emb = mm[e_off : e_off + e_len].view(_LE[dtype]).reshape(count, dim)
    return Gallery(p, emb, dtype, dim, 1, sections, e_sha.hex(), None, lock_timeout)


@contextmanager
def _locked(path: Path, timeout: Optional[float] = None) -> Iterator[None]:
    """Exclusive writer lock on ``<path>.lock``: waits up to ``timeout`` seconds (default
    ``$DOCEDGE_GALLERY_LOCK_TIMEOUT`` or 30), then raises :class:`GalleryError`. The lock is
    released when the holder exits or dies (the lock file itself stays).

    Re-entrant within a thread, so a whole read-plan-embed-commit (a register sync, a rebuild)
    holds it from its first read to its commit, while the mutations it calls lock again;
    other threads of the process wait like other processes do."""
    if timeout is None:
        timeout = float(os.environ.get(LOCK_TIMEOUT_ENV, "30"))
    key = str(path.resolve())
    with _PROCESS_LOCKS_GUARD:
        rlock = _PROCESS_LOCKS.setdefault(key, threading.RLock())
    if not rlock.acquire(timeout=max(timeout, 0.0)):
        raise GalleryError(f"{path}: locked by another writer thread for more than {timeout:g} s")
    try:
        depth = _HELD.get(key, 0)
        _HELD[key] = depth + 1
        try:
            if depth:
                yield
            else:
                with _flocked(path, timeout):
                    yield
        finally:
            _HELD[key] -= 1
    finally:
        rlock.release()


_PROCESS_LOCKS: Dict[str, threading.RLock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()
_HELD: Dict[str, int] = {}  # guarded by the per-path RLock


@contextmanager
def _flocked(path: Path, timeout: float) -> Iterator[None]:
    lock_path = path.with_name(path.name + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(lock_path), os.O_RDWR | os.O_CREAT, 0o666)
    deadline = time.monotonic() + timeout
    try:
        while not _try_lock(fd, lock_path):
            if time.monotonic() >= deadline:
                holder = _lock_holder(lock_path)
                raise GalleryError(
                    f"{path}: locked by another writer{holder} for more than {timeout:g} s "
                    f"({lock_path}); try again when it finishes"
                )
            time.sleep(0.02)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except (OSError, AttributeError):
            pass
        yield
    finally:
        os.close(fd)  # closing releases the lock


def writer_lock(path: Union[str, Path], timeout: Optional[float] = None) -> Any:
    """The gallery's writer lock as a context manager, for read-modify-write sequences that
    span several calls (plan from a snapshot taken under the lock, then commit)."""
    return _locked(Path(path), timeout)


def _lock_holder(lock_path: Path) -> str:
    try:
        pid = lock_path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (process {pid})" if pid.isdigit() else ""


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only

    def _try_lock(fd: int, lock_path: Path) -> bool:
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

else:

    def _try_lock(fd: int, lock_path: Path) -> bool:
        import fcntl

        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        except OSError as e:
            raise GalleryError(f"{lock_path}: cannot lock ({e}); gallery writes need a file "
                               "system with POSIX locks") from None  # fmt: skip


def write_gallery(path: Union[str, Path], fingerprint: Dict[str, str],
                  embeddings: np.ndarray[Any, Any], labels: Sequence[str],
                  dtype: str = "float16", overwrite: bool = False,
                  **columns: Sequence[Any]) -> Gallery:  # fmt: skip
    """Create a gallery holding ``embeddings`` with ``labels`` in one commit (``columns``:
    optional ``sources``, ``sha256s``, ``metas``, ``parents`` as for :meth:`Gallery.add`)."""
    p = Path(path)
    emb = np.asarray(embeddings, np.float32)
    g = Gallery.create(p, fingerprint, dim=int(emb.shape[1]), dtype=dtype, overwrite=overwrite)
    if len(labels):
        g.add(emb, labels, **columns)  # type: ignore[arg-type]
    return g


def benchmark_open(
    n_entries: int,
    dtype: str = "float16",
    dim: int = 256,
    folder: Optional[Union[str, Path]] = None,
    repeats: int = 5,
) -> Dict[str, Any]:
    """Write a gallery of ``n_entries`` random unit vectors and time :meth:`Gallery.open`:
    lazy (header + memory map), default (+ meta and labels sections checked and parsed),
    with labels (+ distinct labels and per-row label ids, what a classifier needs) and
    verified (+ records section and a full read of the embeddings). Milliseconds (median)."""
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        path = Path(tmp) / "bench.gal"
        rng = np.random.default_rng(0)
        emb = rng.standard_normal((n_entries, dim), dtype=np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        meta = {"fingerprint": {"bench": "1"}, "created": _now(), "updated": _now(),
                "next_id": n_entries}  # fmt: skip
        cols: Dict[str, List[Any]] = {"id": list(range(n_entries)),
                "label": [f"type{i % 1000}/v{i % 7}" for i in range(n_entries)],
                "parent": [f"type{i % 1000}" for i in range(n_entries)],
                "source": [f"/register/type{i % 1000}/v{i}.jpg" for i in range(n_entries)],
                "sha256": [hashlib.sha256(str(i).encode()).hexdigest() for i in range(n_entries)],
                "added": [_now()] * n_entries,
                "meta": [{"origin": "register:/register"}] * n_entries}  # fmt: skip
        _commit(path, meta, cols, [emb], n_entries, dim, dtype)
        times: Dict[str, List[float]] = {
            "open_lazy_ms": [],
            "open_ms": [],
            "open_with_labels_ms": [],
            "open_verified_ms": [],
        }
        for _ in range(repeats):
            for key in times:
                t0 = time.perf_counter()
                g = Gallery.open(path, verify=key == "open_verified_ms",
                                 lazy=key == "open_lazy_ms")  # fmt: skip
                if key == "open_with_labels_ms":
                    g.label_ids()
                times[key].append(1000 * (time.perf_counter() - t0))
                del g
        return {"entries": n_entries, "dtype": dtype, "file_mb": path.stat().st_size / 2**20,
                **{k: float(np.median(v)) for k, v in times.items()}}  # fmt: skip
