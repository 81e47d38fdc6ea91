"""Inference backends behind one interface (:class:`Backend`), imported lazily."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Backend

if TYPE_CHECKING:
    from ..bundle import Bundle

BACKENDS = ("onnxruntime", "openvino", "tensorrt")


def create_backend(
    bundle: Bundle, precision: str = "fp32", backend: str = "onnxruntime", **options: Any
) -> Backend:
    """Open the bundle's artifact of ``precision`` with ``backend``.

    ``options`` go to the backend's constructor (for ONNX Runtime: ``providers``,
    ``intra_op_threads``, ``allow_spinning``, ``graph_optimization``; for OpenVINO:
    ``inference_precision``, ``performance_hint``, ``threads``; for TensorRT: see its module).
    """
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

        return OpenVINOBackend(bundle.artifact_path(precision, "onnx"), precision=precision,
                               input_name=bundle.input_name, output_name=bundle.output_name,
                               **options)  # fmt: skip
    if backend == "tensorrt":
        from .tensorrt.runner import TensorRTBackend

        trt_backend: Backend = TensorRTBackend.from_bundle(bundle, precision=precision, **options)
        return trt_backend
    raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")


__all__ = ["BACKENDS", "Backend", "create_backend"]
