"""Golden files in NVIDIA Polygraphy's own formats, so QA can re-check any artifact with
Polygraphy itself::

    polygraphy run model_fp16.onnx --onnxrt --load-inputs golden/inputs.json \\
        --load-outputs golden/reference_outputs.json --atol 0.002 --rtol 0.05

- ``inputs.json``: Polygraphy input data, a list of feed dicts ``[{"img": float32 (b, 3,
  128, 128)}, ...]`` (one per iteration), saved with :func:`polygraphy.json.save_json`.
- ``reference_outputs.json``: a Polygraphy ``RunResults`` with one runner (the reference),
  one ``IterationResult`` ``{"feats": float32 (b, 256)}`` per feed, saved with
  ``RunResults.save``. Polygraphy encodes numpy arrays its own way (base64 ``np.save``
  bytes), which is why its serializers are used rather than hand-written JSON.
- ``check_with_polygraphy.sh``: the ``polygraphy run`` command for every ONNX artifact, with
  the suggested tolerances of :data:`POLYGRAPHY_TOLERANCES`.

Polygraphy is optional (``pip install polygraphy``; it is not on the device path): without
it these functions raise :class:`BackendUnavailableError` saying so.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from docedge.runtime.errors import BackendUnavailableError

#: Suggested element-wise Polygraphy tolerances ``(atol, rtol)`` per precision, for unit
#: 256-d embeddings. Polygraphy fails an element only when it exceeds both. They sit above
#: what conforming artifacts show (``docs/parity.md``) and below what a broken one shows.
POLYGRAPHY_TOLERANCES: Dict[str, Tuple[float, float]] = {
    "fp32": (1e-5, 1e-3),
    "fp16": (1e-2, 5e-2),
    "int8": (1e-1, 1.0),
}
GOLDEN_RUNNER = "docedge-reference"


def _polygraphy() -> Any:
    try:
        from polygraphy import json as pjson
        from polygraphy.comparator import RunResults
    except ImportError:
        raise BackendUnavailableError(
            "golden files need NVIDIA Polygraphy (not needed on devices): pip install polygraphy"
        ) from None
    return pjson, RunResults


def _quiet() -> Any:
    """Polygraphy logs to stdout: keep it to errors (``--json`` prints one object only)."""
    from polygraphy.logger import G_LOGGER

    return G_LOGGER.verbosity(G_LOGGER.ERROR)


def write_golden(out_dir: Union[str, Path], inputs: np.ndarray, outputs: np.ndarray,
                 input_name: str = "img", output_name: str = "feats",
                 runner: str = GOLDEN_RUNNER, batch_size: int = 8) -> Dict[str, str]:  # fmt: skip
    """Write Polygraphy input data and ``RunResults``; returns ``{"inputs", "outputs"}`` paths.

    ``inputs``: float32 ``(N, 3, H, W)`` pre-processed images; ``outputs``: float32 ``(N, D)``
    reference embeddings of the same rows; ``batch_size`` rows per iteration (feed).
    """
    pjson, RunResults = _polygraphy()
    if len(inputs) != len(outputs) or len(inputs) == 0:
        raise ValueError(f"need matching non-empty inputs/outputs ({len(inputs)} vs "
                         f"{len(outputs)})")  # fmt: skip
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    feeds: List[Dict[str, np.ndarray]] = []
    iterations: List[Dict[str, np.ndarray]] = []
    for i in range(0, len(inputs), batch_size):
        feeds.append({input_name: np.ascontiguousarray(inputs[i : i + batch_size], np.float32)})
        iterations.append({output_name: np.ascontiguousarray(outputs[i : i + batch_size],
                                                             np.float32)})  # fmt: skip
    results = RunResults()
    results.add(iterations, runner_name=runner)
    paths = {"inputs": out / "inputs.json", "outputs": out / "reference_outputs.json"}
    with _quiet():
        pjson.save_json(feeds, str(paths["inputs"]), description="docedge golden inputs")
        results.save(str(paths["outputs"]))
    return {k: str(v) for k, v in paths.items()}


def load_golden(inputs_path: Union[str, Path], outputs_path: Union[str, Path],
                runner: str = GOLDEN_RUNNER) -> Tuple[List[Dict[str, np.ndarray]],
                                                      List[Dict[str, np.ndarray]]]:  # fmt: skip
    """Read golden files back with Polygraphy: ``(feeds, outputs per iteration)``."""
    pjson, RunResults = _polygraphy()
    with _quiet():
        feeds = pjson.load_json(str(inputs_path), description="docedge golden inputs")
        results = RunResults.load(str(outputs_path))
    iterations = [dict(it) for it in results[runner]]
    return list(feeds), iterations


def polygraphy_command(model: Union[str, Path], files: Dict[str, str], precision: str,
                       tolerances: Optional[Tuple[float, float]] = None) -> str:  # fmt: skip
    """The ``polygraphy run`` command checking one ONNX file against the golden files."""
    atol, rtol = tolerances or POLYGRAPHY_TOLERANCES.get(precision, (1e-3, 1e-2))
    return " ".join(shlex.quote(str(a)) for a in (
        "polygraphy", "run", model, "--onnxrt", "--load-inputs", files["inputs"],
        "--load-outputs", files["outputs"], "--atol", f"{atol:g}", "--rtol", f"{rtol:g}"))


def polygraphy_commands(bundle: Any, files: Dict[str, str]) -> Dict[str, str]:
    """``{precision: command}`` for every main ONNX artifact of ``bundle`` (fixed-shape
    variants such as the NHWC batch-1 copy take other inputs and are left out)."""
    return {a.precision: polygraphy_command(bundle.path / a.file, files, a.precision)
            for a in bundle.artifacts if a.format == "onnx" and not a.variant}  # fmt: skip


def write_golden_for_bundle(out_dir: Union[str, Path], bundle: Any, result: Any,
                            max_images: int = 16) -> Dict[str, Any]:  # fmt: skip
    """Golden files of a parity run (its first ``max_images`` images) plus a shell script with
    the Polygraphy command per ONNX artifact. Returns the paths and ``commands``."""
    n = min(max_images, len(result.raw["inputs"]))
    files = write_golden(out_dir, result.raw["inputs"][:n], result.raw["reference"][:n],
                         bundle.input_name, bundle.output_name)  # fmt: skip
    commands = polygraphy_commands(bundle, files)
    script = Path(out_dir) / "check_with_polygraphy.sh"
    lines = ["#!/bin/sh", f"# Reference: {result.reference}; {n} images.",
             "# Each command exits 0 when the artifact matches the reference within tolerance.",
             "set -e"] + [commands[p] for p in commands]  # fmt: skip
    script.write_text("\n".join(lines) + "\n", encoding="utf-8")
    script.chmod(0o755)
    return {**files, "script": str(script), "commands": commands}
