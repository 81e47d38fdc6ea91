"""Create model bundles: export the reference to ONNX, verify it, write the manifest.

``export_bundle`` is what ``docedge export`` runs; ``import_onnx`` wraps a released fp32
ONNX file. Reduced-precision artifacts are added by :mod:`docedge.export.fp16` and
:mod:`docedge.calibration.int8` onto a bundle made here.
"""

from __future__ import annotations

import datetime as _dt
import logging
import platform
import shutil
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import onnx
import torch

from docedge.runtime import __version__ as DOCEDGE_VERSION
from docedge.runtime.bundle import (
    INPUT_NAME,
    OUTPUT_NAME,
    SCHEMA_NAME,
    SCHEMA_VERSION,
    SCORE_SPACE,
    Bundle,
    artifact_record,
    load_bundle,
    upsert_artifact,
    write_manifest,
)
from docedge.runtime.errors import BundleError
from docedge.runtime.hashing import sha256_file
from docedge.runtime.preprocess import DEFAULT_SPEC

from .check_images import check_batch
from .interface import check_interface
from .model import ARCHITECTURE, EMBED_DIM, INPUT_SIZE
from .onnx_export import DEFAULT_OPSET, export_onnx, get_metadata, save_onnx, set_metadata
from .reference import ReferenceModel, load_reference, model_cfg_from_name
from .verify import Agreement, agreement, mean_pairwise_cosine

logger = logging.getLogger(__name__)

FP32_FILE = "model_fp32.onnx"
#: fp32 export gate (ONNX Runtime vs PyTorch on the check images).
FP32_MIN_COSINE = 0.99999
FP32_MAX_ABS_DIFF = 1e-5
#: Collapse guard: embeddings of different images must differ before parity means anything.
MAX_MEAN_PAIRWISE_COSINE = 0.5
CHECK_IMAGES = 36


class GateError(BundleError):
    """An artifact failed its accuracy gate against the PyTorch reference."""


def producer_versions() -> Dict[str, str]:
    """Versions of the libraries that produce artifacts (recorded as provenance)."""
    import onnxruntime

    versions = {
        "docedge": DOCEDGE_VERSION,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
    }
    try:
        import timm

        versions["timm"] = timm.__version__
    except ImportError:  # pragma: no cover - timm is required by the model
        pass
    try:
        import onnxsim

        versions["onnxsim"] = str(onnxsim.__version__)
    except (ImportError, AttributeError):
        pass
    return versions


def utc_now() -> str:
    return (
        _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    )


def base_manifest(model_info: Dict[str, Any]) -> Dict[str, Any]:
    """The manifest skeleton: identity, pre-processing, I/O, score space; no artifacts yet."""
    return {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "docedge_version": DOCEDGE_VERSION,
        "created": utc_now(),
        "model": model_info,
        "preprocess": DEFAULT_SPEC.to_dict(),
        "io": {
            "input": {
                "name": INPUT_NAME,
                "shape": ["N", 3, INPUT_SIZE, INPUT_SIZE],
                "dtype": "float32",
            },
            "output": {
                "name": OUTPUT_NAME,
                "shape": ["N", EMBED_DIM],
                "dtype": "float32",
                "l2_normalized": True,
            },
        },
        "score": {"space": SCORE_SPACE, "match": "score > threshold", "best_match_wins": True},
        "artifacts": [],
        "thresholds": {},
    }


def onnx_metadata(manifest: Dict[str, Any], precision: str) -> Dict[str, Any]:
    """The compact metadata stored in each ONNX file (a lone file is self-describing)."""
    m = manifest["model"]
    return {
        "schema_version": str(manifest["schema_version"]),
        "model": {k: m.get(k) for k in ("name", "model_cfg", "architecture")},
        "source_sha256": m.get("source", {}).get("sha256"),
        "precision": precision,
        "preprocess": manifest["preprocess"],
        "io": manifest["io"],
        "score_space": SCORE_SPACE,
        "docedge_version": DOCEDGE_VERSION,
    }


def ort_embed(onnx_path: Path, x: np.ndarray) -> np.ndarray:
    """Run an ONNX file on pre-processed float32 ``(N, 3, 128, 128)`` with ONNX Runtime CPU."""
    from docedge.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(onnx_path, intra_op_threads=2)
    return backend.run(x)


