"""Export-stage entry point for TensorRT engine builds (run on the target device).

The builder itself lives in :mod:`docedge.runtime.backends.trt_builder` (it needs only TensorRT
and the bundle's ONNX files), so that the device runtime can build on request without this
package. This module is the thin layer ``docedge build-engine`` calls::

    from docedge.export.engine import build
    result = build("bundle/", "fp16", max_batch=16)
    print(result.engine, result.built, result.record["trt_version"])
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Union

from docedge.runtime.backends.trt_builder import (
    EngineBuildError,
    build_engine,
    choose_mode,
    select_calibration_cache,
)
from docedge.runtime.bundle import Bundle, load_bundle
from docedge.runtime.engine_cache import (
    EngineKey,
    Profile,
    default_cache_dir,
    make_profile,
    read_sidecar,
    sidecar_path,
)

__all__ = [
    "EngineBuild",
    "EngineBuildError",
    "EngineKey",
    "Profile",
    "build",
    "build_engine",
    "choose_mode",
    "default_cache_dir",
    "make_profile",
    "select_calibration_cache",
]


@dataclass(frozen=True)
class EngineBuild:
    """Outcome of :func:`build`: the engine, its sidecar, whether it was built now (or found in
    the cache), and the sidecar's content."""

    engine: Path
    sidecar: Path
    built: bool
    record: Dict[str, Any]


def build(
    bundle: Union[str, Path, Bundle],
    precision: str = "fp16",
    min_batch: Optional[int] = None,
    opt_batch: Optional[int] = None,
    max_batch: Optional[int] = None,
    workspace_mb: int = 1024,
    timing_cache: Optional[Union[str, Path]] = None,
    dla_core: Optional[int] = None,
    version_compatible: bool = False,
    implicit: bool = False,
    cache_dir: Optional[Union[str, Path]] = None,
    force: bool = False,
    tf32: Optional[bool] = None,
    device: int = 0,
) -> EngineBuild:
    """Build (or find cached) the TensorRT engine of ``bundle`` for ``precision`` on this GPU.

    Unset batch sizes default for throughput (:func:`make_profile`: 1/32/64). See
    :func:`docedge.runtime.backends.trt_builder.build_engine` for the other options.
    """
    b = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    profile = make_profile(min_batch, opt_batch, max_batch)
    path, built = build_engine(b, precision, profile, workspace_mb=workspace_mb,
                               timing_cache=timing_cache, dla_core=dla_core,
                               version_compatible=version_compatible, implicit=implicit,
                               cache_dir=cache_dir, force=force, tf32=tf32, device=device)
    side = sidecar_path(path)
    return EngineBuild(path, side, built, read_sidecar(side))
