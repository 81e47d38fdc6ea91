"""TensorRT backend (pycuda buffers, one CUDA stream), same interface as ONNX Runtime's.

Thread safety: one execution context, stream and buffer set per backend, guarded by a lock:
calls from several threads are serialized (create one backend per thread for concurrency).
Batches above the profile's max are split; smaller ones run at their real size.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np

from ..bundle import Bundle
from ..engine_cache import EngineCacheMismatch, Profile, default_cache_dir, find_engine
from ..errors import BackendUnavailableError
from . import trt_compat as compat

logger = logging.getLogger(__name__)


class TensorRTBackend:
    """Runs a serialized TensorRT engine. Use :meth:`from_bundle` to find/build it."""

    name = "tensorrt"

    def __init__(self, engine_path: Union[str, Path], precision: str = "fp32") -> None:
        trt = compat.import_tensorrt()
        self._cuda = cuda = compat.import_pycuda()
        self.engine_path = Path(engine_path)
        self.precision = precision
        self._trt_version = str(trt.__version__)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if engine is None:
            raise EngineCacheMismatch(f"{self.engine_path}: TensorRT {self._trt_version} could "
                                      "not deserialize it (other version or GPU?); rebuild it")  # fmt: skip
        self._runtime, self._engine = runtime, engine
        self.io = compat.engine_io(trt, engine)
        self.max_batch: Optional[int] = self.io.max_batch
        self._context = engine.create_execution_context()
        self._stream = cuda.Stream()
        n = self.io.max_batch
        self._h_in = cuda.pagelocked_empty((n, 3, 128, 128), np.float32)
        self._h_out = cuda.pagelocked_empty((n, self.io.output_dim), np.float32)
        self._d_in = cuda.mem_alloc(self._h_in.nbytes)
        self._d_out = cuda.mem_alloc(self._h_out.nbytes)
        self._lock = threading.Lock()

    @classmethod
    def from_bundle(cls, bundle: Bundle, precision: str = "fp32",
                    cache_dir: Optional[Union[str, Path]] = None, build_if_missing: bool = False,
                    profile: Profile = Profile(), **build_options: Any) -> TensorRTBackend:  # noqa: B008
        """The cached engine for this bundle, precision and device (built when asked)."""
        trt = compat.import_tensorrt()
        from .trt_builder import build_engine, engine_key

        key = engine_key(trt, bundle, precision, profile, bool(build_options.get("implicit")),
                         build_options.get("dla_core"),
                         bool(build_options.get("version_compatible")))  # fmt: skip
        cdir = Path(cache_dir) if cache_dir else default_cache_dir()
        path = find_engine(cdir, key)
        if path is None:
            if not build_if_missing:
                raise BackendUnavailableError(
                    f"no TensorRT engine for {bundle.path} ({precision}) on this device in {cdir}; "
                    f"build it: docedge build-engine {bundle.path} --precision {precision}")  # fmt: skip
            path, _ = build_engine(bundle, precision, profile, cache_dir=cdir, **build_options)
        return cls(path, precision)

    def run(self, batch: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        n_max = self.io.max_batch
        if x.shape[0] > n_max:
            return np.concatenate([self.run(x[i : i + n_max]) for i in range(0, x.shape[0], n_max)])
        n = x.shape[0]
        if n < self.io.min_batch:
            raise ValueError(f"batch {n} below the engine profile's minimum {self.io.min_batch}")
        cuda = self._cuda
        with self._lock:
            self._h_in[:n] = x
            cuda.memcpy_htod_async(self._d_in, self._h_in[:n], self._stream)
            compat.execute(self._context, self.io, n, int(self._d_in), int(self._d_out),
                           self._stream.handle)  # fmt: skip
            cuda.memcpy_dtoh_async(self._h_out[:n], self._d_out, self._stream)
            self._stream.synchronize()
            out: np.ndarray[Any, Any] = np.array(self._h_out[:n], dtype=np.float32)
        return out

    def describe(self) -> Dict[str, Any]:
        return {"backend": self.name, "version": self._trt_version, "engine": str(self.engine_path),
                "precision": self.precision, "profile": [self.io.min_batch, self.io.opt_batch,
                                                         self.io.max_batch]}  # fmt: skip

    def close(self) -> None:
        for buf in (getattr(self, "_d_in", None), getattr(self, "_d_out", None)):
            if buf is not None:
                buf.free()
        self._d_in = self._d_out = None
