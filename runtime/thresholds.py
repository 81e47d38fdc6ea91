"""Decision thresholds from TPR@FPR tables (per precision, in the bundle manifest).

A table is ``{"rows": [{"fpr", "tpr", "threshold", "achieved_fpr", "supported"}, ...],
"auroc": float, "source": {...provenance...}}``, the layout of DocClassifier's published
table. The operating point is chosen by FPR (default 1e-2, DocClassifier's default) or by an
explicit threshold. A match needs ``score > threshold`` (strict).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Union

from .bundle import Bundle, read_manifest, write_manifest
from .errors import ThresholdError

DEFAULT_FPR = 1e-2
PUBLISHED_MODEL_CFG = "20240326"
_DATA = Path(__file__).resolve().parent / "data"
_RELEASED_NAME = re.compile(r"lcnet050_cosface_f256_r128_squeeze_lbn.*_20240326")


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


def validate_table(table: Any, source: str = "<table>") -> None:
    """Raise :class:`ThresholdError` unless ``table`` has well-formed rows."""
    if not isinstance(table, dict) or not isinstance(table.get("rows"), list) or not table["rows"]:
        raise ThresholdError(f"{source}: a threshold table needs a non-empty 'rows' list")
    for row in table["rows"]:
        if not isinstance(row, dict) or "fpr" not in row:
            raise ThresholdError(f"{source}: malformed row {row!r}")
        if row.get("supported", True):
            t = row.get("threshold")
            if not isinstance(t, (int, float)) or not 0.0 <= float(t) <= 1.0:
                raise ThresholdError(f"{source}: row {row!r} has no threshold in [0, 1]")


def published_table() -> Dict[str, Any]:
    """DocClassifier's published fp32 table of model_cfg 20240326 (shipped with docedge)."""
    table: Dict[str, Any] = json.loads((_DATA / "published_20240326.json").read_text("utf-8"))
    return table


def published_table_for(model_info: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The published table when ``model_info`` (a manifest ``model`` section) is 20240326.

    Recognized by ``model_cfg`` or by the released file name in ``source.file``.
    """
    if str(model_info.get("model_cfg") or "") == PUBLISHED_MODEL_CFG:
        return published_table()
    name = str((model_info.get("source") or {}).get("file") or "")
    return published_table() if _RELEASED_NAME.search(name) else None


def operating_point(
    table: Optional[Dict[str, Any]],
    fpr: Optional[float] = DEFAULT_FPR,
    threshold: Optional[float] = None,
    where: str = "bundle",
) -> OperatingPoint:
    """Pick the threshold: explicit ``threshold`` wins; else the table row for ``fpr``."""
    if threshold is not None:
        if not 0.0 <= threshold <= 1.0:
            raise ThresholdError(f"threshold {threshold} outside the score space [0, 1]")
        return OperatingPoint(float(threshold), None, None, "explicit")
    if table is None:
        raise ThresholdError(
            f"{where} has no threshold table for this precision: give an explicit threshold "
            "(--threshold T) or calibrate one (docedge calibrate thresholds)"
        )
    fpr = DEFAULT_FPR if fpr is None else fpr
    rows = table.get("rows", [])
    for row in rows:
        if abs(float(row["fpr"]) - fpr) <= 1e-12 * max(1.0, fpr):
            if not row.get("supported", True) or row.get("threshold") is None:
                raise ThresholdError(
                    f"{where}: the table cannot support FPR {fpr:g} (too few impostor pairs "
                    f"when it was calibrated); available: {_available(table)}"
                )
            return OperatingPoint(float(row["threshold"]), fpr, row.get("tpr"), "table")
    raise ThresholdError(f"{where}: no table row for FPR {fpr:g}; available: {_available(table)}")


def _available(table: Dict[str, Any]) -> str:
    ok = [f"{r['fpr']:g}" for r in table.get("rows", []) if r.get("supported", True)]
    return ", ".join(ok) or "none"


def bundle_operating_point(
    bundle: Bundle, precision: str, fpr: Optional[float] = DEFAULT_FPR,
    threshold: Optional[float] = None,
) -> OperatingPoint:
    """Operating point for ``precision`` of ``bundle`` (its own table, never another's)."""
    return operating_point(bundle.thresholds(precision), fpr, threshold,
                           where=f"{bundle.path} ({precision})")  # fmt: skip


def attach_table(bundle_dir: Union[str, Path], precision: str, table: Dict[str, Any]) -> None:
    """Write ``table`` as the bundle's threshold table for ``precision`` (atomic manifest)."""
    validate_table(table)
    manifest = read_manifest(bundle_dir)
    manifest.setdefault("thresholds", {})[precision] = table
    write_manifest(bundle_dir, manifest)
