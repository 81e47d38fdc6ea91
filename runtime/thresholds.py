"""Decision thresholds from TPR@FPR tables (per precision, in the bundle manifest).

A table is ``{"rows": [{"fpr", "tpr", "threshold", "achieved_fpr", "supported"}, ...],
"auroc": float, "source": {...provenance...}}``, the layout of DocClassifier's published
table. The operating point is chosen by FPR (default 1e-2, DocClassifier's default) or by an
explicit threshold. A match needs ``score > threshold`` (strict).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Union

from .bundle import IR_ONLY_PRECISIONS, Artifact, Bundle
from .errors import ThresholdError

logger = logging.getLogger(__name__)

DEFAULT_FPR = 1e-2
#: A reduced-precision artifact whose gate cosine min to the reference reaches this may use
#: fp32's threshold table (and search fp32 galleries): the ONNX fp16 inherits fp32's table by
#: it (docedge.calibration.pipeline), the OpenVINO bf16 IR borrows it by it (docedge convert).
BORROW_TABLE_MIN_COSINE = 0.9995
PUBLISHED_MODEL_CFG = "20240326"
_DATA = Path(__file__).resolve().parent / "data"
_RELEASED_NAME = re.compile(
    r"lcnet050_cosface_f256_r128_squeeze_lbn\w*_20240326(?:_fp\d+)?(?:\.onnx)?$"
)


@dataclass(frozen=True)
class OperatingPoint:
    """The threshold in use and where it came from (``fpr``/``tpr`` None when explicit)."""

    threshold: float
    fpr: Optional[float]
    tpr: Optional[float]
    source: str

    def to_dict(self) -> Dict[str, Any]:
        return {"threshold": self.threshold, "fpr": self.fpr, "tpr": self.tpr,
                "source": self.source}  # fmt: skip


def load_table(path: Union[str, Path]) -> Dict[str, Any]:
    """Read and validate a table JSON file."""
    p = Path(path)
    try:
        table = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ThresholdError(f"{p}: cannot read threshold table ({e})") from None
    validate_table(table, str(p))
    result: Dict[str, Any] = table
    return result


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(float(x))


def validate_table(table: Any, source: str = "<table>") -> None:
    """Raise :class:`ThresholdError` unless ``table`` is a well-formed TPR@FPR table: a
    non-empty ``rows`` list of ``{"fpr" in (0, 1], "tpr" in [0, 1] or null, "threshold" in
    [0, 1] (null allowed when ``"supported": false``), "achieved_fpr", "supported"}``, an
    optional ``auroc`` in [0, 1] and an optional ``source`` object."""
    if not isinstance(table, dict) or not isinstance(table.get("rows"), list) or not table["rows"]:
        raise ThresholdError(f"{source}: a threshold table needs a non-empty 'rows' list")
    seen = set()
    for row in table["rows"]:
        if not isinstance(row, dict) or not _is_number(row.get("fpr")):
            raise ThresholdError(f"{source}: malformed row {row!r} (needs a numeric 'fpr')")
        fpr = float(row["fpr"])
        if not 0.0 < fpr <= 1.0:
            raise ThresholdError(f"{source}: row {row!r}: fpr must be in (0, 1]")
        if fpr in seen:
            raise ThresholdError(f"{source}: two rows for FPR {fpr:g}")
        seen.add(fpr)
        tpr = row.get("tpr")
        if tpr is not None and (not _is_number(tpr) or not 0.0 <= float(tpr) <= 1.0):
            raise ThresholdError(f"{source}: row {row!r}: tpr must be in [0, 1] or null")
        if not isinstance(row.get("supported", True), bool):
            raise ThresholdError(f"{source}: row {row!r}: 'supported' must be true or false")
        if row.get("supported", True):
            t: Any = row.get("threshold")
            if not _is_number(t) or not 0.0 <= float(t) <= 1.0:
                raise ThresholdError(f"{source}: row {row!r} has no threshold in [0, 1] "
                                     "(thresholds are in the (cos+1)/2 score space)")  # fmt: skip
    auroc = table.get("auroc")
    if auroc is not None and (not _is_number(auroc) or not 0.0 <= float(auroc) <= 1.0):
        raise ThresholdError(f"{source}: auroc must be in [0, 1] or absent")
    if "source" in table and not isinstance(table["source"], dict):
        raise ThresholdError(f"{source}: 'source' (provenance) must be an object")


def published_table() -> Dict[str, Any]:
    """DocClassifier's published fp32 table of model_cfg 20240326 (shipped with docedge)."""
    table: Dict[str, Any] = json.loads((_DATA / "published_20240326.json").read_text("utf-8"))
    return table


