"""Run a bundle's converted artifacts the way the conversion gate did, for ``docedge parity``
and ``docedge bench``: one batch function per artifact, L2-normalized output.

``mobile_runs(bundle)`` lists ``(name, record, factory)`` for every converted model file
(``ort``, ``tflite``, ``ncnn``, ``openvino``, fixed-shape ``onnx`` variants); ``factory()`` returns
``(embed, verified_with)`` or raises :class:`ConverterUnavailableError` (the interpreter is not
installed, or the format cannot run here: Core ML needs macOS).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Dict, List, Tuple

import numpy as np

from ._common import ConverterUnavailableError

Embed = Callable[[np.ndarray], np.ndarray]
MODEL_FORMATS = ("onnx", "ort", "tflite", "ncnn", "coreml", "openvino")


def _normalized(embed: Embed, normalized_output: bool) -> Embed:
    if normalized_output:
        return embed
    from .gate import l2_normalize

    return lambda x: l2_normalize(embed(x))


def artifact_runner(bundle: Any, record: Dict[str, Any]) -> Tuple[Embed, Dict[str, Any]]:
    """``(embed, verified_with)`` for one artifact record of ``bundle`` (a loaded Bundle)."""
    fmt = record["format"]
    path = bundle.path / record["file"]
    if fmt in ("onnx", "ort"):
        from .convert import ort_runner

        embed, info = ort_runner(path, record.get("session_options"))
    elif fmt == "tflite":
        from .litert import litert_runner

        embed, io = litert_runner(path)
        info = {"ai-edge-litert": "installed", "input": io}
    elif fmt == "ncnn":
        from .ncnn import ncnn_runner

        extra = [f["file"] for f in record.get("files") or []]
        embed, info = ncnn_runner(path, bundle.path / extra[0])
    elif fmt == "openvino":
        from .openvino import ir_runner

        extra = [f["file"] for f in record.get("files") or []]
        hint = str(record.get("inference_precision_hint", "f32"))
        embed, info = ir_runner(path, bundle.path / extra[0], hint)
    elif fmt == "coreml":
        from .coreml import NOT_RUN_REASON

        raise ConverterUnavailableError(f"{path}: not run: {NOT_RUN_REASON}")
    else:
        raise ValueError(f"{path}: format {fmt!r} is not a model")
    return _normalized(embed, bool(record.get("normalized_output", True))), info


def mobile_runs(bundle: Any) -> List[Tuple[str, Dict[str, Any], Callable[[], Tuple[Embed, Dict[str, Any]]]]]:
    """Every converted model artifact of ``bundle`` (main ONNX files excluded: parity runs
    them with its own backends), with a factory for its runner."""
    out: List[Tuple[str, Dict[str, Any], Callable[[], Tuple[Embed, Dict[str, Any]]]]] = []
    for a in bundle.artifacts:
        rec = a.record
        if rec["format"] not in MODEL_FORMATS or (rec["format"] == "onnx" and not rec.get("variant")):
            continue
        name = f"{rec['precision']}/{rec['format']}" + (f"-{rec['variant']}" if rec.get("variant") else "")
        out.append((name, rec, functools.partial(artifact_runner, bundle, rec)))
    return out


class MobileBackend:
    """A converted artifact behind the runtime backends' interface (``run``, ``describe``,
    ``close``, ``max_batch``), so ``docedge parity`` / ``bench`` can loop over it like over an
    ONNX Runtime backend. ``from_factory`` turns an unavailable interpreter into
    :class:`docedge.runtime.errors.BackendUnavailableError` (a skip with the reason)."""

    def __init__(self, name: str, embed: Embed, info: Dict[str, Any], max_batch: int = 1) -> None:
        self.name = name
        self._embed = embed
        self.info = info
        self.max_batch = max_batch

    @classmethod
    def from_factory(cls, name: str, record: Dict[str, Any],
                     factory: Callable[[], Tuple[Embed, Dict[str, Any]]]) -> MobileBackend:  # fmt: skip
        from docedge.runtime.errors import BackendUnavailableError

        try:
            embed, info = factory()
        except (ConverterUnavailableError, ImportError) as e:
            raise BackendUnavailableError(str(e)) from None
        batch = record.get("input", {}).get("batch")
        return cls(name, embed, info, max_batch=32 if batch == "dynamic" else 1)

    def run(self, x: np.ndarray) -> np.ndarray:
        out: np.ndarray = np.asarray(self._embed(np.ascontiguousarray(x, np.float32)), np.float32)
        return out

    def describe(self) -> Dict[str, Any]:
        return {"backend": "mobile", "artifact": self.name, **self.info}

    def close(self) -> None:
        self._embed = None  # type: ignore[assignment]
