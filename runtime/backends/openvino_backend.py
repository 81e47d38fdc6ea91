"""OpenVINO backend for x86 edge boxes (``pip install 'docedge[openvino]'``).

Runs a bundle artifact with OpenVINO's CPU plugin: the ONNX file of a precision (fp32, and
the ONNX fp16/int8 files), or an OpenVINO IR artifact that ``docedge convert --formats
openvino`` gated into the bundle (``.xml`` + ``.bin``, both hash-checked by the bundle
loader): precision ``bf16`` (the fp32 IR run with ``INFERENCE_PRECISION_HINT=bf16``) and
``int8`` (NNCF post-training quantization). See docs/openvino.md.

``inference_precision``: ``f32`` (default for ONNX files: pinned, so results match the fp32
reference; OpenVINO would otherwise pick bf16 on CPUs that have it) or ``bf16`` (where the CPU
supports it; :class:`BackendUnavailableError` elsewhere). An IR artifact carries the hint it
was gated with and refuses another one. ``performance_hint``: ``LATENCY`` (default) or
``THROUGHPUT``. ``threads``: inference threads (0: OpenVINO's default). Models are read from
the files' bytes, as the ONNX Runtime backend does, so what runs is exactly what was hashed
and no unlisted external-data file is ever loaded. Thread-safe: each calling thread gets its
own infer request on the shared compiled model.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Union

import numpy as np

from ..errors import BackendUnavailableError, BundleError

if TYPE_CHECKING:  # pragma: no cover
    from ..bundle import Bundle

logger = logging.getLogger(__name__)

PRECISION_HINTS = ("f32", "bf16")
PERFORMANCE_HINTS = ("LATENCY", "THROUGHPUT")
#: The manifest format of OpenVINO IR artifacts.
IR_FORMAT = "openvino"


def import_openvino() -> Any:
    """Import ``openvino`` or say what to install."""
    try:
        import openvino
    except ImportError:
        raise BackendUnavailableError("OpenVINO is not installed: pip install 'docedge[openvino]'") from None
    return openvino


def cpu_capabilities(core: Any = None, device: str = "CPU") -> List[str]:
    """OpenVINO's ``OPTIMIZATION_CAPABILITIES`` of ``device`` (``["BF16", "FP32", "INT8", ...]``)."""
    if core is None:
        core = import_openvino().Core()
    return [str(c) for c in core.get_property(device, "OPTIMIZATION_CAPABILITIES")]