def published_table_for(model_info: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The published fp32 table when ``model_info`` (a manifest ``model`` section) describes
    DocClassifier's released model_cfg 20240326, else None.

    Recognized by ``model_cfg == "20240326"`` or by the released file name
    (``lcnet050_cosface_f256_r128_squeeze_lbn_imagenet_finetune_20240326_fp32.onnx``) in
    ``source.file`` or ``name``. The table is for the fp32 artifact only.
    """
    how = None
    if str(model_info.get("model_cfg") or "") == PUBLISHED_MODEL_CFG:
        how = "model_cfg"
    else:
        src = model_info.get("source")
        names = [str((src or {}).get("file") or "") if isinstance(src, dict) else "",
                 str(model_info.get("name") or "")]  # fmt: skip
        if any(_RELEASED_NAME.search(n) for n in names):
            how = "released file name"
    if how is None:
        return None
    table = published_table()
    table["source"] = dict(table.get("source") or {}, recognized_by=how)
    return table


def _same_fpr(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b))


def operating_point(
    table: Optional[Dict[str, Any]],
    fpr: Optional[float] = DEFAULT_FPR,
    threshold: Optional[float] = None,
    where: str = "bundle",
) -> OperatingPoint:
    """Pick the threshold: an explicit ``threshold`` wins; else the table row for ``fpr``
    (default 1e-2). Raises :class:`ThresholdError` when there is no table, no row for that
    FPR, or the row is unsupported; the message lists the rows that are available."""
    if threshold is not None:
        if not _is_number(threshold) or not 0.0 <= float(threshold) <= 1.0:
            raise ThresholdError(f"threshold {threshold} outside the score space [0, 1] "
                                 "(score = (cos+1)/2)")  # fmt: skip
        return OperatingPoint(float(threshold), None, None, "explicit")
    if table is None:
        raise ThresholdError(
            f"{where} has no threshold table for this precision: give an explicit threshold "
            "(threshold=T, --threshold T), attach a table (docedge.runtime.thresholds."
            "attach_table) or calibrate one (docedge calibrate thresholds)"
        )
    fpr = DEFAULT_FPR if fpr is None else float(fpr)
    for row in table.get("rows", []):
        if _same_fpr(float(row["fpr"]), fpr):
            if not row.get("supported", True) or row.get("threshold") is None:
                raise ThresholdError(
                    f"{where}: the table cannot support FPR {fpr:g} (too few impostor pairs "
                    f"when it was calibrated); available: {available_rows(table)}"
                )
            tpr = row.get("tpr")
            return OperatingPoint(float(row["threshold"]), fpr,
                                  None if tpr is None else float(tpr), "table")  # fmt: skip
    raise ThresholdError(f"{where}: no table row for FPR {fpr:g}; available: "
                         f"{available_rows(table)}")  # fmt: skip


def available_rows(table: Dict[str, Any]) -> str:
    """``"1e-05 (threshold 0.705, TPR 0.856), ..."`` for the supported rows of a table."""
    out = []
    for r in table.get("rows", []):
        if r.get("supported", True) and r.get("threshold") is not None:
            tpr = f", TPR {r['tpr']:g}" if r.get("tpr") is not None else ""
            out.append(f"FPR {r['fpr']:g} (threshold {r['threshold']:g}{tpr})")
    return ", ".join(out) or "none"


def table_key(artifact: Artifact) -> str:
    """Where an artifact's own table lives in ``manifest["thresholds"]``: the precision for a
    main ONNX artifact (``fp32``, ``fp16``, ``int8``), ``<precision>/<format>`` for any other
    (``int8/openvino``: the NNCF INT8 IR is another network than ``model_int8.onnx``, and
    scores move with INT8, so it never uses that one's table)."""
    if artifact.format == "onnx" and not artifact.variant:
        return artifact.precision
    return f"{artifact.precision}/{artifact.format}"


def borrows_fp32_table(artifact: Artifact) -> bool:
    """True when the artifact's record states that it borrows fp32's table and its gate passed
    (``docedge convert`` writes that for a bf16 IR only when its gate cosine min reached 0.9995
    to the reference, the rule the ONNX fp16 inherits fp32's table by; below it the record says
    it has none of its own, and the IR is then treated as an fp16 ONNX without a table)."""
    rec = artifact.record
    return (str(rec.get("threshold_table", "")).startswith("borrows fp32")
            and (rec.get("verification") or {}).get("passed") is True)  # fmt: skip


def bundle_operating_point(
    bundle: Bundle,
    precision: str,
    fpr: Optional[float] = DEFAULT_FPR,
    threshold: Optional[float] = None,
    artifact: Optional[Artifact] = None,
) -> OperatingPoint:
    """Operating point for ``precision`` of ``bundle`` (its own table, never another's).

    ``artifact``: the artifact that embeds (default: the ONNX artifact of ``precision``). An
    OpenVINO IR uses its own table (:func:`table_key`); without one, a record that borrows
    fp32's table (bf16) uses fp32's, and any other (the NNCF INT8) is refused with what to run.
    """
    if artifact is None and precision in IR_ONLY_PRECISIONS:
        artifact = bundle.ir_artifact(precision)
    if threshold is not None or artifact is None or table_key(artifact) == artifact.precision:
        return operating_point(bundle.thresholds(precision), fpr, threshold,
                               where=f"{bundle.path} ({precision})")  # fmt: skip
    key = table_key(artifact)
    where = f"{bundle.path} ({artifact.file})"
    own = bundle.thresholds(key)
    if own is not None:
        return operating_point(own, fpr, None, where=where)
    if borrows_fp32_table(artifact):
        op = operating_point(bundle.thresholds("fp32"), fpr, None, where=f"{where}, fp32's table")
        return OperatingPoint(op.threshold, op.fpr, op.tpr,
                              f"table (fp32's, borrowed as {artifact.file}'s record states)")
    why = (f"its record does not borrow fp32's: {str(artifact.record.get('threshold_table', ''))[:80]}"
           if artifact.precision in IR_ONLY_PRECISIONS else
           f"its scores are not the ONNX {artifact.precision}'s, so no other table applies")
    raise ThresholdError(
        f"{where} has no threshold table of its own ({artifact.precision} on {artifact.format}: "
        f"{why}): give an "
        f"explicit threshold (--threshold T, threshold=T) or measure its table: docedge calibrate "
        f"thresholds {bundle.path} --images DIR --precision {artifact.precision} --backend "
        f"{artifact.format}"
    )


def commit_tables(bundle_dir: Union[str, Path], tables: Dict[str, Dict[str, Any]],
                  replace: bool = False) -> None:  # fmt: skip
    """Record ``{precision: table}`` in the bundle in one atomic manifest commit.

    A precision that already has a table keeps it unless ``replace``: a table measured on a
    large set must not be swapped silently for one from a small folder. A replaced table's
    provenance stays in the new one (``source.replaces``).
    """
    from .bundle_commit import BundleTransaction

    for precision, table in tables.items():
        validate_table(table, f"{bundle_dir} ({precision})")
    with BundleTransaction(bundle_dir) as tx:
        have = tx.manifest.get("thresholds") or {}
        listed = {a.get("precision") if a.get("format") == "onnx" and not a.get("variant")
                  else f"{a.get('precision')}/{a.get('format')}"
                  for a in tx.manifest.get("artifacts", [])}  # fmt: skip
        for precision, table in tables.items():
            old = have.get(precision)
            if old and not replace:
                src = old.get("source") or {}
                what = src.get("origin") or src.get("attached_from") or "unknown origin"
                pairs = src.get("impostor_pairs")
                raise ThresholdError(
                    f"{bundle_dir}: already has a {precision} table ({what}"
                    + (f", {pairs:,} impostor pairs" if isinstance(pairs, int) else "")
                    + "); replacing it needs --replace (replace=True)"
                )
            if old:
                table = dict(table, source=dict(table.get("source") or {},
                                                replaces=old.get("source") or {}))  # fmt: skip
            if precision not in listed:
                logger.warning("%s: no artifact for table %s yet; table attached anyway",
                               bundle_dir, precision)  # fmt: skip
            have[precision] = table
        tx.manifest["thresholds"] = have


def attach_table(bundle_dir: Union[str, Path], precision: str,
                 table: Union[str, Path, Dict[str, Any]],
                 replace: bool = False) -> Dict[str, Any]:  # fmt: skip
    """Record a TPR@FPR table (a JSON file path or a dict) as the bundle's table for
    ``precision``; the manifest is rewritten atomically (an existing table is replaced only
    with ``replace``). Returns the table as written.

    A table that names another ``precision`` is refused. Provenance is kept: the table's
    ``source`` plus ``attached_from`` (the file) and ``attached_at``."""
    if isinstance(table, (str, Path)):
        data = load_table(table)
        origin = str(Path(table).resolve())
    else:
        validate_table(table)
        data = json.loads(json.dumps(table))
        origin = "python object"
    named = data.get("precision")
    if named is not None and named != precision:
        raise ThresholdError(f"the table is for precision {named!r}, not {precision!r}; a "
                             "precision must use its own table")  # fmt: skip
    data["precision"] = precision
    data["source"] = dict(data.get("source") or {}, attached_from=origin,
                          attached_at=_dt.datetime.now(_dt.timezone.utc)
                          .replace(microsecond=0).isoformat())  # fmt: skip
    commit_tables(bundle_dir, {precision: data}, replace=replace)
    logger.info("%s: threshold table attached for %s (%d rows)", bundle_dir, precision,
                len(data["rows"]))  # fmt: skip
    return data
