"""OpenVINO backend for x86 edge boxes (``pip install 'docedge[openvino]'``).

Runs the bundle's ONNX artifact with OpenVINO's CPU plugin. ``inference_precision``: ``f32``
(default: pinned, so results match the fp32 reference; OpenVINO would otherwise pick bf16 on
CPUs that have it) or ``bf16`` (where the CPU supports it: faster, and parity must be run for
it like for any other precision). ``performance_hint``: ``LATENCY`` or ``THROUGHPUT``.
``threads``: inference threads (0: OpenVINO's default). The model is read from the file's
bytes, as the ONNX Runtime backend does, so no unlisted external-data file is ever loaded.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np

from ..errors import BackendUnavailableError, BundleError

logger = logging.getLogger(__name__)

PRECISION_HINTS = ("f32", "bf16")
PERFORMANCE_HINTS = ("LATENCY", "THROUGHPUT")


def import_openvino() -> Any:
    """Import ``openvino`` or say what to install."""
    try:
        import openvino
    except ImportError:
        raise BackendUnavailableError("OpenVINO is not installed: pip install 'docedge[openvino]'") from None
    return openvino


class OpenVINOBackend:
    """Runs one ONNX file with OpenVINO on the CPU (see the module docstring)."""

    name = "openvino"

    def __init__(self, model_path: Union[str, Path], precision: str = "fp32",
                 inference_precision: str = "f32", performance_hint: str = "LATENCY",
                 threads: int = 0, input_name: str = "img", output_name: str = "feats",
                 device: str = "CPU") -> None:  # fmt: skip
        ov = import_openvino()
        if inference_precision not in PRECISION_HINTS:
            raise ValueError(f"inference_precision must be one of {PRECISION_HINTS}")
        if performance_hint not in PERFORMANCE_HINTS:
            raise ValueError(f"performance_hint must be one of {PERFORMANCE_HINTS}")
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise BundleError(f"{self.model_path}: ONNX file not found")
        self.precision = precision
        self.max_batch: Optional[int] = None
        self.input_name, self.output_name = input_name, output_name
        core = ov.Core()
        if inference_precision == "bf16":
            caps = core.get_property(device, "OPTIMIZATION_CAPABILITIES")
            if "BF16" not in caps:
                raise BackendUnavailableError(f"this {device} has no bf16 support ({caps})")
        config: Dict[str, Any] = {"INFERENCE_PRECISION_HINT": inference_precision,
                                  "PERFORMANCE_HINT": performance_hint}  # fmt: skip
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            model = core.read_model(self.model_path.read_bytes())
            self.compiled = core.compile_model(model, device, config)
        except Exception as e:  # OpenVINO raises RuntimeError subclasses with its own text
            raise BundleError(f"{self.model_path}: OpenVINO cannot load it ({e})") from e
        names = [n for o in self.compiled.outputs for n in o.get_names()]
        if output_name not in names:
            raise BundleError(f"{self.model_path}: no output {output_name!r} (has {names})")
        self._request = self.compiled.create_infer_request()
        self._config = {**config, "device": device, "version": str(ov.__version__)}

    def run(self, batch: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """float32 ``(n, 3, H, W)`` -> float32 ``(n, D)``."""
        x = np.ascontiguousarray(batch, dtype=np.float32)
        out = self._request.infer({self.input_name: x})
        y = out[self.compiled.output(self.output_name)]
        return np.asarray(y, dtype=np.float32)

    def describe(self) -> Dict[str, Any]:
        return {"backend": self.name, "precision": self.precision, "model": str(self.model_path),
                **self._config}  # fmt: skip

    def close(self) -> None:
        self._request = None
