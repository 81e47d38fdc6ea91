"""ONNX Runtime backend: CPU by default, CUDA / TensorRT execution providers on request.

A requested provider that ONNX Runtime cannot load is an error
(:class:`ProviderUnavailableError`), never a silent fall-back to the CPU: the session's
actual providers are checked after creation. ``InferenceSession.run`` is thread-safe, so one
backend may serve several threads.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import BackendUnavailableError, BundleError, ProviderUnavailableError

logger = logging.getLogger(__name__)

#: Short names accepted for providers.
PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "nnapi": "NnapiExecutionProvider",
    "xnnpack": "XnnpackExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}

_GRAPH_OPT = ("disable", "basic", "extended", "all")

ProviderSpec = Union[str, Tuple[str, Dict[str, Any]]]


def import_onnxruntime() -> Any:
    """Import ``onnxruntime`` or say what to install."""
    try:
        import onnxruntime
    except ImportError:
        raise BackendUnavailableError(
            "ONNX Runtime is not installed. Install `pip install docedge[onnxruntime]` (CPU), "
            "or the onnxruntime-gpu wheel for your CUDA/JetPack version (on Jetson: the "
            "vendor/community aarch64 wheel; see docs/jetson.md)."
        ) from None
    return onnxruntime


def resolve_provider_name(name: str) -> str:
    return PROVIDER_ALIASES.get(name.lower(), name)


class OnnxRuntimeBackend:
    """Runs one ONNX file with ONNX Runtime.

    ``providers``: names (``"cpu"``, ``"cuda"``, ``"tensorrt"`` or full ONNX Runtime names)
    or ``(name, options)`` pairs, in priority order; default CPU only. Every requested provider
    must be active in the created session, otherwise :class:`ProviderUnavailableError`.
    ``intra_op_threads``: 0 lets ONNX Runtime decide (one thread per physical core).
    ``allow_spinning``: whether idle worker threads busy-wait for work (ONNX Runtime's default,
    True). On a shared CPU spinning threads steal the core from other processes, so docedge's
    default is False (``DOCEDGE_ORT_SPINNING=1`` restores ONNX Runtime's behaviour); see
    docs/performance.md. ``graph_optimization``: one of ``disable|basic|extended|all``.
    """

    name = "onnxruntime"

    def __init__(
        self,
        model_path: Union[str, Path],
        precision: str = "fp32",
        providers: Optional[Sequence[ProviderSpec]] = None,
        intra_op_threads: int = 0,
        inter_op_threads: int = 0,
        graph_optimization: str = "all",
        input_name: str = "img",
        output_name: str = "feats",
        allow_spinning: Optional[bool] = None,
    ) -> None:
        ort = import_onnxruntime()
        self.model_path = Path(model_path)
        self.precision = precision
        self.max_batch: Optional[int] = None
        self.input_name = input_name
        self.output_name = output_name
        requested = self._normalize(providers or ["cpu"])
        names = [p if isinstance(p, str) else p[0] for p in requested]
        offered = set(ort.get_available_providers())
        missing = [n for n in names if n not in offered]
        if missing:
            raise ProviderUnavailableError(
                f"{self.model_path}: ONNX Runtime provider(s) {missing} requested but this "
                f"onnxruntime {ort.__version__} build offers only {sorted(offered)}. Install "
                "onnxruntime-gpu (CUDA/TensorRT providers) instead of onnxruntime, or ask for "
                "'cpu'."
            )
        if graph_optimization not in _GRAPH_OPT:
            raise ValueError(f"graph_optimization must be one of {_GRAPH_OPT}")
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(intra_op_threads)
        so.inter_op_num_threads = int(inter_op_threads)
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[graph_optimization]
        so.log_severity_level = 3
        if allow_spinning is None:
            allow_spinning = os.environ.get("DOCEDGE_ORT_SPINNING", "0") == "1"
        self.allow_spinning = bool(allow_spinning)
        spin = "1" if self.allow_spinning else "0"
        so.add_session_config_entry("session.intra_op.allow_spinning", spin)
        so.add_session_config_entry("session.inter_op.allow_spinning", spin)
        self.intra_op_threads = int(intra_op_threads)
        if not self.model_path.is_file():
            raise BundleError(f"{self.model_path}: ONNX file not found")
        # The session is made from the file's bytes, not its path: what runs is exactly what
        # was read (and hashed by the bundle), and ONNX Runtime cannot pull in external-data
        # files (``weights.bin``) that no manifest lists.
        data = self.model_path.read_bytes()
        try:
            self.session = ort.InferenceSession(data, sess_options=so, providers=requested)
        except Exception as e:  # ORT raises its own exception types (Fail, InvalidGraph, ...)
            hint = ""
            if "external" in str(e).lower():
                hint = ("; it stores tensors in external data files, which docedge refuses: "
                        "save the model with its weights inside the .onnx file")
            raise BundleError(f"{self.model_path}: ONNX Runtime cannot load it ({e}){hint}") from e
        active = self.session.get_providers()
        not_loaded = [n for n in names if n not in active]
        if not_loaded:
            raise ProviderUnavailableError(
                f"{self.model_path}: provider(s) {not_loaded} were requested but failed to load "
                f"(active: {active}); check the CUDA/cuDNN/TensorRT libraries. docedge does not "
                "fall back to the CPU silently."
            )
        self.providers = active
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if input_name not in inputs or output_name not in outputs:
            raise BundleError(
                f"{self.model_path}: expected input {input_name!r} and output {output_name!r}, "
                f"the model has inputs {inputs} and outputs {outputs}"
            )
        self._ort_version = str(ort.__version__)
        logger.debug("ONNX Runtime session on %s with %s", self.model_path, active)

    @staticmethod
    def _normalize(providers: Sequence[ProviderSpec]) -> List[ProviderSpec]:
        out: List[ProviderSpec] = []
        for p in providers:
            if isinstance(p, str):
                out.append(resolve_provider_name(p))
            else:
                out.append((resolve_provider_name(p[0]), dict(p[1])))
        return out

    def run(self, batch: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """float32 ``(n, 3, H, W)`` -> float32 ``(n, D)``."""
        x = np.ascontiguousarray(batch, dtype=np.float32)
        (y,) = self.session.run([self.output_name], {self.input_name: x})
        return np.asarray(y, dtype=np.float32)

    def describe(self) -> Dict[str, Any]:
        return {
            "backend": self.name,
            "version": self._ort_version,
            "providers": list(self.providers),
            "precision": self.precision,
            "intra_op_threads": self.intra_op_threads,
            "allow_spinning": self.allow_spinning,
            "model": str(self.model_path),
        }

    def close(self) -> None:
        self.session = None
