"""A persistent, crash-safe, fingerprinted gallery of registered document embeddings.

One flat file (format: ``docs/gallery-format.md``): a 128-byte little-endian header, a UTF-8
JSON label table, and the embedding matrix (float16 or float32, 64-byte aligned, memory-mapped
on open). Every change is committed by writing a complete new file beside the old one, fsync,
atomic rename and directory fsync, so a reader or a crash only ever sees the old or the new
state. Writers take an exclusive ``flock`` on ``<gallery>.lock``; a second writer waits up to
``lock_timeout`` seconds, then fails with :class:`GalleryError`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import struct
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, Iterator, List, Optional, Sequence, Union

import numpy as np

from .atomic import atomic_write
from .errors import FingerprintMismatchError, GalleryError

logger = logging.getLogger(__name__)

MAGIC = b"DEDGEGAL"
SCHEMA_VERSION = 1
HEADER_SIZE = 128
ALIGN = 64
_HEADER = struct.Struct("<8sIIII QQQQQ 32s")  # up to the table sha; embedding sha follows
DTYPES = {1: "float16", 2: "float32"}
DTYPE_CODES = {v: k for k, v in DTYPES.items()}
#: Test hook: a writer crashes (os._exit) at this commit stage when the variable names it.
CRASH_ENV = "DOCEDGE_GALLERY_CRASH_AT"


def _now() -> str:
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    return now.isoformat().replace("+00:00", "Z")


def parent_of(label: str) -> Optional[str]:
    """``passport/damaged`` -> ``passport``; labels without ``/`` have no parent."""
    return label.rsplit("/", 1)[0] if "/" in label else None


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
    """An opened gallery (a consistent snapshot). Mutations commit atomically to disk.

    ``embeddings`` is ``(count, dim)`` float16/float32 (memory-mapped). ``entries`` lists the
    label table in row order. Use :meth:`create` / :meth:`open`.
    """

    def __init__(self, path: Path, table: Union[Dict[str, Any], Callable[[], Dict[str, Any]]],
                 embeddings: np.ndarray[Any, Any], dtype: str, dim: int) -> None:  # fmt: skip
        self.path = path
        self._table: Optional[Dict[str, Any]] = table if isinstance(table, dict) else None
        self._table_loader = None if isinstance(table, dict) else table
        self._entries: Optional[List[Entry]] = None
        self.embeddings = embeddings
        self.dtype = dtype
        self.dim = dim

    @property
    def table(self) -> Dict[str, Any]:
        """The label table, parsed (and its checksum verified) on first use."""
        if self._table is None:
            assert self._table_loader is not None
            self._table = self._table_loader()
        return self._table

    @property
    def entries(self) -> List[Entry]:
        """The label table as :class:`Entry` objects in row order (built on first use)."""
        if self._entries is None:
            self._entries = [
                Entry(int(e["id"]), str(e["label"]), e.get("parent"), e.get("source"),
                      e.get("sha256"), str(e.get("added", "")), dict(e.get("meta") or {}), row)
                for row, e in enumerate(self.table["entries"])
            ]  # fmt: skip
        return self._entries

    # --- identity ---------------------------------------------------------------------------
    @property
    def fingerprint(self) -> Dict[str, str]:
        fp: Dict[str, str] = self.table.get("fingerprint", {})
        return fp

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def labels(self) -> List[str]:
        """Distinct labels, in first-registration order."""
        return list(dict.fromkeys(e.label for e in self.entries))

    def label_ids(self) -> np.ndarray[Any, Any]:
        """Index into :attr:`labels` for every row, ``(count,)`` int64."""
        index = {lbl: i for i, lbl in enumerate(self.labels)}
        return np.array([index[e.label] for e in self.entries], np.int64)

    def check_fingerprint(self, expected: Dict[str, str]) -> None:
        """Refuse (``FingerprintMismatchError``) a gallery made with another model/precision."""
        mine = self.fingerprint
        diffs = [
            f"{k}: gallery has {str(mine.get(k))[:24]!r}, expected {str(expected.get(k))[:24]!r}"
            for k in sorted(set(mine) | set(expected))
            if mine.get(k) != expected.get(k)
        ]
        if diffs:
            raise FingerprintMismatchError(
                f"{self.path}: made with another model bundle, precision or pre-processing ("
                + "; ".join(diffs) + "). Rebuild it: docedge gallery rebuild"
            )

    def verify(self) -> None:
        """Check the label table's and the embedding block's SHA-256 (a full read)."""
        digest = hashlib.sha256(np.ascontiguousarray(self.embeddings).tobytes()).hexdigest()
        if digest != self.table.get("_emb_sha256"):
            raise GalleryError(f"{self.path}: embedding data checksum mismatch (corrupt file)")

    # --- open / create ----------------------------------------------------------------------
    @classmethod
    def create(cls, path: Union[str, Path], fingerprint: Dict[str, str], dim: int = 256,
               dtype: str = "float16", overwrite: bool = False) -> Gallery:  # fmt: skip
        """Create an empty gallery file."""
        p = Path(path)
        if dtype not in DTYPE_CODES:
            raise GalleryError(f"{p}: dtype must be one of {sorted(DTYPE_CODES)}")
        with _locked(p):
            if p.exists() and not overwrite:
                raise GalleryError(f"{p}: exists already (use overwrite to replace it)")
            table = {"fingerprint": dict(fingerprint), "created": _now(), "updated": _now(),
                     "next_id": 0, "entries": []}  # fmt: skip
            _commit(p, table, np.zeros((0, dim), dtype))
        return cls.open(p)

    @classmethod
    def open(cls, path: Union[str, Path], expect_fingerprint: Optional[Dict[str, str]] = None,
             verify: bool = False, lazy: bool = False) -> Gallery:  # fmt: skip
        """Open a gallery: header checks and a memory map of the embeddings. The label table
        is checksummed and parsed now, or on first use with ``lazy`` (opening a 100k-entry
        gallery then takes milliseconds). ``verify`` also hashes the embeddings;
        ``expect_fingerprint`` refuses galleries made with another model/precision."""
        p = Path(path)
        try:
            size = p.stat().st_size
            with open(p, "rb") as f:
                head = f.read(HEADER_SIZE)
                g = _parse(p, head, size, f)
        except FileNotFoundError:
            raise GalleryError(f"{p}: gallery file not found") from None
        except OSError as e:
            raise GalleryError(f"{p}: cannot read ({e})") from None
        if expect_fingerprint is not None or not lazy:
            g.table  # noqa: B018 - parse and check the label table now
        if expect_fingerprint is not None:
            g.check_fingerprint(expect_fingerprint)
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
    ) -> List[int]:
        """Append exemplars (unit vectors ``(n, dim)``); returns their entry ids.

        A label already present is kept as another exemplar of that label (logged).
        ``replace_ids``: entries removed in the same atomic commit (an update is then one
        change: a crash leaves the old gallery or the updated one).
        """
        emb = np.asarray(embeddings, np.float32)
        n = len(labels)
        if emb.shape != (n, self.dim):
            raise GalleryError(f"{self.path}: expected embeddings ({n}, {self.dim}), got {emb.shape}")
        if not np.all(np.isfinite(emb)):
            raise GalleryError(f"{self.path}: embeddings contain NaN/inf (failed images?)")
        with _locked(self.path):
            cur = Gallery.open(self.path)
            existing = set(cur.labels)
            dup = sorted({lbl for lbl in labels if lbl in existing})
            if dup:
                logger.info("%s: %d label(s) already registered, kept as extra exemplars: %s",
                            self.path, len(dup), dup[:10])  # fmt: skip
            table = _clone_table(cur.table)
            drop = {int(i) for i in replace_ids}
            keep = [e.row for e in cur.entries if e.id not in drop]
            table["entries"] = [cur.table["entries"][r] for r in keep]
            ids = []
            for i, label in enumerate(labels):
                eid = int(table["next_id"])
                table["next_id"] = eid + 1
                table["entries"].append({
                    "id": eid, "label": str(label),
                    "parent": parents[i] if parents and parents[i] else parent_of(str(label)),
                    "source": sources[i] if sources else None,
                    "sha256": sha256s[i] if sha256s else None,
                    "added": _now(), "meta": dict(metas[i] or {}) if metas else {},
                })  # fmt: skip
                ids.append(eid)
            old = np.asarray(cur.embeddings, np.float32)[keep]
            data = np.concatenate([old, emb]).astype(self.dtype)
            _commit(self.path, table, data)
        self._reload()
        return ids

    def remove(self, labels: Sequence[str] = (), ids: Sequence[int] = ()) -> int:
        """Remove every exemplar of ``labels`` and the entries ``ids``; returns how many."""
        with _locked(self.path):
            cur = Gallery.open(self.path)
            drop_labels, drop_ids = set(labels), {int(i) for i in ids}
            keep = [e.row for e in cur.entries
                    if e.label not in drop_labels and e.id not in drop_ids]  # fmt: skip
            removed = len(cur.entries) - len(keep)
            if removed:
                table = _clone_table(cur.table)
                table["entries"] = [cur.table["entries"][r] for r in keep]
                _commit(self.path, table, np.asarray(cur.embeddings)[keep])
        self._reload()
        return removed

    def compact(self, dtype: Optional[str] = None) -> None:
        """Rewrite the file (optionally converting the embedding dtype)."""
        with _locked(self.path):
            cur = Gallery.open(self.path)
            new_dtype = dtype or cur.dtype
            if new_dtype not in DTYPE_CODES:
                raise GalleryError(f"{self.path}: dtype must be one of {sorted(DTYPE_CODES)}")
            _commit(self.path, _clone_table(cur.table),
                    np.asarray(cur.embeddings, np.float32).astype(new_dtype))  # fmt: skip
        self._reload()

    def _reload(self) -> None:
        fresh = Gallery.open(self.path)
        self.__dict__.update(fresh.__dict__)

    def info(self) -> Dict[str, Any]:
        """Summary for ``docedge gallery info``."""
        return {"path": str(self.path), "schema_version": SCHEMA_VERSION, "count": len(self),
                "labels": len(self.labels), "dim": self.dim, "dtype": self.dtype,
                "fingerprint": self.fingerprint, "created": self.table.get("created"),
                "updated": self.table.get("updated"),
                "size_bytes": self.path.stat().st_size}  # fmt: skip


def benchmark_open(n_entries: int, dtype: str = "float16", dim: int = 256,
                   folder: Optional[Union[str, Path]] = None, repeats: int = 5) -> Dict[str, Any]:
    """Write a gallery of ``n_entries`` random unit vectors and time :meth:`Gallery.open`:
    lazy (header + memory map), default (+ label table checksum and parse) and verified (+ full
    read of the embeddings). Milliseconds."""
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        path = Path(tmp) / "bench.gal"
        rng = np.random.default_rng(0)
        emb = rng.standard_normal((n_entries, dim), dtype=np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        table = {"fingerprint": {"bench": "1"}, "created": _now(), "updated": _now(),
                 "next_id": n_entries,
                 "entries": [{"id": i, "label": f"type{i % 1000}", "parent": None,
                              "source": f"/register/type{i}.jpg", "sha256": None,
                              "added": "", "meta": {}} for i in range(n_entries)]}  # fmt: skip
        _commit(path, table, emb.astype(dtype))
        times: Dict[str, List[float]] = {"open_lazy_ms": [], "open_ms": [], "open_verified_ms": []}
        for _ in range(repeats):
            for key, lazy, verify in (("open_lazy_ms", True, False), ("open_ms", False, False),
                                      ("open_verified_ms", False, True)):  # fmt: skip
                t0 = time.perf_counter()
                Gallery.open(path, verify=verify, lazy=lazy)
                times[key].append(1000 * (time.perf_counter() - t0))
        return {"entries": n_entries, "dtype": dtype, "file_mb": path.stat().st_size / 2**20,
                **{k: float(np.median(v)) for k, v in times.items()}}  # fmt: skip


def _clone_table(table: Dict[str, Any]) -> Dict[str, Any]:
    t: Dict[str, Any] = json.loads(json.dumps({k: v for k, v in table.items()
                                               if not k.startswith("_")}))  # fmt: skip
    t["updated"] = _now()
    return t


def _parse(p: Path, head: bytes, size: int, f: Any) -> Gallery:
    if len(head) < HEADER_SIZE or head[:8] != MAGIC:
        raise GalleryError(f"{p}: not a docedge gallery (bad magic or truncated header)")
    (_magic, version, dim, code, _r, count, t_off, t_len, e_off, e_len,
     t_sha) = _HEADER.unpack_from(head)  # fmt: skip
    e_sha = head[_HEADER.size : _HEADER.size + 32]
    if version != SCHEMA_VERSION:
        raise GalleryError(f"{p}: unknown gallery schema version {version} (this docedge reads "
                           f"{SCHEMA_VERSION})")  # fmt: skip
    if code not in DTYPES:
        raise GalleryError(f"{p}: unknown embedding dtype code {code}")
    dtype = DTYPES[code]
    itemsize = np.dtype(dtype).itemsize
    if (t_off < HEADER_SIZE or t_off + t_len > size or e_off % ALIGN or e_off + e_len > size
            or e_len != count * dim * itemsize):  # fmt: skip
        raise GalleryError(f"{p}: inconsistent header (truncated or corrupt file)")
    f.seek(t_off)
    raw = f.read(t_len)  # read now (the file may be replaced later); checked and parsed lazily

    def load_table() -> Dict[str, Any]:
        if hashlib.sha256(raw).digest() != t_sha:
            raise GalleryError(f"{p}: label table checksum mismatch (corrupt file)")
        try:
            table: Dict[str, Any] = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise GalleryError(f"{p}: label table is not valid JSON ({e})") from None
        if len(table.get("entries", [])) != count:
            raise GalleryError(f"{p}: header count {count} != {len(table.get('entries', []))} "
                               "entries")  # fmt: skip
        table["_emb_sha256"] = e_sha.hex()
        return table

    if count:
        emb: np.ndarray[Any, Any] = np.memmap(p, dtype=dtype, mode="r", offset=e_off,
                                               shape=(count, dim))  # fmt: skip
    else:
        emb = np.zeros((0, dim), dtype)
    return Gallery(p, load_table, emb, dtype, dim)


def _commit(path: Path, table: Dict[str, Any], embeddings: np.ndarray[Any, Any]) -> None:
    """Write a complete new file next to ``path``, fsync it, rename over ``path``, fsync dir."""
    table = {k: v for k, v in table.items() if not k.startswith("_")}
    raw = json.dumps(table, separators=(",", ":")).encode("utf-8")
    emb = np.ascontiguousarray(embeddings)
    dtype = str(emb.dtype)
    count, dim = emb.shape
    t_off = HEADER_SIZE
    e_off = (t_off + len(raw) + ALIGN - 1) // ALIGN * ALIGN
    emb_bytes = emb.tobytes()
    head = _HEADER.pack(MAGIC, SCHEMA_VERSION, dim, DTYPE_CODES[dtype], 0, count, t_off, len(raw),
                        e_off, len(emb_bytes), hashlib.sha256(raw).digest())  # fmt: skip
    head += hashlib.sha256(emb_bytes).digest()
    head = head.ljust(HEADER_SIZE, b"\0")

    def write(f: BinaryIO) -> None:
        f.write(head)
        _crash_point("header")
        f.write(raw)
        f.write(b"\0" * (e_off - t_off - len(raw)))
        _crash_point("table")
        f.write(emb_bytes)
        _crash_point("data")

    atomic_write(path, write, on_stage=_crash_point)


@contextmanager
def _locked(path: Path, timeout: Optional[float] = None) -> Iterator[None]:
    """Exclusive writer lock on ``<path>.lock`` (waits up to ``timeout`` s; env override)."""
    if timeout is None:
        timeout = float(os.environ.get("DOCEDGE_GALLERY_LOCK_TIMEOUT", "30"))
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        raise GalleryError("gallery writes need POSIX file locks (fcntl); not available here") from None
    lock_path = path.with_name(path.name + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(lock_path), os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise GalleryError(
                        f"{path}: locked by another writer for more than {timeout:g} s "
                        f"({lock_path}); try again when it finishes"
                    ) from None
                time.sleep(0.02)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)  # closing releases the flock