class OpenVINOBackend:
    """Runs one ONNX file or OpenVINO IR (``weights_path``: its ``.bin``) with OpenVINO on the
    CPU (see the module docstring). ``run``: float32 ``(n, 3, 128, 128)`` -> ``(n, 256)``."""

    name = "openvino"

    def __init__(self, model_path: Union[str, Path], precision: str = "fp32",
                 inference_precision: str = "f32", performance_hint: str = "LATENCY",
                 threads: int = 0, input_name: str = "img", output_name: str = "feats",
                 device: str = "CPU", weights_path: Optional[Union[str, Path]] = None,
                 artifact: Optional[Dict[str, Any]] = None) -> None:  # fmt: skip
        ov = import_openvino()
        if inference_precision not in PRECISION_HINTS:
            raise ValueError(f"inference_precision must be one of {PRECISION_HINTS}")
        if performance_hint not in PERFORMANCE_HINTS:
            raise ValueError(f"performance_hint must be one of {PERFORMANCE_HINTS}")
        self.model_path = Path(model_path)
        self.weights_path = Path(weights_path) if weights_path is not None else None
        kind = "OpenVINO IR" if self.weights_path is not None else "ONNX file"
        for p in (self.model_path, self.weights_path):
            if p is not None and not p.is_file():
                raise BundleError(f"{p}: {kind} not found")
        self.precision = precision
        self.max_batch: Optional[int] = None
        self.input_name, self.output_name = input_name, output_name
        core = ov.Core()
        if inference_precision == "bf16":
            caps = cpu_capabilities(core, device)
            if "BF16" not in caps:
                raise BackendUnavailableError(f"this {device} has no bf16 support ({caps})")
        config: Dict[str, Any] = {"INFERENCE_PRECISION_HINT": inference_precision,
                                  "PERFORMANCE_HINT": performance_hint}  # fmt: skip
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            if self.weights_path is not None:
                model = core.read_model(self.model_path.read_bytes(), self.weights_path.read_bytes())
            else:
                model = core.read_model(self.model_path.read_bytes())
            self.compiled = core.compile_model(model, device, config)
        except Exception as e:  # OpenVINO raises RuntimeError subclasses with its own text
            raise BundleError(f"{self.model_path}: OpenVINO cannot load it ({e})") from e
        names = [n for o in self.compiled.outputs for n in o.get_names()]
        if output_name not in names:
            raise BundleError(f"{self.model_path}: no output {output_name!r} (has {names})")
        self._output = self.compiled.output(output_name)
        self._local = threading.local()
        self._config = {**config, "device": device, "version": str(ov.__version__)}
        if artifact is not None:
            self._config["artifact"] = artifact
        logger.debug("OpenVINO %s on %s with %s", kind, self.model_path, config)

    @classmethod
    def from_bundle(cls, bundle: Bundle, precision: str = "fp32", **options: Any) -> OpenVINOBackend:
        """The bundle's gated OpenVINO IR of ``precision`` when it has one (run with the hint it
        was gated with), else its ONNX artifact of ``precision`` (f32 hint by default). bf16
        exists only as an IR artifact: :class:`BundleError` naming the command otherwise."""
        ir = ir_artifact(bundle, precision)
        if ir is None:
            if precision == "bf16":
                raise BundleError(f"{bundle.path}: no OpenVINO bf16 artifact (bf16 is gated per bundle): "
                                  f"run `docedge convert {bundle.path} --formats openvino`")  # fmt: skip
            return cls(bundle.artifact_path(precision, "onnx"), precision=precision,
                       input_name=bundle.input_name, output_name=bundle.output_name, **options)
        rec = ir.record
        hint = str(rec.get("inference_precision_hint", "f32"))
        asked = options.pop("inference_precision", hint)
        if asked != hint:
            raise ValueError(f"{bundle.path / ir.file}: gated with INFERENCE_PRECISION_HINT={hint}, "
                             f"not {asked}; drop inference_precision (or use the ONNX artifact)")  # fmt: skip
        files = [f["file"] for f in rec.get("files") or [] if isinstance(f, dict)]
        if not files:
            raise BundleError(f"{bundle.path / ir.file}: the manifest lists no .bin weights for it")
        return cls(bundle.path / ir.file, weights_path=bundle.path / files[0], inference_precision=hint,
                   artifact={"file": ir.file, "sha256": ir.sha256, "format": IR_FORMAT},
                   precision=precision, input_name=bundle.input_name, output_name=bundle.output_name,
                   **options)  # fmt: skip

    def _request(self) -> Any:
        req = getattr(self._local, "request", None)
        if req is None:
            req = self._local.request = self.compiled.create_infer_request()
        return req

    def run(self, batch: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """float32 ``(n, 3, H, W)`` -> float32 ``(n, D)``."""
        x = np.ascontiguousarray(batch, dtype=np.float32)
        out = self._request().infer({self.input_name: x})
        return np.array(out[self._output], dtype=np.float32)

    def describe(self) -> Dict[str, Any]:
        d = {"backend": self.name, "precision": self.precision, "model": str(self.model_path),
             **self._config}  # fmt: skip
        if self.weights_path is not None:
            d["weights"] = str(self.weights_path)
        return d

    def close(self) -> None:
        self._local = threading.local()
        self.compiled = None


def ir_artifact(bundle: Bundle, precision: str) -> Any:
    """The bundle's main OpenVINO IR :class:`~docedge.runtime.bundle.Artifact` of
    ``precision``, or None."""
    return bundle.ir_artifact(precision)