def torch_embed(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """Reference embeddings, float32 ``(N, 256)``."""
    with torch.no_grad():
        out: np.ndarray = net.eval()(torch.from_numpy(np.ascontiguousarray(x))).numpy()
    return out


def compare_with_reference(bundle_dir: Path, onnx_file: str, x: np.ndarray,
                           reference: Optional[ReferenceModel]) -> Tuple[Agreement, str]:  # fmt: skip
    """Agreement of an artifact with the PyTorch reference on ``x`` (pre-processed batch),
    or with the bundle's fp32 ONNX when there is no reference; and what it was compared to."""
    if reference is not None:
        ref, against = torch_embed(reference.net, x), "pytorch-reference"
    else:
        ref, against = ort_embed(bundle_dir / FP32_FILE, x), "fp32-onnx (no PyTorch reference)"
    return agreement(ref, ort_embed(bundle_dir / onnx_file, x)), against


def _thresholds_for(ref: ReferenceModel, model_info: Dict[str, Any]) -> Dict[str, Any]:
    """Threshold tables known for this model: the demo card's or the published one."""
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
    varied sizes; the export fails (:class:`GateError`) if the cosine similarity falls below
    0.99999 or the max absolute difference exceeds 1e-5, and refuses a collapsed model.
    """
    out = Path(out_dir)
    _prepare_dir(out, overwrite)
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
    onnx_path = out / FP32_FILE
    save_onnx(model, onnx_path)

    x = check_batch(CHECK_IMAGES)
    ref_emb = torch_embed(ref.net, x)
    diversity = mean_pairwise_cosine(ref_emb)
    if not diversity <= MAX_MEAN_PAIRWISE_COSINE:  # also catches NaN
        raise GateError(
            f"{onnx_path}: the reference maps different images to nearly the same embedding "
            f"(mean pairwise cosine {diversity:.3f} > {MAX_MEAN_PAIRWISE_COSINE}); parity checks "
            "would be meaningless (BatchNorm statistics never estimated?)"
        )
    agree = agreement(ref_emb, ort_embed(onnx_path, x))
    passed = agree.cos_min >= FP32_MIN_COSINE and agree.max_abs_diff <= FP32_MAX_ABS_DIFF
    verification = {
        "against": "pytorch-reference",
        "images": f"{CHECK_IMAGES} generated PNG/JPEG check images of varied sizes, "
        "runtime pre-processing",
        "reference_mean_pairwise_cosine": diversity,
        "gate": {"cos_min": FP32_MIN_COSINE, "max_abs_diff": FP32_MAX_ABS_DIFF},
        "passed": passed,
        **agree.to_dict(),
    }
    if not passed:
        raise GateError(
            f"{onnx_path}: fp32 export gate failed: cosine min {agree.cos_min:.7f} "
            f"(need >= {FP32_MIN_COSINE}), max abs diff {agree.max_abs_diff:.2e} "
            f"(need <= {FP32_MAX_ABS_DIFF})"
        )
    record = artifact_record(
        out,
        FP32_FILE,
        "onnx",
        "fp32",
        opset=opset,
        producers=producer_versions(),
        verification=verification,
        created=utc_now(),
    )
    upsert_artifact(manifest, record)
    manifest["thresholds"] = _thresholds_for(ref, model_info)
    write_manifest(out, manifest)
    logger.info("fp32 bundle written to %s (cos min %.7f)", out, agree.cos_min)
    return load_bundle(out)


def import_onnx(
    onnx_file: Union[str, Path],
    out_dir: Union[str, Path],
    overwrite: bool = False,
    name: Optional[str] = None,
    model_cfg: Optional[str] = None,
) -> Bundle:
    """Wrap an existing fp32 ONNX file of the released interface into a bundle.

    The interface is validated first (a file with another interface is refused, saying what
    differs); the model is then copied with docedge metadata added and its batch axes named.
    """
    src = Path(onnx_file)
    if not src.is_file():
        raise BundleError(f"{src}: ONNX file not found")
    try:
        model = onnx.load(str(src))
    except Exception as e:  # onnx raises DecodeError / protobuf errors
        raise BundleError(f"{src}: not a readable ONNX model ({e})") from None
    check_interface(model, str(src))
    onnx.checker.check_model(model)
    out = Path(out_dir)
    _prepare_dir(out, overwrite)
    from .onnx_export import fix_batch_axis

    fix_batch_axis(model)
    cfg = model_cfg or model_cfg_from_name(src.name) or get_metadata(model).get("model_cfg")
    model_info = {
        "name": name or src.stem,
        "model_cfg": cfg,
        "architecture": ARCHITECTURE,
        "embedding_dim": EMBED_DIM,
        "source": {"kind": "onnx", "file": src.name, "sha256": sha256_file(src)},
    }
    manifest = base_manifest(model_info)
    set_metadata(model, onnx_metadata(manifest, "fp32"))
    save_onnx(model, out / FP32_FILE)
    x = check_batch(8)
    emb = ort_embed(out / FP32_FILE, x)
    norms = np.linalg.norm(emb, axis=1)
    record = artifact_record(
        out,
        FP32_FILE,
        "onnx",
        "fp32",
        opset=max(
            (o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=None
        ),
        producers=producer_versions(),
        imported_from=src.name,
        created=utc_now(),
        verification={
            "against": "none (imported file; no PyTorch reference)",
            "output_norm_min": float(norms.min()),
            "output_norm_max": float(norms.max()),
        },
    )
    upsert_artifact(manifest, record)
    from docedge.runtime.thresholds import published_table_for

    published = published_table_for(model_info)
    manifest["thresholds"] = {"fp32": published} if published else {}
    write_manifest(out, manifest)
    return load_bundle(out)


def _prepare_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise BundleError(f"{out}: exists and is not empty (use --overwrite to replace it)")
        if not (out / "manifest.json").is_file():
            raise BundleError(f"{out}: not a docedge bundle; refusing to overwrite its contents")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
