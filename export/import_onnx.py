"""Wrap a released fp32 ONNX file (DocClassifier's interface) into a bundle; no torch.

A threshold table is attached only when the user names one: a file name says nothing about
what a file contains (a renamed demo model would get DocClassifier's published table and
accept most unknown documents), and docedge has no digest of the released file to prove it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np
import onnx

from docedge.runtime.bundle import Bundle, load_bundle
from docedge.runtime.bundle_commit import BundleTransaction
from docedge.runtime.errors import BundleError
from docedge.runtime.hashing import sha256_file

from .check_images import check_batch
from .gates import ort_embed
from .interface import check_interface
from .manifest import (
    ARCHITECTURE,
    EMBED_DIM,
    FP32_FILE,
    base_manifest,
    onnx_metadata,
    prepare_bundle_dir,
)
from .onnx_io import fix_batch_axis, get_metadata, save_onnx, set_metadata
from .provenance import producer_versions, utc_now

logger = logging.getLogger(__name__)

#: ``table=`` value that attaches DocClassifier's published 20240326 table.
PUBLISHED_TABLE = "published-20240326"


def _table_for(table: Optional[Union[str, Path]], src: Path) -> Dict[str, Any]:
    """The fp32 table the user asked for (``published-20240326`` or a JSON file), or none."""
    from docedge.runtime.thresholds import load_table, published_table

    if table is None:
        return {}
    if str(table) == PUBLISHED_TABLE:
        t = published_table()
        t["source"] = dict(t.get("source") or {}, attached_by="user request (--table "
                           f"{PUBLISHED_TABLE})", proven_released_file=False,
                           note_attach=f"{src.name}: docedge cannot prove this file is the released "
                           "model; the table is only valid if it is")  # fmt: skip
        return {"fp32": t}
    t = load_table(table)
    t["source"] = dict(t.get("source") or {}, attached_by=f"user request (--table {table})")
    return {"fp32": t}


def import_onnx(
    onnx_file: Union[str, Path],
    out_dir: Union[str, Path],
    overwrite: bool = False,
    name: Optional[str] = None,
    model_cfg: Optional[str] = None,
    table: Optional[Union[str, Path]] = None,
) -> Bundle:
    """Wrap an existing fp32 ONNX file of the released interface into a bundle.

    The interface is validated first (a file with another interface is refused, saying what
    differs); the model is then copied with docedge metadata added and its batch axes named.
    ``table``: ``"published-20240326"`` or a table JSON file to attach as the fp32 table;
    without it the bundle has no table until ``docedge calibrate thresholds``.
    """
    src = Path(onnx_file)
    if not src.is_file():
        raise BundleError(f"{src}: ONNX file not found")
    try:
        model = onnx.load(str(src), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError / protobuf errors
        raise BundleError(f"{src}: not a readable ONNX model ({e})") from None
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise BundleError(f"{src}: stores weights in external data files; docedge bundles need "
                          "self-contained ONNX files")  # fmt: skip
    check_interface(model, str(src))
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise BundleError(f"{src}: not a valid ONNX model ({str(e).splitlines()[0]})") from None
    out = Path(out_dir)
    prepare_bundle_dir(out, overwrite)
    fix_batch_axis(model)
    cfg = model_cfg or get_metadata(model).get("model_cfg")
    model_info = {
        "name": name or src.stem,
        "model_cfg": cfg if isinstance(cfg, str) else None,
        "architecture": ARCHITECTURE,
        "embedding_dim": EMBED_DIM,
        "source": {"kind": "onnx", "file": src.name, "sha256": sha256_file(src)},
    }
    manifest = base_manifest(model_info)
    manifest["thresholds"] = _table_for(table, src)
    set_metadata(model, onnx_metadata(manifest, "fp32"))
    with BundleTransaction(out, create=True) as tx:
        staged = tx.stage(FP32_FILE)
        save_onnx(model, staged)
        emb = ort_embed(staged, check_batch(8))
        norms = np.linalg.norm(emb, axis=1)
        if not np.all(np.isfinite(emb)) or not np.allclose(norms, 1.0, atol=1e-3):
            raise BundleError(f"{src}: outputs are not unit-length embeddings (norms "
                              f"{norms.min():.4f}..{norms.max():.4f})")  # fmt: skip
        tx.manifest.clear()
        tx.manifest.update(manifest)
        opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
        tx.add_artifact(staged, FP32_FILE, "onnx", "fp32", opset=opset,
                        producers=producer_versions(), imported_from=src.name, created=utc_now(),
                        verification={"against": "none (imported file; no PyTorch reference)",
                                      "output_norm_min": float(norms.min()),
                                      "output_norm_max": float(norms.max())})  # fmt: skip
    return load_bundle(out)
