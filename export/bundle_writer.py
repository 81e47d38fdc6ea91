"""Export the PyTorch reference to a verified fp32 bundle (the one torch-bound writer).

``export_bundle`` is what ``docedge export`` runs for fp32; reduced precisions and other
formats are added by :mod:`docedge.export.fp16`, :mod:`docedge.calibration.int8` and
:mod:`docedge.export.formats`, each through a :class:`BundleTransaction`. A released fp32 ONNX
file is wrapped by :mod:`docedge.export.import_onnx` (no torch).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Optional, Union

from docedge.runtime.bundle import Bundle, load_bundle
from docedge.runtime.bundle_commit import BundleTransaction

from .check_images import check_batch
from .gates import (
    FP32_MAX_ABS_DIFF,
    FP32_MIN_COSINE,
    MAX_MEAN_PAIRWISE_COSINE,
    GateError,
    ort_embed,
    torch_embed,
)
from .manifest import (
    ARCHITECTURE,
    CHECK_IMAGES,
    EMBED_DIM,
    FP32_FILE,
    base_manifest,
    onnx_metadata,
    prepare_bundle_dir,
)
from .onnx_export import DEFAULT_OPSET, export_onnx, save_onnx, set_metadata
from .provenance import producer_versions, utc_now
from .reference import ReferenceModel, load_reference
from .verify import agreement, mean_pairwise_cosine

logger = logging.getLogger(__name__)

__all__ = ["FP32_FILE", "GateError", "export_bundle", "prepare_bundle_dir"]


def _thresholds_for(ref: ReferenceModel, model_info: Dict[str, Any]) -> Dict[str, Any]:
    """Threshold tables known for this model: the demo card's, or DocClassifier's published
    table when the checkpoint is recognized as the released model."""
    card = ref.extra.get("card") or {}
    table = card.get("threshold_table")
    if table:
        return {"fp32": dict(table, source=dict(table.get("source", {}), origin="demo model card"))}
    from docedge.runtime.thresholds import published_table_for

    published = published_table_for(model_info)
    return {"fp32": published} if published else {}


def export_bundle(
    out_dir: Union[str, Path],
    checkpoint: Optional[Union[str, Path]] = None,
    random_init_seed: Optional[int] = None,
    opset: int = DEFAULT_OPSET,
    overwrite: bool = False,
    reference: Optional[ReferenceModel] = None,
) -> Bundle:
    """Export the reference model to ``out_dir`` as a verified fp32 bundle.

    The ONNX model runs under ONNX Runtime against PyTorch on 36 decoded check images of
    varied sizes; the export fails (:class:`GateError`, nothing written) if the cosine falls
    below 0.99999 or the max absolute difference exceeds 1e-5, and refuses a collapsed model.
    """
    out = Path(out_dir)
    prepare_bundle_dir(out, overwrite)
    ref = reference or load_reference(checkpoint, random_init_seed)
    model_info = {
        "name": ref.name,
        "model_cfg": ref.model_cfg,
        "architecture": ARCHITECTURE,
        "embedding_dim": EMBED_DIM,
        "source": ref.source,
    }
    manifest = base_manifest(model_info)
    model = export_onnx(ref.net, opset=opset)
    set_metadata(model, onnx_metadata(manifest, "fp32"))
    x = check_batch(CHECK_IMAGES)
    ref_emb = torch_embed(ref.net, x)
    diversity = mean_pairwise_cosine(ref_emb)
    if not diversity <= MAX_MEAN_PAIRWISE_COSINE:  # also catches NaN
        raise GateError(
            f"{out / FP32_FILE}: the reference maps different images to nearly the same embedding "
            f"(mean pairwise cosine {diversity:.3f} > {MAX_MEAN_PAIRWISE_COSINE}); parity checks "
            "would be meaningless (BatchNorm statistics never estimated?)"
        )
    with BundleTransaction(out, create=True) as tx:
        staged = tx.stage(FP32_FILE)
        save_onnx(model, staged)
        agree = agreement(ref_emb, ort_embed(staged, x))
        passed = agree.cos_min >= FP32_MIN_COSINE and agree.max_abs_diff <= FP32_MAX_ABS_DIFF
        if not passed:
            raise GateError(
                f"{out / FP32_FILE}: fp32 export gate failed: cosine min {agree.cos_min:.7f} "
                f"(need >= {FP32_MIN_COSINE}), max abs diff {agree.max_abs_diff:.2e} "
                f"(need <= {FP32_MAX_ABS_DIFF})"
            )
        verification = {
            "against": "pytorch-reference",
            "images": f"{CHECK_IMAGES} generated PNG/JPEG check images of varied sizes, "
            "runtime pre-processing",
            "reference_mean_pairwise_cosine": diversity,
            "gate": {"cos_min": FP32_MIN_COSINE, "max_abs_diff": FP32_MAX_ABS_DIFF},
            "passed": passed,
            **agree.to_dict(),
        }
        manifest["thresholds"] = _thresholds_for(ref, model_info)
        tx.manifest.clear()
        tx.manifest.update(manifest)
        tx.add_artifact(staged, FP32_FILE, "onnx", "fp32", opset=opset,
                        producers=producer_versions(), verification=verification,
                        created=utc_now())  # fmt: skip
    logger.info("fp32 bundle written to %s (cos min %.7f)", out, agree.cos_min)
    return load_bundle(out)
