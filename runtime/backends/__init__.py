"""Inference backends behind one interface (:class:`Backend`), imported lazily."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Optional

from .base import Backend

if TYPE_CHECKING:
    from ..bundle import Bundle
    from .auto import BackendChoice

BACKENDS = ("onnxruntime", "openvino", "tensorrt")
#: What ``backend=`` accepts: a backend, or ``auto`` (:mod:`.auto`: OpenVINO where measured faster).
BACKEND_CHOICES = (*BACKENDS, "auto")
#: Options of ``backend="auto"`` and what each engine calls them.
_AUTO_OPTIONS = {"onnxruntime": {"threads": "intra_op_threads", "providers": "providers",
                                 "allow_spinning": "allow_spinning"},
                 "openvino": {"threads": "threads", "performance_hint": "performance_hint"}}  # fmt: skip


def create_backend(
    bundle: Bundle, precision: str = "fp32", backend: str = "onnxruntime", **options: Any
) -> Backend:
    """Open the bundle's artifact of ``precision`` with ``backend``.

    ``options`` go to the backend's constructor (for ONNX Runtime: ``providers``,
    ``intra_op_threads``, ``allow_spinning``, ``graph_optimization``; for OpenVINO:
    ``inference_precision``, ``performance_hint``, ``threads``; for TensorRT: see its module).
    ``backend="auto"`` picks OpenVINO or ONNX Runtime (:mod:`.auto`) and takes the shared
    options ``threads``, ``providers``, ``allow_spinning``, ``performance_hint`` (each passed to
    the engine that understands it), ``batch_size`` (the batches it will run, default 32:
    the speed measured nearest to it decides) and ``on_choice`` (called with the
    :class:`~docedge.runtime.backends.auto.BackendChoice`); the choice is logged and kept as
    the backend's ``backend_choice`` attribute (``Embedder.describe()["backend_choice"]``).
    """
    if backend == "auto":
        return _create_auto(bundle, precision, **options)
    if backend == "onnxruntime":
        from .onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(
            bundle.artifact_path(precision, "onnx"),
            precision=precision,
            input_name=bundle.input_name,
            output_name=bundle.output_name,
            **options,
        )
    if backend == "openvino":
        from .openvino_backend import OpenVINOBackend

        return OpenVINOBackend.from_bundle(bundle, precision, **options)
    if backend == "tensorrt":
        from .tensorrt.runner import TensorRTBackend

        trt_backend: Backend = TensorRTBackend.from_bundle(bundle, precision=precision, **options)
        return trt_backend
    raise ValueError(f"unknown backend {backend!r}; choose one of {BACKEND_CHOICES}")


def _create_auto(bundle: Bundle, precision: str,
                 on_choice: Optional[Callable[[BackendChoice], None]] = None, batch_size: int = 32,
                 **options: Any) -> Backend:  # fmt: skip
    from .auto import select_backend

    known = sorted({k for m in _AUTO_OPTIONS.values() for k in m})
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise TypeError(f"backend 'auto' takes the options {known}, not {unknown}; name a backend "
                        "to pass its own options")  # fmt: skip
    providers = [str(p if isinstance(p, str) else p[0]) for p in options.get("providers") or ["cpu"]]
    choice = select_backend(bundle, precision, providers, batch_size)
    names = _AUTO_OPTIONS[choice.backend]
    engine_options: Dict[str, Any] = {names[k]: v for k, v in options.items() if k in names}
    backend = create_backend(bundle, precision, choice.backend, **engine_options)
    # recorded on the instance: Embedder.describe() reports it as "backend_choice"
    backend.backend_choice = choice  # type: ignore[attr-defined]
    if on_choice is not None:
        on_choice(choice)
    return backend


__all__ = ["BACKENDS", "BACKEND_CHOICES", "Backend", "create_backend"]
