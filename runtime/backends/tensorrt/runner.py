"""TensorRT backend: a serialized engine run through pycuda, same interface as ONNX Runtime's.

- Buffers: page-locked host buffers and device buffers sized for the engine profile's max batch,
  one CUDA stream. Batches run at their real size (the input shape is set per call); larger
  ones are split into max-batch chunks, and one below the profile's min batch is zero-padded.
  Results are float32 ``(n, 256)``, like the ONNX Runtime backend's.
- CUDA context: the backend retains the device's primary context (the one TensorRT's runtime
  API uses) and makes it current around every call, so any thread may call it.
- Thread safety: one execution context, stream and buffer set per backend, guarded by a lock,
  so concurrent ``run`` calls are serialized (safe, not parallel). For parallel GPU work,
  create one backend per thread: each gets its own engine copy, execution context, stream and
  buffers.
- Engines come from the engine cache (:meth:`TensorRTBackend.from_bundle`), built on request.
  The sidecar beside an engine is checked against the running TensorRT and GPU, and the engine
  file against its recorded sha256, before TensorRT deserializes anything.

TensorRT and pycuda are imported when a backend is created, never at module import.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np

from ...bundle import Bundle
from ...errors import BackendUnavailableError
from . import compat
from .engine_cache import (
    EngineCacheMismatch,
    EngineNotFoundError,
    Profile,
    default_cache_dir,
    environment_problems,
    lookup,
    make_profile,
    read_sidecar,
    sidecar_path,
    verify_engine_file,
)

if TYPE_CHECKING:  # checked against tensorrt-stubs
    import tensorrt

logger = logging.getLogger(__name__)

#: Keyword options :meth:`TensorRTBackend.from_bundle` understands.
BUILD_OPTIONS = ("profile", "min_batch", "opt_batch", "max_batch", "workspace_mb", "timing_cache",
                 "dla_core", "version_compatible", "implicit", "tf32", "force")  # fmt: skip
RUNTIME_OPTIONS = ("device", "api")


def plan_batches(n: int, min_batch: int, max_batch: int) -> List[Tuple[int, int, int]]:
    """Split ``n`` rows into engine calls: ``(start, stop, run_size)`` with
    ``min_batch <= run_size <= max_batch``; ``run_size > stop - start`` means zero padding."""
    if not 1 <= min_batch <= max_batch:
        raise ValueError(f"invalid batch range {min_batch}..{max_batch}")
    plan = []
    for start in range(0, n, max_batch):
        stop = min(n, start + max_batch)
        plan.append((start, stop, max(stop - start, min_batch)))
    return plan


class TensorRTBackend:
    """Runs a serialized TensorRT engine. Use :meth:`from_bundle` to find (or build) it."""

    name = "tensorrt"

    def __init__(self, engine_path: Union[str, Path], precision: str = "fp32", device: int = 0,
                 api: str = "auto", check_sidecar: bool = True) -> None:  # fmt: skip
        """Load ``engine_path`` on CUDA device ``device``.

        With ``check_sidecar`` (default), an engine with a docedge sidecar is refused
        (:class:`EngineCacheMismatch`) when it was built for another TensorRT version or GPU,
        or when the file differs from the sidecar's sha256; an engine without one (e.g. from
        trtexec) is loaded as is. ``api``: ``auto``, ``named`` or ``bindings`` (TensorRT 8.x).
        """
        self._closed = True  # until fully built, close() has nothing to release
        self._lock = threading.Lock()
        trt = compat.import_tensorrt()
        cuda = compat.import_pycuda()
        self._trt, self._cuda = trt, cuda
        self.engine_path = Path(engine_path)
        self.precision = precision
        self.features = compat.detect_features(trt)
        self.device = compat.device_info(cuda, device)
        self.sidecar = self._check_sidecar() if check_sidecar else None
        data = self.engine_path.read_bytes()
        self._ctx = cuda.Device(device).retain_primary_context()
        try:
            with self._current():
                self._load(trt, cuda, data, api)
        except BaseException:
            self._release()
            raise
        self._closed = False
        self.max_batch: Optional[int] = self.io.max_batch

    # --- loading ------------------------------------------------------------------------------
    def _check_sidecar(self) -> Optional[Dict[str, Any]]:
        side_path = sidecar_path(self.engine_path)
        if not side_path.is_file():
            logger.warning("%s has no docedge sidecar: cannot check it was built for TensorRT %s "
                           "on %s before loading it", self.engine_path, self.features.version,
                           self.device.name)  # fmt: skip
            return None
        side = read_sidecar(side_path)
        problems = environment_problems(side["key"], self.features.version,
                                        self.device.compute_capability, self.device.name)
        if problems:
            raise EngineCacheMismatch(f"{self.engine_path}: " + "; ".join(problems)
                                      + ". Rebuild it on this device: docedge build-engine")
        verify_engine_file(self.engine_path, side)
        return side

    def _load(self, trt: Any, cuda: Any, data: bytes, api: str) -> None:
        self._trt_logger = trt.Logger(trt.Logger.WARNING)  # must outlive the runtime
        runtime: tensorrt.Runtime = trt.Runtime(self._trt_logger)
        if self.sidecar is not None and self.sidecar["key"].get("version_compatible"):
            compat.allow_host_code(runtime)  # our own build: its embedded lean runtime is trusted
        engine: Optional[tensorrt.ICudaEngine] = runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise EngineCacheMismatch(f"{self.engine_path}: TensorRT {self.features.version} "
                                      "could not deserialize it (built by another TensorRT "
                                      "version or for another GPU?); rebuild it on this device")
        self.io = compat.engine_io(trt, engine, api)
        context: Optional[tensorrt.IExecutionContext] = engine.create_execution_context()
        if context is None:
            raise BackendUnavailableError(f"{self.engine_path}: TensorRT could not create an "
                                          "execution context (out of GPU memory?)")  # fmt: skip
        self._runtime, self._engine, self._context = runtime, engine, context
        n = self.io.max_batch
        self._stream = cuda.Stream()
        self._h_in = cuda.pagelocked_empty((n, *compat.INPUT_CHW), np.dtype(self.io.input_dtype))
        self._h_out = cuda.pagelocked_empty((n, self.io.output_dim), np.dtype(self.io.output_dtype))
        self._d_in = cuda.mem_alloc(self._h_in.nbytes)
        self._d_out = cuda.mem_alloc(self._h_out.nbytes)

    @contextlib.contextmanager
    def _current(self) -> Iterator[None]:
        """Make the retained primary context current on this thread for the block."""
        self._ctx.push()
        try:
            yield
        finally:
            self._cuda.Context.pop()

    @classmethod
    def from_bundle(cls, bundle: Bundle, precision: str = "fp32",
                    cache_dir: Optional[Union[str, Path]] = None, build_if_missing: bool = False,
                    **build_options: Any) -> TensorRTBackend:  # fmt: skip
        """The cached engine for this bundle, precision, TensorRT and GPU (built when
        ``build_if_missing``).

        ``build_options`` (see :func:`docedge.runtime.backends.tensorrt.builder.build_engine`):
        ``profile`` or ``min_batch``/``opt_batch``/``max_batch``, ``workspace_mb``,
        ``timing_cache``, ``dla_core``, ``version_compatible``, ``implicit``, ``tf32``,
        ``force``; plus ``device`` and ``api`` for the backend. Without profile/DLA/
        version-compatible options any cached engine for this bundle, precision and device
        will do. Cached engines built elsewhere (other TensorRT, GPU or ONNX) are rebuilt when
        ``build_if_missing``, else reported as :class:`EngineCacheMismatch`; no engine at all
        is :class:`EngineNotFoundError` naming the build command.
        """
        unknown = sorted(set(build_options) - set(BUILD_OPTIONS) - set(RUNTIME_OPTIONS))
        if unknown:
            raise TypeError(f"unknown TensorRT backend options {unknown}; known: "
                            f"{list(BUILD_OPTIONS + RUNTIME_OPTIONS)}")  # fmt: skip
        from .builder import build_engine, candidate_keys, gpu_device

        trt = compat.import_tensorrt()
        compat.import_pycuda()  # the backend needs it: fail before any build
        opts = dict(build_options)
        device = int(opts.pop("device", 0))
        api = str(opts.pop("api", "auto"))
        force = bool(opts.pop("force", False))
        sizes = {k: opts.pop(k) for k in ("min_batch", "opt_batch", "max_batch") if k in opts}
        profile: Optional[Profile] = opts.pop("profile", None)
        if profile is None and sizes:
            profile = make_profile(**sizes)
        implicit = opts.get("implicit")
        match_options = profile is not None or opts.get("dla_core") is not None \
            or bool(opts.get("version_compatible"))
        dev = gpu_device(device)
        keys = candidate_keys(trt, bundle, precision, dev, profile or Profile(), implicit,
                              opts.get("dla_core"), bool(opts.get("version_compatible")))
        cdir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        found = lookup(cdir, keys, match_options, bundle.path)
        if found.found is not None and not force:
            path = found.found.engine
        elif build_if_missing:
            if found.near_misses:
                logger.warning("rebuilding; cached engines cannot be used here:\n%s",
                               found.explain())  # fmt: skip
            path, _ = build_engine(bundle, precision, profile or Profile(), cache_dir=cdir,
                                   force=force, device=device, **opts)  # fmt: skip
        else:
            cmd = _build_command(bundle, precision, profile, opts, cache_dir)
            if found.near_misses:
                raise EngineCacheMismatch(
                    f"no usable TensorRT engine for {bundle.path} ({precision}) in {cdir} for "
                    f"TensorRT {trt.__version__} on {dev.name} (sm {dev.compute_capability}); "
                    f"cached engines for it cannot be used here:\n{found.explain()}\n"
                    f"Rebuild on this device: {cmd}")  # fmt: skip
            raise EngineNotFoundError(
                f"no TensorRT engine for {bundle.path} ({precision}) in {cdir} for TensorRT "
                f"{trt.__version__} on {dev.name} (sm {dev.compute_capability}); build it on "
                f"this device: {cmd}")  # fmt: skip
        return cls(path, precision, device=device, api=api)

    # --- inference ----------------------------------------------------------------------------
    def run(self, batch: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """float32 ``(n, 3, 128, 128)`` -> float32 ``(n, D)``; any ``n`` (split/padded)."""
        x = np.asarray(batch)
        if x.ndim != 4 or tuple(x.shape[1:]) != compat.INPUT_CHW:
            raise ValueError(f"expected (N, {', '.join(map(str, compat.INPUT_CHW))}), "
                             f"got {x.shape}")  # fmt: skip
        n = int(x.shape[0])
        out: np.ndarray[Any, Any] = np.empty((n, self.io.output_dim), dtype=np.float32)
        if n == 0:
            return out
        with self._lock:
            if self._closed:
                raise BackendUnavailableError(f"{self.engine_path}: backend is closed")
            with self._current():
                for start, stop, size in plan_batches(n, self.io.min_batch, self.io.max_batch):
                    out[start:stop] = self._run_chunk(x[start:stop], size)
        return out

    def _run_chunk(self, x: np.ndarray[Any, Any], size: int) -> np.ndarray[Any, Any]:
        k = int(x.shape[0])
        cuda = self._cuda
        self._h_in[:k] = x  # casts to the engine's input dtype
        if size > k:
            self._h_in[k:size] = 0
        cuda.memcpy_htod_async(self._d_in, self._h_in[:size], self._stream)
        compat.execute(self._context, self.io, size, int(self._d_in), int(self._d_out),
                       int(self._stream.handle))  # fmt: skip
        cuda.memcpy_dtoh_async(self._h_out[:size], self._d_out, self._stream)
        self._stream.synchronize()
        result: np.ndarray[Any, Any] = np.array(self._h_out[:k], dtype=np.float32)
        return result

    def describe(self) -> Dict[str, Any]:
        side = self.sidecar or {}
        return {
            "backend": self.name, "version": self.features.version, "line": self.features.line,
            "api": self.io.api, "engine": str(self.engine_path), "precision": self.precision,
            "mode": side.get("mode"), "profile": [self.io.min_batch, self.io.opt_batch,
                                                  self.io.max_batch],
            "gpu": self.device.name, "compute_capability": self.device.compute_capability,
            "io_dtypes": [self.io.input_dtype, self.io.output_dtype],
            "source_onnx_sha256": side.get("source_onnx_sha256"),
            "threading": "one execution context per backend; concurrent calls serialized by a lock",
        }  # fmt: skip

    # --- cleanup ------------------------------------------------------------------------------
    def close(self) -> None:
        """Free the device buffers and TensorRT objects, release the primary context.
        Idempotent; ``run`` afterwards raises."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._release()

    def _release(self) -> None:
        ctx = getattr(self, "_ctx", None)
        if ctx is None:
            return
        try:
            with self._current():
                for name in ("_d_in", "_d_out"):
                    buf = getattr(self, name, None)
                    if buf is not None:
                        buf.free()
                    setattr(self, name, None)
                for name in ("_context", "_engine", "_runtime", "_stream", "_h_in", "_h_out"):
                    setattr(self, name, None)
        finally:
            self._ctx = None
            ctx.detach()

    def __enter__(self) -> TensorRTBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _build_command(bundle: Bundle, precision: str, profile: Optional[Profile],
                   opts: Dict[str, Any], cache_dir: Optional[Union[str, Path]] = None) -> str:
    cmd = f"docedge build-engine {bundle.path} --precision {precision}"
    if cache_dir is not None:
        cmd += f" --cache-dir {cache_dir}"
    if profile is not None:
        cmd += (f" --min-batch {profile.min_batch} --opt-batch {profile.opt_batch}"
                f" --max-batch {profile.max_batch}")  # fmt: skip
    if opts.get("implicit"):
        cmd += " --implicit"
    if opts.get("dla_core") is not None:
        cmd += f" --dla-core {opts['dla_core']}"
    if opts.get("version_compatible"):
        cmd += " --version-compatible"
    return cmd
