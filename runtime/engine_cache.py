"""TensorRT engine cache: engines keyed by what makes them valid, each with a sidecar JSON.

An engine only runs on the TensorRT version and GPU it was built for, and only represents the
ONNX file (and calibration cache) it was built from. The cache key is built from exactly those:
``<onnx sha[:16]>-<precision>-<mode>-trt<version>-sm<cc>-b<min>_<opt>_<max>[-dla<n>][-vc]``.
The engine file is written as-is (no bytes prepended, so trtexec and DeepStream read it); the
sidecar ``<key>.json`` records the build. A sidecar that does not match the running TensorRT,
GPU or ONNX is a :class:`EngineCacheMismatch`, never an attempt to deserialize.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from .atomic import atomic_write_bytes
from .errors import DocedgeError

SIDECAR_SCHEMA = "docedge.engine"


class EngineCacheMismatch(DocedgeError):
    """A cached engine was built for another TensorRT, GPU, ONNX file or options."""


@dataclass(frozen=True)
class Profile:
    """Dynamic-batch optimization profile (min <= opt <= max)."""

    min_batch: int = 1
    opt_batch: int = 32
    max_batch: int = 64

    def __post_init__(self) -> None:
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError(f"need 1 <= min <= opt <= max batch, got {self}")


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine's validity depends on."""

    onnx_sha256: str
    precision: str
    mode: str  # "strongly-typed" or "implicit" (builder flags + calibration cache)
    trt_version: str
    compute_capability: str
    profile: Profile = field(default_factory=Profile)
    dla_core: Optional[int] = None
    version_compatible: bool = False
    calibration_cache_sha256: Optional[str] = None

    def name(self) -> str:
        p = self.profile
        parts = [self.onnx_sha256[:16], self.precision, self.mode, f"trt{self.trt_version}",
                 f"sm{self.compute_capability.replace('.', '')}",
                 f"b{p.min_batch}_{p.opt_batch}_{p.max_batch}"]  # fmt: skip
        if self.dla_core is not None:
            parts.append(f"dla{self.dla_core}")
        if self.version_compatible:
            parts.append("vc")
        if self.calibration_cache_sha256:
            parts.append(f"cal{self.calibration_cache_sha256[:8]}")
        return "-".join(parts)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def default_cache_dir() -> Path:
    """``$DOCEDGE_ENGINE_CACHE`` or ``~/.cache/docedge/engines``."""
    env = os.environ.get("DOCEDGE_ENGINE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "docedge" / "engines"


def engine_paths(cache_dir: Union[str, Path], key: EngineKey) -> Dict[str, Path]:
    base = Path(cache_dir)
    return {"engine": base / f"{key.name()}.engine", "sidecar": base / f"{key.name()}.json"}


def write_engine(cache_dir: Union[str, Path], key: EngineKey, engine_bytes: bytes,
                 build: Dict[str, Any]) -> Dict[str, Path]:  # fmt: skip
    """Write the engine (as-is) and its sidecar, each atomically."""
    paths = engine_paths(cache_dir, key)
    paths["engine"].parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(paths["engine"], engine_bytes)
    sidecar = {"schema": SIDECAR_SCHEMA, "schema_version": 1, "key": key.to_dict(),
               "engine_file": paths["engine"].name, "engine_bytes": len(engine_bytes), **build}  # fmt: skip
    atomic_write_bytes(paths["sidecar"], (json.dumps(sidecar, indent=2) + "\n").encode())
    return paths


def read_sidecar(path: Union[str, Path]) -> Dict[str, Any]:
    p = Path(path)
    try:
        data: Dict[str, Any] = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise EngineCacheMismatch(f"{p}: unreadable engine sidecar ({e})") from None
    if data.get("schema") != SIDECAR_SCHEMA:
        raise EngineCacheMismatch(f"{p}: not a docedge engine sidecar")
    return data


def key_differences(recorded: Dict[str, Any], wanted: EngineKey) -> List[str]:
    """Human-readable differences between a sidecar's key and the wanted key."""
    want = wanted.to_dict()
    return [f"{k}: engine has {recorded.get(k)!r}, need {want[k]!r}"
            for k in want if recorded.get(k) != want[k]]  # fmt: skip


def find_engine(cache_dir: Union[str, Path], key: EngineKey) -> Optional[Path]:
    """The cached engine for ``key``, or None. A sidecar/engine pair that exists under the
    key's name but records another key (tampered or partially written) raises."""
    paths = engine_paths(cache_dir, key)
    if not paths["engine"].is_file() or not paths["sidecar"].is_file():
        return None
    diffs = key_differences(read_sidecar(paths["sidecar"])["key"], key)
    if diffs:
        raise EngineCacheMismatch(f"{paths['engine']}: " + "; ".join(diffs))
    return paths["engine"]


def sidecar_path(engine: Union[str, Path]) -> Path:
    """``x.engine`` -> ``x.json`` (the sidecar beside an engine)."""
    e = Path(engine)
    return e.with_name(e.name[: -len(".engine")] + ".json" if e.name.endswith(".engine")
                       else e.name + ".json")  # fmt: skip


def check_engine_file(engine: Union[str, Path], running: EngineKey) -> Dict[str, Any]:
    """Check a user-supplied engine's sidecar against the running TensorRT/GPU/ONNX."""
    e = Path(engine)
    side = read_sidecar(sidecar_path(e))
    rec = side["key"]
    diffs = [d for d in key_differences(rec, running)
             if d.split(":")[0] in ("trt_version", "compute_capability", "onnx_sha256",
                                    "precision")]  # fmt: skip
    if diffs and not rec.get("version_compatible"):
        raise EngineCacheMismatch(f"{e}: built for another environment: " + "; ".join(diffs)
                                  + ". Rebuild on this device: docedge build-engine")  # fmt: skip
    return side
