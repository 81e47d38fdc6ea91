"""TensorRT engine cache: engines keyed by what makes them valid, each with a sidecar JSON.

An engine only runs on the TensorRT version and GPU it was built for, and only represents the
ONNX file (and calibration cache) it was built from. The cache key holds exactly those, plus
the build options that change the engine; the file name spells it out::

    <onnx sha[:16]>-<precision>-trt<version>-sm<cc>[-<gpu>]-<mode>-b<min>_<opt>_<max>
        [-dla<n>][-vc][-cal<sha[:8]>]

``<name>.engine`` is written exactly as TensorRT serialized it (no bytes prepended, so trtexec,
DeepStream and Triton read it); ``<name>.json`` beside it, the sidecar, records the key and the
build (TensorRT version, GPU name and compute capability, precision, profile, source ONNX
sha256, calibration cache sha256, options, build time) and the engine's own sha256.

Lookups read sidecars only, never engines: an engine whose sidecar records another TensorRT,
GPU or ONNX file is reported as :class:`EngineCacheMismatch` (or rebuilt, when the caller
asks), never handed to TensorRT; a modified or truncated engine file is caught by its sha256.
Nothing here imports TensorRT.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from ...atomic import atomic_write_bytes
from ...errors import BackendUnavailableError, DocedgeError
from ...hashing import sha256_bytes, sha256_file
from .compat import version_tuple

logger = logging.getLogger(__name__)

SIDECAR_SCHEMA = "docedge.engine"
SIDECAR_VERSION = 1
#: Throughput-oriented default profile: batches up to 64, kernels tuned for 32.
DEFAULT_MIN_BATCH, DEFAULT_OPT_BATCH, DEFAULT_MAX_BATCH = 1, 32, 64
#: A larger max batch is almost certainly a typo (buffers grow by 192 KiB per image).
MAX_BATCH_LIMIT = 4096
MODES = ("strongly-typed", "explicit-qdq", "implicit")


class EngineCacheMismatch(BackendUnavailableError):
    """A cached or given engine was built for another TensorRT, GPU, ONNX file or options, or
    its file no longer matches its sidecar. Rebuild it on this device (docedge build-engine)."""


class EngineNotFoundError(BackendUnavailableError):
    """No engine for this bundle, precision and device in the cache (and none was built)."""


class InvalidProfileError(DocedgeError, ValueError):
    """An optimization profile that is not 1 <= min <= opt <= max <= MAX_BATCH_LIMIT."""


# --- profile ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Profile:
    """The one dynamic-batch optimization profile of an engine (min <= opt <= max)."""

    min_batch: int = DEFAULT_MIN_BATCH
    opt_batch: int = DEFAULT_OPT_BATCH
    max_batch: int = DEFAULT_MAX_BATCH

    def __post_init__(self) -> None:
        values = (self.min_batch, self.opt_batch, self.max_batch)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise InvalidProfileError(f"batch sizes must be integers, got {values}")
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise InvalidProfileError(f"need 1 <= min <= opt <= max batch, got "
                                      f"{self.min_batch}/{self.opt_batch}/{self.max_batch}")
        if self.max_batch > MAX_BATCH_LIMIT:
            raise InvalidProfileError(f"max batch {self.max_batch} exceeds {MAX_BATCH_LIMIT}")

    def __str__(self) -> str:
        return f"{self.min_batch}/{self.opt_batch}/{self.max_batch}"

    def to_dict(self) -> Dict[str, int]:
        return {"min": self.min_batch, "opt": self.opt_batch, "max": self.max_batch}

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> Profile:
        if "min_batch" in d:
            return cls(int(d["min_batch"]), int(d["opt_batch"]), int(d["max_batch"]))
        return cls(int(d["min"]), int(d["opt"]), int(d["max"]))


def make_profile(min_batch: Optional[int] = None, opt_batch: Optional[int] = None,
                 max_batch: Optional[int] = None) -> Profile:  # fmt: skip
    """A profile from whichever of min/opt/max the user gave; the rest default for throughput.

    Defaults: min 1, max 64 (or the largest given value), opt 32 clamped into [min, max]. So
    opt is 1 only when asked (``opt_batch=1`` or ``max_batch=1``): ``max_batch=16`` gives
    1/16/16, ``opt_batch=8`` gives 1/8/64, ``min_batch=4, max_batch=4`` gives 4/4/4 (static).
    """
    given = [v for v in (min_batch, opt_batch, max_batch) if v is not None]
    for v in given:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InvalidProfileError(f"batch sizes must be integers >= 1, got {v!r}")
    mx = max_batch if max_batch is not None else max([DEFAULT_MAX_BATCH, *given])
    mn = min_batch if min_batch is not None else DEFAULT_MIN_BATCH
    op = opt_batch if opt_batch is not None else min(max(DEFAULT_OPT_BATCH, mn), mx)
    return Profile(mn, op, mx)


# --- key --------------------------------------------------------------------------------------
def _slug(text: str, limit: int = 24) -> str:
    return re.sub(r"[^a-z0-9]+", "", text.lower())[:limit]


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine's validity depends on."""

    onnx_sha256: str
    precision: str
    mode: str  # "strongly-typed", "explicit-qdq" or "implicit" (see trt_builder)
    trt_version: str
    compute_capability: str  # "8.7"
    profile: Profile = field(default_factory=Profile)
    dla_core: Optional[int] = None
    version_compatible: bool = False
    calibration_cache_sha256: Optional[str] = None
    gpu_name: Optional[str] = None

    def name(self) -> str:
        """The cache file stem (file-system safe)."""
        p = self.profile
        parts = [self.onnx_sha256[:16], self.precision,
                 "trt" + re.sub(r"[^0-9A-Za-z.]+", "", self.trt_version),
                 "sm" + self.compute_capability.replace(".", "")]  # fmt: skip
        if self.gpu_name:
            parts.append(_slug(self.gpu_name) or "gpu")
        parts += [self.mode, f"b{p.min_batch}_{p.opt_batch}_{p.max_batch}"]
        if self.dla_core is not None:
            parts.append(f"dla{self.dla_core}")
        if self.version_compatible:
            parts.append("vc")
        if self.calibration_cache_sha256:
            parts.append(f"cal{self.calibration_cache_sha256[:8]}")
        return "-".join(parts)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> EngineKey:
        return cls(
            onnx_sha256=str(d["onnx_sha256"]), precision=str(d["precision"]), mode=str(d["mode"]),
            trt_version=str(d["trt_version"]), compute_capability=str(d["compute_capability"]),
            profile=Profile.from_dict(d.get("profile") or {}),
            dla_core=None if d.get("dla_core") is None else int(d["dla_core"]),
            version_compatible=bool(d.get("version_compatible", False)),
            calibration_cache_sha256=d.get("calibration_cache_sha256"),
            gpu_name=d.get("gpu_name"),
        )  # fmt: skip


