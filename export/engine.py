"""Export-stage entry point for TensorRT engine builds (run on the target device).

The builder itself lives in :mod:`docedge.runtime.backends.trt_builder` (it needs only TensorRT
and pycuda), so that the device runtime can build on request without this package.
"""

from __future__ import annotations

from docedge.runtime.backends.trt_builder import EngineBuildError, build_engine, choose_mode
from docedge.runtime.engine_cache import EngineKey, Profile, default_cache_dir

__all__ = ["EngineBuildError", "EngineKey", "Profile", "build_engine", "choose_mode", "default_cache_dir"]
