"""Core ML ``.mlpackage`` (ML program) from the traced PyTorch reference with coremltools.

- ``fp16``: ``ct.convert(..., convert_to="mlprogram", compute_precision=FLOAT16)``, iOS 16 /
  macOS 13 minimum; input ``img`` float32 ``[1, 3, 128, 128]`` (NCHW, BGR, /255), output
  ``feats`` float32 ``[1, 256]``, L2-normalized.
- ``int8``: the fp16 program with int8 per-channel symmetric weights
  (``coremltools.optimize.coreml.linear_quantize_weights``); compute stays fp16.

Core ML prediction needs macOS (``MLModel.predict`` is not available on Linux), so these
artifacts are recorded with verification ``"not run: needs macOS"`` and never as passed.
``samples/coreml_check.py`` runs the parity check on a Mac against the bundle's test vectors.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, Union

from ._common import ConversionError, require, versions

logger = logging.getLogger(__name__)

EXTRA = "coreml"
NOT_RUN_REASON = "needs macOS (Core ML prediction is not available on Linux)"
MINIMUM_TARGET = "iOS16"


def static_check(package: Union[str, Path]) -> Dict[str, Any]:
    """What can be checked without macOS: the saved package's spec (reloaded from disk) has
    the expected interface. Not a parity check."""
    ct = require("coremltools", EXTRA, "Core ML checks")
    spec = ct.models.MLModel(str(package), skip_model_load=True).get_spec()
    ins = {i.name: list(i.type.multiArrayType.shape) for i in spec.description.input}
    outs = {o.name: list(o.type.multiArrayType.shape) for o in spec.description.output}
    ok = ins == {"img": [1, 3, 128, 128]} and outs == {"feats": [1, 256]}
    if not ok:
        raise ConversionError(f"{package}: unexpected Core ML interface: inputs {ins}, outputs {outs}")
    return {
        "what": "interface of the saved package (spec reloaded; no prediction)",
        "inputs": ins,
        "outputs": outs,
        "spec_version": int(spec.specificationVersion),
        "passed": True,
    }


def convert_coreml_zip(net: Any, zip_path: Union[str, Path], precision: str = "fp16",
                       preprocess: Union[Dict[str, Any], None] = None) -> Dict[str, Any]:  # fmt: skip
    """:func:`convert_coreml` into a temporary ``.mlpackage`` shipped as one reproducible zip
    (``model_fp16.mlpackage.zip`` holds ``model_fp16.mlpackage/...``); the record lists the
    package's files with their hashes under ``contents``."""
    import tempfile

    from ..archive import zip_tree

    zp = Path(zip_path)
    name = zp.name[:-4] if zp.name.endswith(".zip") else zp.name + ".mlpackage"
    with tempfile.TemporaryDirectory(prefix="docedge-coreml-") as tmp:
        pkg = Path(tmp) / name
        fields = convert_coreml(net, pkg, precision, preprocess)
        fields["contents"] = zip_tree(pkg, zp)
    fields["package"] = name
    fields["load"] = (f"unzip, then add {name} to the Xcode project (compiled at build time) or "
                      "MLModel.compileModel(at:) at run time")  # fmt: skip
    return fields


def convert_coreml(net: Any, out_path: Union[str, Path], precision: str = "fp16",
                   preprocess: Union[Dict[str, Any], None] = None) -> Dict[str, Any]:  # fmt: skip
    """Convert the reference network to an ``.mlpackage`` at ``out_path``; ``precision`` is
    ``fp16`` or ``int8`` (int8 weights). Returns record fields."""
    ct = require("coremltools", EXTRA, "Core ML conversion")
    import numpy as np
    import torch

    if precision not in ("fp16", "int8"):
        raise ValueError(f"Core ML precision must be fp16 or int8, got {precision!r}")
    try:
        with torch.no_grad():
            traced = torch.jit.trace(net.eval(), torch.zeros(1, 3, 128, 128))  # type: ignore[no-untyped-call]
        model = ct.convert(
            traced,
            inputs=[ct.TensorType(name="img", shape=(1, 3, 128, 128), dtype=np.float32)],
            outputs=[ct.TensorType(name="feats", dtype=np.float32)],
            convert_to="mlprogram",
            minimum_deployment_target=getattr(ct.target, MINIMUM_TARGET),
            compute_precision=ct.precision.FLOAT16,
        )
        converter: Dict[str, Any] = {
            "name": "coremltools.convert",
            "convert_to": "mlprogram",
            "minimum_deployment_target": MINIMUM_TARGET,
            "compute_precision": "FLOAT16",
        }
        if precision == "int8":
            from coremltools.optimize.coreml import (
                OpLinearQuantizerConfig,
                OptimizationConfig,
                linear_quantize_weights,
            )

            cfg = OptimizationConfig(global_config=OpLinearQuantizerConfig(
                mode="linear_symmetric", dtype="int8", granularity="per_channel"))  # fmt: skip
            model = linear_quantize_weights(model, cfg)
            converter["weights"] = "int8 linear_symmetric per_channel (linear_quantize_weights)"
        model.short_description = "docedge document embedding (squeeze-head lcnet050), score (cos+1)/2"
        model.input_description["img"] = (
            "float32 [1,3,128,128]: BGR planes, bilinear resize (no antialias), /255"
        )
        model.output_description["feats"] = "float32 [1,256], L2-normalized embedding"
        model.user_defined_metadata["docedge.precision"] = precision
        if preprocess:
            model.user_defined_metadata["docedge.preprocess"] = json.dumps(preprocess, sort_keys=True)
        model.save(str(out_path))
    except Exception as e:
        raise ConversionError(f"{out_path}: coremltools could not convert the reference ({e})") from None
    static = static_check(out_path)
    return {
        "input": {"name": "img", "layout": "NCHW", "shape": [1, 3, 128, 128], "batch": "fixed"},
        "output": {"name": "feats", "shape": [1, 256]},
        "normalized_output": True,
        "converter": converter,
        "load": "MLModel(contentsOf: MLModel.compileModel(at: url)) or add the .mlpackage to Xcode",
        "static_check": static,
        "producers": versions("coremltools", "torch"),
    }