def default_cache_dir() -> Path:
    """``$DOCEDGE_ENGINE_CACHE`` or ``~/.cache/docedge/engines``."""
    env = os.environ.get("DOCEDGE_ENGINE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "docedge" / "engines"


def engine_paths(cache_dir: Union[str, Path], key: EngineKey) -> Dict[str, Path]:
    base = Path(cache_dir)
    return {"engine": base / f"{key.name()}.engine", "sidecar": base / f"{key.name()}.json"}


def sidecar_path(engine: Union[str, Path]) -> Path:
    """``x.engine`` -> ``x.json`` (the sidecar beside an engine; ``x.plan`` -> ``x.plan.json``)."""
    e = Path(engine)
    if e.name.endswith(".engine"):
        return e.with_name(e.name[: -len(".engine")] + ".json")
    return e.with_name(e.name + ".json")


# --- sidecars ---------------------------------------------------------------------------------
def write_engine(cache_dir: Union[str, Path], key: EngineKey, engine_bytes: bytes,
                 build: Dict[str, Any]) -> Dict[str, Path]:  # fmt: skip
    """Write the engine (as-is) and then its sidecar, each atomically. A crash in between
    leaves an engine without a sidecar, which lookups ignore."""
    paths = engine_paths(cache_dir, key)
    paths["engine"].parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(paths["engine"], engine_bytes)
    sidecar = {"schema": SIDECAR_SCHEMA, "schema_version": SIDECAR_VERSION, "name": key.name(),
               "key": key.to_dict(), "engine_file": paths["engine"].name,
               "engine_bytes": len(engine_bytes), "engine_sha256": sha256_bytes(engine_bytes),
               **build}  # fmt: skip
    atomic_write_bytes(paths["sidecar"], (json.dumps(sidecar, indent=2) + "\n").encode("utf-8"))
    return paths


def read_sidecar(path: Union[str, Path]) -> Dict[str, Any]:
    """Parse and schema-check a sidecar; :class:`EngineCacheMismatch` when unusable."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EngineCacheMismatch(f"{p}: unreadable engine sidecar ({e})") from None
    if not isinstance(data, dict) or data.get("schema") != SIDECAR_SCHEMA:
        raise EngineCacheMismatch(f"{p}: not a docedge engine sidecar")
    if data.get("schema_version") != SIDECAR_VERSION or not isinstance(data.get("key"), dict):
        raise EngineCacheMismatch(f"{p}: sidecar schema_version {data.get('schema_version')!r} "
                                  f"is not {SIDECAR_VERSION}; rebuild the engine")  # fmt: skip
    return data


def verify_engine_file(engine: Union[str, Path], sidecar: Dict[str, Any]) -> None:
    """The engine file is the one the sidecar describes (size and sha256), else a mismatch."""
    e = Path(engine)
    if not e.is_file():
        raise EngineCacheMismatch(f"{e}: engine file missing beside its sidecar")
    size = e.stat().st_size
    want_size = sidecar.get("engine_bytes")
    if want_size is not None and size != int(want_size):
        raise EngineCacheMismatch(f"{e}: {size} bytes, its sidecar says {want_size} (truncated "
                                  "or replaced); rebuild it")  # fmt: skip
    want_sha = sidecar.get("engine_sha256")
    if want_sha and sha256_file(e) != want_sha:
        raise EngineCacheMismatch(f"{e}: sha256 differs from its sidecar (modified after the "
                                  "build); rebuild it")  # fmt: skip


def key_differences(recorded: Dict[str, Any], wanted: EngineKey,
                    fields: Optional[Sequence[str]] = None) -> List[str]:  # fmt: skip
    """Human-readable differences between a sidecar's key and ``wanted`` (all fields, or
    ``fields``)."""
    want = wanted.to_dict()
    names = list(fields) if fields is not None else list(want)
    return [f"{k}: engine has {recorded.get(k)!r}, need {want[k]!r}"
            for k in names if recorded.get(k) != want[k]]  # fmt: skip


def _version_ok(built: str, running: str, version_compatible: bool) -> bool:
    if built == running:
        return True
    if not version_compatible:
        return False
    return version_tuple(running) >= version_tuple(built)


def environment_problems(recorded: Dict[str, Any], trt_version: str, compute_capability: str,
                         gpu_name: Optional[str] = None) -> List[str]:  # fmt: skip
    """Why an engine with key ``recorded`` cannot run here (TensorRT version, GPU)."""
    problems = []
    built = str(recorded.get("trt_version"))
    if not _version_ok(built, trt_version, bool(recorded.get("version_compatible"))):
        extra = " (a version-compatible engine needs a runtime >= its builder)" \
            if recorded.get("version_compatible") else ""
        problems.append(f"trt_version: built with TensorRT {built}, this is TensorRT "
                        f"{trt_version}{extra}")  # fmt: skip
    if str(recorded.get("compute_capability")) != compute_capability:
        problems.append(f"compute_capability: built for sm {recorded.get('compute_capability')}, "
                        f"this GPU is sm {compute_capability}")  # fmt: skip
    rec_gpu = recorded.get("gpu_name")
    if rec_gpu and gpu_name and rec_gpu != gpu_name:
        problems.append(f"gpu_name: built on {rec_gpu!r}, this GPU is {gpu_name!r}")
    return problems


def find_engine(cache_dir: Union[str, Path], key: EngineKey) -> Optional[Path]:
    """The cached engine for exactly ``key``, or None. A pair that exists under the key's name
    but records another key (tampered, or a partial write) raises :class:`EngineCacheMismatch`;
    so does an engine file that differs from its sidecar."""
    paths = engine_paths(cache_dir, key)
    if not paths["engine"].is_file() or not paths["sidecar"].is_file():
        return None
    side = read_sidecar(paths["sidecar"])
    diffs = key_differences(side["key"], key)
    if diffs:
        raise EngineCacheMismatch(f"{paths['engine']}: sidecar disagrees with the file name: "
                                  + "; ".join(diffs))  # fmt: skip
    verify_engine_file(paths["engine"], side)
    return paths["engine"]


def check_engine_file(engine: Union[str, Path], running: EngineKey) -> Dict[str, Any]:
    """Check an engine's sidecar against the running TensorRT/GPU (and, when ``running`` has
    one, the ONNX file and precision) before TensorRT ever sees the engine."""
    e = Path(engine)
    side = read_sidecar(sidecar_path(e))
    rec = side["key"]
    problems = environment_problems(rec, running.trt_version, running.compute_capability,
                                    running.gpu_name)  # fmt: skip
    problems += key_differences(rec, running, [f for f in ("onnx_sha256", "precision")
                                               if getattr(running, f)])  # fmt: skip
    if problems:
        raise EngineCacheMismatch(f"{e}: " + "; ".join(problems)
                                  + ". Rebuild it on this device: docedge build-engine")
    verify_engine_file(e, side)
    return side


# --- lookup -----------------------------------------------------------------------------------
@dataclass
class CachedEngine:
    """An engine file with a readable sidecar."""

    engine: Path
    sidecar_path: Path
    sidecar: Dict[str, Any]
    key: EngineKey

    @property
    def bundle_path(self) -> Optional[str]:
        b = self.sidecar.get("bundle") or {}
        return None if b.get("path") is None else str(b.get("path"))


def scan(cache_dir: Union[str, Path]) -> List[CachedEngine]:
    """Every engine in ``cache_dir`` with a readable sidecar (others are skipped, logged)."""
    root = Path(cache_dir)
    if not root.is_dir():
        return []
    out = []
    for side_path in sorted(root.glob("*.json")):
        try:
            side = read_sidecar(side_path)
            key = EngineKey.from_dict(side["key"])
        except (EngineCacheMismatch, KeyError, TypeError, ValueError) as e:
            logger.warning("engine cache: skipping %s (%s)", side_path, e)
            continue
        engine = side_path.with_name(str(side.get("engine_file") or f"{key.name()}.engine"))
        if engine.is_file():
            out.append(CachedEngine(engine, side_path, side, key))
    return out


#: Key fields that must match for an engine to represent the wanted model and precision.
_MODEL_FIELDS = ("onnx_sha256", "precision", "mode", "calibration_cache_sha256")
#: Build options (matched only when the caller asks for specific ones).
_OPTION_FIELDS = ("profile", "dla_core", "version_compatible")


def problems_for(cached: EngineKey, wanted: EngineKey, match_options: bool) -> List[str]:
    """Why ``cached`` cannot serve a request for ``wanted`` (empty: it can)."""
    rec = cached.to_dict()
    problems = key_differences(rec, wanted, _MODEL_FIELDS)
    problems += environment_problems(rec, wanted.trt_version, wanted.compute_capability,
                                     wanted.gpu_name)  # fmt: skip
    if match_options:
        problems += key_differences(rec, wanted, _OPTION_FIELDS)
    return problems


@dataclass
class Lookup:
    """Result of :func:`lookup`: the engine to use (or None) and the near misses, i.e. cached
    engines for the same bundle (or ONNX file) and precision that cannot be used, and why."""

    found: Optional[CachedEngine] = None
    near_misses: List[Tuple[CachedEngine, List[str]]] = field(default_factory=list)

    def explain(self) -> str:
        lines = []
        for c, problems in self.near_misses:
            lines.append(f"  {c.engine.name}: " + "; ".join(problems))
        return "\n".join(lines)


def _preference(c: CachedEngine, wanted: Sequence[EngineKey]) -> Tuple[int, int, int, int, str]:
    k = c.key
    exact = any(k.name() == w.name() for w in wanted)
    plain = k.dla_core is None and not k.version_compatible
    default_mode = bool(wanted) and k.mode == wanted[0].mode
    return (int(exact), int(plain), int(default_mode), k.profile.max_batch,
            str(c.sidecar.get("built_at", "")))


def lookup(cache_dir: Union[str, Path], wanted: Sequence[EngineKey], match_options: bool = True,
           bundle_path: Optional[Union[str, Path]] = None) -> Lookup:  # fmt: skip
    """Find a usable engine for any of ``wanted`` (in order of preference: the first is the
    default build mode). With ``match_options`` False, any profile, DLA core and
    version-compatibility will do (preferring an exact key, then a plain GPU engine, then
    the default mode, then the largest max batch, then the newest build)."""
    bundle = str(Path(bundle_path).resolve()) if bundle_path is not None else None
    result = Lookup()
    usable = []
    for c in scan(cache_dir):
        per_key = [problems_for(c.key, w, match_options) for w in wanted]
        best = min(per_key, key=len) if per_key else ["nothing wanted"]
        if not best:
            try:
                verify_engine_file(c.engine, c.sidecar)
            except EngineCacheMismatch as e:
                result.near_misses.append((c, [str(e)]))
                continue
            usable.append(c)
            continue
        related = any(c.key.precision == w.precision and (c.key.onnx_sha256 == w.onnx_sha256
                      or (bundle is not None and c.bundle_path == bundle)) for w in wanted)
        if related:
            result.near_misses.append((c, best))
    if usable:
        result.found = max(usable, key=lambda c: _preference(c, wanted))
    return result
