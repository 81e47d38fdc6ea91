"""``backend="auto"``: OpenVINO where it was measured faster, ONNX Runtime otherwise; never silent.

OpenVINO is chosen for a precision when all of these hold, else ONNX Runtime:

- the ``openvino`` module is installed and the CPU is x86 (OpenVINO's CPU plugin is tuned for
  it; ARM boxes stay on ONNX Runtime);
- only CPU providers are asked for (``providers=["cuda"]`` means ONNX Runtime on the GPU);
- the bundle holds a *gated* (passed) OpenVINO IR artifact of that precision;
- for bf16, the CPU reports bf16 support;
- its conversion-time measurement (``benchmark.speedup_vs_onnxruntime`` in the artifact record,
  per core, against ONNX Runtime on the ONNX artifact that would run otherwise) is at least
  :data:`MIN_SPEEDUP`; bf16 has no ONNX artifact, so OpenVINO is its only engine.

The decision (:class:`BackendChoice`: requested, chosen, reason) is logged, recorded by the
backend (``describe()["backend_choice"]``) and handed to an optional ``on_choice`` callback
(the CLI prints it). :func:`decide` is a pure function of what :func:`select_backend` probes,
so the rule is tested with fakes.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import platform
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

from ..errors import BundleError

if TYPE_CHECKING:  # pragma: no cover
    from ..bundle import Bundle

logger = logging.getLogger(__name__)

#: OpenVINO must have measured at least this much faster than ONNX Runtime (a margin over the
#: noise of a short conversion-time timing).
MIN_SPEEDUP = 1.10
X86_MACHINES = ("x86_64", "amd64", "i386", "i686", "x86")


@dataclass(frozen=True)
class BackendChoice:
    """What ``backend="auto"`` picked and why."""

    requested: str
    backend: str
    precision: str
    reason: str

    def to_dict(self) -> Dict[str, str]:
        return {"requested": self.requested, "backend": self.backend, "precision": self.precision,
                "reason": self.reason}  # fmt: skip

    def __str__(self) -> str:
        return f"backend {self.backend} for {self.precision} ({self.requested}: {self.reason})"


def _speedup(record: Dict[str, Any], batch: int) -> Optional[Tuple[int, float]]:
    """``(measured batch, ratio)`` at the measured batch size nearest ``batch`` (on a log
    scale; ties go to the smaller), or None when nothing was measured."""
    ratios = (record.get("benchmark") or {}).get("speedup_vs_onnxruntime") or {}
    best: Optional[Tuple[float, int, float]] = None
    for key, value in ratios.items():
        try:
            b = int(str(key).rsplit("_", 1)[-1])
        except ValueError:
            continue
        if b < 1 or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        d = abs(math.log(b) - math.log(max(1, batch)))
        if best is None or (d, b) < (best[0], best[1]):
            best = (d, b, float(value))
    return None if best is None else (best[1], best[2])


def decide(precision: str, ir_record: Optional[Dict[str, Any]], has_onnx: bool, machine: str,
           openvino_version: Optional[str], cpu_caps: Sequence[str], providers: Sequence[str] = ("cpu",),
           batch: int = 32) -> BackendChoice:  # fmt: skip
    """The rule of the module docstring on probed facts: ``ir_record`` (the bundle's OpenVINO
    artifact of ``precision`` or None), ``has_onnx`` (an ONNX artifact of ``precision``),
    ``machine`` (``platform.machine()``), ``openvino_version`` (None: not installed),
    ``cpu_caps`` (OpenVINO's CPU capabilities), ``providers`` (ONNX Runtime providers asked),
    ``batch`` (the batch size the caller will run: the ratio measured nearest to it counts)."""

    def ort(why: str) -> BackendChoice:
        if not has_onnx:
            raise BundleError(f"backend auto: no engine for {precision}: {why}, and the bundle has "
                              f"no ONNX artifact of {precision} for ONNX Runtime")  # fmt: skip
        return BackendChoice("auto", "onnxruntime", precision, why)

    gpu = [p for p in providers if str(p).lower() not in ("cpu", "cpuexecutionprovider")]
    if gpu:
        return ort(f"providers {list(gpu)} asked for: ONNX Runtime")
    if ir_record is None:
        return ort(f"the bundle has no OpenVINO artifact of {precision}")
    if openvino_version is None:
        return ort("OpenVINO is not installed (pip install 'docedge[openvino]')")
    if machine.lower() not in X86_MACHINES:
        return ort(f"the CPU is {machine}, not x86")
    passed = (ir_record.get("verification") or {}).get("passed")
    if passed is not True:
        return ort(f"{ir_record.get('file')} is not a passed gate (passed={passed})")
    if str(ir_record.get("inference_precision_hint")) == "bf16" and "BF16" not in cpu_caps:
        return ort(f"this CPU has no bf16 (OpenVINO capabilities {list(cpu_caps)})")
    what = f"{ir_record.get('file')} (OpenVINO {openvino_version})"
    if not has_onnx:
        return BackendChoice("auto", "openvino", precision,
                             f"{what}: only OpenVINO runs {precision} (no ONNX artifact of it)")
    measured = _speedup(ir_record, batch)
    if measured is None:
        return ort(f"{ir_record.get('file')} has no recorded speed against ONNX Runtime "
                   "(converted with --no-benchmark)")  # fmt: skip
    at, speed = measured
    where = (ir_record.get("benchmark") or {}).get("measured_on", "the converting machine")
    said = f"{what} measured {speed:.2f}x ONNX Runtime at batch {at} on {where}"
    if speed < MIN_SPEEDUP:
        return ort(f"{said} (< {MIN_SPEEDUP:.2f}x)")
    return BackendChoice("auto", "openvino", precision, said)


def openvino_version() -> Optional[str]:
    """The installed OpenVINO's version, or None (no import of it unless it is installed)."""
    if importlib.util.find_spec("openvino") is None:
        return None
    try:
        import openvino

        return str(openvino.__version__)
    except ImportError:  # pragma: no cover - a broken installation
        return None


def select_backend(bundle: Bundle, precision: str, providers: Sequence[str] = ("cpu",),
                   batch: int = 32) -> BackendChoice:  # fmt: skip
    """Probe this machine and ``bundle`` and :func:`decide`; logs the choice at INFO."""
    from .openvino_backend import cpu_capabilities, ir_artifact

    ir = ir_artifact(bundle, precision)
    has_onnx = any(a.format == "onnx" and a.precision == precision and not a.variant
                   for a in bundle.artifacts)  # fmt: skip
    version = openvino_version() if ir is not None else None
    caps: List[str] = []
    if version is not None and str(ir.record.get("inference_precision_hint")) == "bf16":
        caps = cpu_capabilities()
    choice = decide(precision, ir.record if ir is not None else None, has_onnx, platform.machine(),
                    version, caps, providers, batch)  # fmt: skip
    logger.info("%s", choice)
    return choice
