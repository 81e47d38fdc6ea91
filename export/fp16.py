"""FP16 ONNX artifact via onnxconverter-common's float16 converter.

Inputs and outputs stay float32 (``keep_io_types``), so the runtime and parity code treat
every precision alike. Numerically sensitive nodes stay float32 (``op_block_list``): the
decomposed LayerNorm statistics (ReduceMean/Pow/Sqrt: x^2 overflows or loses precision in
fp16) and the final L2 normalization (ReduceL2). The kept node list is written to the manifest.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence, Union

import onnx

from docedge.runtime.bundle import load_bundle
from docedge.runtime.bundle_commit import BundleTransaction

from .check_images import check_batch
from .gates import FP16_MEAN_COSINE, FP16_MIN_COSINE, GateError, ort_embed, reference_embed
from .manifest import CHECK_IMAGES, onnx_metadata
from .onnx_io import save_onnx, set_metadata
from .provenance import producer_versions, utc_now
from .verify import agreement

if TYPE_CHECKING:  # pragma: no cover
    from .reference import ReferenceModel

logger = logging.getLogger(__name__)

FP16_FILE = "model_fp16.onnx"
#: Op types kept in float32 (measured: see docs/precision.md).
DEFAULT_KEEP_FP32_OPS = ("ReduceMean", "Pow", "Sqrt", "ReduceL2")


def convert_fp16(model: onnx.ModelProto, keep_fp32_ops: Sequence[str] = DEFAULT_KEEP_FP32_OPS
                 ) -> onnx.ModelProto:  # fmt: skip
    """FP16 copy of ``model`` with float32 I/O and ``keep_fp32_ops`` node types in float32."""
    import warnings

    from onnxconverter_common import float16

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out: onnx.ModelProto = float16.convert_float_to_float16(
            model, keep_io_types=True, op_block_list=list(keep_fp32_ops), disable_shape_infer=False
        )
    clamped = [w for w in caught if "truncated" in str(w.message)]
    if clamped:  # the converter warns once per value; say it once
        logger.info("fp16: %d float32 constant(s) outside fp16's range were clamped (to +-1e-7 "
                    "or +-65504), e.g. %s", len(clamped), clamped[0].message)  # fmt: skip
    onnx.checker.check_model(out)
    return out


def add_fp16_artifact(
    bundle_dir: Union[str, Path],
    reference: Optional[ReferenceModel] = None,
    keep_fp32_ops: Sequence[str] = DEFAULT_KEEP_FP32_OPS,
    min_cosine: float = FP16_MIN_COSINE,
    mean_cosine: float = FP16_MEAN_COSINE,
) -> Dict[str, Any]:
    """Convert the bundle's fp32 ONNX to FP16, gate it against the PyTorch reference (or the
    fp32 artifact when there is none), and record it in the manifest. Returns the record."""
    import onnxconverter_common

    root = Path(bundle_dir)
    fp32_path = load_bundle(root).artifact_path("fp32")
    model = convert_fp16(onnx.load(str(fp32_path)), keep_fp32_ops)
    x = check_batch(CHECK_IMAGES)
    ref, against = reference_embed(x, reference, fp32_path)
    with BundleTransaction(root) as tx:
        set_metadata(model, onnx_metadata(tx.manifest, "fp16"))
        staged = tx.stage(FP16_FILE)
        save_onnx(model, staged)
        agree = agreement(ref, ort_embed(staged, x))
        passed = agree.cos_min >= min_cosine and agree.cos_mean >= mean_cosine
        if not passed:
            raise GateError(f"{root / FP16_FILE}: fp16 gate failed: cosine min {agree.cos_min:.6f} "
                            f"(need >= {min_cosine}), mean {agree.cos_mean:.6f} "
                            f"(need >= {mean_cosine}); the bundle is unchanged")  # fmt: skip
        kept = [n.name or n.op_type for n in model.graph.node if n.op_type in set(keep_fp32_ops)]
        record = tx.add_artifact(
            staged, FP16_FILE, "onnx", "fp16",
            opset=max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
            converter={"name": "onnxconverter-common float16.convert_float_to_float16",
                       "keep_io_types": True, "op_block_list": list(keep_fp32_ops)},
            kept_fp32_nodes=kept,
            producers={**producer_versions(), "onnxconverter-common": onnxconverter_common.__version__},
            verification={"against": against, "images": f"{CHECK_IMAGES} generated check images",
                          "gate": {"cos_min": min_cosine, "cos_mean": mean_cosine},
                          "passed": passed, **agree.to_dict()},
            created=utc_now(),
        )  # fmt: skip
    logger.info("fp16 artifact: cos min %.6f mean %.6f", agree.cos_min, agree.cos_mean)
    return record
