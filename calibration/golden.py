"""Golden files in NVIDIA Polygraphy's formats, so QA can re-check any artifact with
Polygraphy itself::

    polygraphy run model_fp16.onnx --onnxrt --load-inputs golden/inputs.json \\
        --load-outputs golden/reference_outputs.json --atol 1e-3 --rtol 1e-2

``inputs.json`` is a list of feed dicts (Polygraphy's input-data format);
``reference_outputs.json`` is a Polygraphy ``RunResults`` with one runner, the reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Union

import numpy as np

from docedge.runtime.errors import BackendUnavailableError

#: Suggested Polygraphy tolerances per precision (element-wise on unit vectors).
POLYGRAPHY_TOLERANCES = {"fp32": (1e-5, 1e-4), "fp16": (2e-3, 5e-2), "int8": (5e-2, 5e-1)}


def polygraphy_commands(bundle: Any, files: Dict[str, str]) -> Dict[str, str]:
    """The ``polygraphy run`` command that checks each ONNX artifact against the golden files."""
    cmds = {}
    for art in bundle.artifacts:
        if art.format != "onnx":
            continue
        atol, rtol = POLYGRAPHY_TOLERANCES.get(art.precision, (1e-3, 1e-2))
        cmds[art.precision] = (f"polygraphy run {bundle.path / art.file} --onnxrt "
                               f"--load-inputs {files['inputs']} --load-outputs {files['outputs']} "
                               f"--atol {atol:g} --rtol {rtol:g}")  # fmt: skip
    return cmds


def write_golden(out_dir: Union[str, Path], inputs: np.ndarray, outputs: np.ndarray,
                 input_name: str = "img", output_name: str = "feats",
                 runner: str = "docedge-reference", batch_size: int = 8) -> Dict[str, str]:  # fmt: skip
    """Write Polygraphy input data and RunResults (``batch_size`` images per iteration)."""
    try:
        from polygraphy.comparator import IterationResult, RunResults
        from polygraphy.json import save_json
    except ImportError:
        raise BackendUnavailableError("golden files need Polygraphy: pip install polygraphy") from None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    feeds, iters = [], []
    for i in range(0, len(inputs), batch_size):
        x = np.ascontiguousarray(inputs[i : i + batch_size], np.float32)
        y = np.ascontiguousarray(outputs[i : i + batch_size], np.float32)
        feeds.append({input_name: x})
        iters.append(IterationResult({output_name: y}, runner_name=runner))
    results = RunResults()
    results.append((runner, iters))
    paths = {"inputs": out / "inputs.json", "outputs": out / "reference_outputs.json"}
    save_json(feeds, str(paths["inputs"]))
    results.save(str(paths["outputs"]))
    return {k: str(v) for k, v in paths.items()}
