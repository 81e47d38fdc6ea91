"""The manifest skeleton of a new bundle and the compact copy stored in each ONNX file.

Torch-free: used by export, import, conversion and calibration alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

from docedge.runtime import __version__ as DOCEDGE_VERSION
from docedge.runtime.bundle import INPUT_NAME, OUTPUT_NAME, SCHEMA_NAME, SCHEMA_VERSION, SCORE_SPACE
from docedge.runtime.errors import BundleError
from docedge.runtime.preprocess import DEFAULT_SPEC

from .provenance import utc_now

#: Embedding size, input side and name of the squeeze-head lcnet050 (:mod:`.model` uses these).
EMBED_DIM = 256
INPUT_SIZE = 128
ARCHITECTURE = "lcnet050_squeeze_lbn_f256_r128"
FP32_FILE = "model_fp32.onnx"
#: Generated check images every fp32/fp16 gate runs on.
CHECK_IMAGES = 36


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
            "input": {"name": INPUT_NAME, "shape": ["N", 3, INPUT_SIZE, INPUT_SIZE],
                      "dtype": "float32"},
            "output": {"name": OUTPUT_NAME, "shape": ["N", EMBED_DIM], "dtype": "float32",
                       "l2_normalized": True},
        },
        "score": {"space": SCORE_SPACE, "match": "score > threshold", "best_match_wins": True},
        "artifacts": [],
        "thresholds": {},
    }


def onnx_metadata(manifest: Dict[str, Any], precision: str) -> Dict[str, Any]:
    """The compact metadata stored in each ONNX file (a lone file is self-describing)."""
    m = manifest["model"]
    return {
        "schema_version": manifest["schema_version"],
        "model": {k: m.get(k) for k in ("name", "model_cfg", "architecture")},
        "source_sha256": (m.get("source") or {}).get("sha256"),
        "precision": precision,
        "preprocess": manifest["preprocess"],
        "io": manifest["io"],
        "score_space": SCORE_SPACE,
        "docedge_version": DOCEDGE_VERSION,
    }


def prepare_bundle_dir(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty directory unless it is a bundle and ``overwrite`` is set.

    An overwritten bundle is replaced by one transaction: until its commit the old bundle
    stays complete and loadable; after it, its files are deleted.
    """
    if out.exists() and not out.is_dir():
        raise BundleError(f"{out}: exists and is not a directory")
    if out.exists() and any(p for p in out.iterdir() if not p.name.startswith(".")):
        if not overwrite:
            raise BundleError(f"{out}: exists and is not empty (use --overwrite to replace it)")
        if not (out / "manifest.json").is_file():
            raise BundleError(f"{out}: not a docedge bundle; refusing to overwrite its contents")
