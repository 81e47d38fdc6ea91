"""The bundle manifest's schema, checked field by field on every load, and its content digest.

Unsupported values are refused, never ignored: a manifest that asks for RGB input, NHWC
layout, aspect keeping, a zero std or a threshold outside the score space describes a model
this runtime would run wrongly, so it is a :class:`BundleError` naming the field.

The manifest protects its own content: ``integrity.sha256`` is the SHA-256 of the canonical
form of the manifest without its ``integrity`` key (:func:`canonical_json`: UTF-8 JSON with
sorted keys, no insignificant whitespace, ``ensure_ascii``, no NaN/Infinity). A flipped bit
anywhere in the manifest (a threshold, a hash, the pre-processing) no longer matches.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any, Dict, List, Sequence

from .errors import BundleError

SCHEMA_NAME = "docedge.bundle"
SCHEMA_VERSION = 2
SUPPORTED_SCHEMA_VERSIONS = (2,)
INTEGRITY_KEY = "integrity"
INPUT_NAME = "img"
OUTPUT_NAME = "feats"
SCORE_SPACE = "(cos+1)/2"
#: Artifact formats this schema knows (mobile formats are recorded even where they cannot run).
FORMATS = ("onnx", "ort", "tflite", "coreml", "ncnn", "openvino", "trt-calibration-cache",
           "tensorrt-engine", "ort-operator-config", "ort-usability-report", "test-vectors")
MAX_ARTIFACT_BYTES = 1 << 40
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_PREPROCESS_KEYS = ("height", "width", "color_order", "interpolation", "scale", "mean", "std",
                    "layout", "keep_aspect")  # fmt: skip


def canonical_json(value: Any) -> bytes:
    """The canonical byte form used for digests: sorted keys, compact, ASCII, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")  # fmt: skip


def manifest_digest(manifest: Dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical manifest without its ``integrity`` key."""
    body = {k: v for k, v in manifest.items() if k != INTEGRITY_KEY}
    try:
        return hashlib.sha256(canonical_json(body)).hexdigest()
    except (TypeError, ValueError) as e:
        raise BundleError(f"manifest.json: cannot be put in canonical form ({e})") from None


def seal(manifest: Dict[str, Any]) -> Dict[str, Any]:
    """Return ``manifest`` with a fresh ``integrity`` record (the digest of its content)."""
    body = {k: v for k, v in manifest.items() if k != INTEGRITY_KEY}
    body[INTEGRITY_KEY] = {"sha256": manifest_digest(body), "canonical": "json-sorted-compact-ascii"}
    return body


# --- field checks ---------------------------------------------------------------------------
def _fail(where: str, field: str, problem: str) -> BundleError:
    return BundleError(f"{where}: field {field!r} {problem}")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(float(x))


def _need(obj: Any, key: str, kind: type, where: str, prefix: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise _fail(where, f"{prefix}{key}", "is missing")
    val = obj[key]
    if kind is int:
        ok = _is_int(val)
    elif kind is float:
        ok = _is_num(val)
    else:
        ok = isinstance(val, kind)
    if not ok:
        raise _fail(where, f"{prefix}{key}", f"must be {kind.__name__}, got {val!r:.80}")
    return val


def _check_preprocess(pre: Any, where: str) -> None:
    if not isinstance(pre, dict):
        raise _fail(where, "preprocess", "must be an object")
    unknown = sorted(set(pre) - set(_PREPROCESS_KEYS))
    if unknown:
        raise _fail(where, "preprocess", f"has unknown keys {unknown} (known: {list(_PREPROCESS_KEYS)})")
    for key in ("height", "width"):
        v = _need(pre, key, int, where, "preprocess.")
        if not 1 <= v <= 4096:
            raise _fail(where, f"preprocess.{key}", f"= {v} is not a usable size")
    supported = {"color_order": "BGR", "interpolation": "INTER_LINEAR", "layout": "NCHW"}
    for key, only in supported.items():
        v = _need(pre, key, str, where, "preprocess.")
        if v != only:
            raise _fail(where, f"preprocess.{key}", f"= {v!r} is not supported (this runtime does {only!r})")
    if _need(pre, "keep_aspect", bool, where, "preprocess.") is not False:
        raise _fail(where, "preprocess.keep_aspect", "= true is not supported (the model resizes straight)")
    scale = _need(pre, "scale", float, where, "preprocess.")
    if not scale > 0:
        raise _fail(where, "preprocess.scale", f"= {scale} must be > 0")
    for key in ("mean", "std"):
        v = _need(pre, key, list, where, "preprocess.")
        if len(v) != 3 or not all(_is_num(c) for c in v):
            raise _fail(where, f"preprocess.{key}", f"= {v!r:.80} must be 3 finite numbers")
        if key == "std" and not all(float(c) > 0 for c in v):
            raise _fail(where, "preprocess.std", f"= {v!r} must be > 0 (a zero std makes NaN inputs)")


def _check_shape(shape: Any, rank: int, where: str, field: str) -> List[Any]:
    if not isinstance(shape, list) or len(shape) != rank:
        raise _fail(where, field, f"must be a list of {rank} dimensions, got {shape!r:.80}")
    for d in shape:
        if not (isinstance(d, str) or (_is_int(d) and d > 0)):
            raise _fail(where, field, f"has an invalid dimension {d!r}")
    return shape


def _check_io(io: Any, pre: Dict[str, Any], where: str) -> None:
    if not isinstance(io, dict):
        raise _fail(where, "io", "must be an object")
    inp = _need(io, "input", dict, where, "io.")
    out = _need(io, "output", dict, where, "io.")
    for sect, name, rank in (("input", inp, 4), ("output", out, 2)):
        _need(name, "name", str, where, f"io.{sect}.")
        if _need(name, "dtype", str, where, f"io.{sect}.") != "float32":
            raise _fail(where, f"io.{sect}.dtype", f"= {name['dtype']!r} is not supported (float32)")
        _check_shape(name.get("shape"), rank, where, f"io.{sect}.shape")
    shape = inp["shape"]
    if shape[1] != 3 or shape[2] != pre["height"] or shape[3] != pre["width"]:
        raise _fail(where, "io.input.shape", f"= {shape} disagrees with preprocess "
                    f"(3 x {pre['height']} x {pre['width']}, NCHW)")  # fmt: skip
    if not _is_int(out["shape"][1]):
        raise _fail(where, "io.output.shape", "needs a fixed embedding size")
    if out.get("l2_normalized", True) is not True:
        raise _fail(where, "io.output.l2_normalized", "must be true (scores assume unit vectors)")


def _check_artifacts(arts: Any, where: str) -> None:
    if not isinstance(arts, list):
        raise _fail(where, "artifacts", f"must be a list, got {type(arts).__name__}")
    seen = set()
    for i, rec in enumerate(arts):
        p = f"artifacts[{i}]."
        if not isinstance(rec, dict):
            raise _fail(where, f"artifacts[{i}]", "must be an object")
        entries = [rec, *(_need(rec, "files", list, where, p) if "files" in rec else [])]
        for j, e in enumerate(entries):
            q = p if j == 0 else f"{p}files[{j - 1}]."
            name = _need(e, "file", str, where, q)
            if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
                raise _fail(where, f"{q}file", f"= {name!r} must be a plain file name in the bundle")
            if name in seen:
                raise _fail(where, f"{q}file", f"= {name!r} is listed twice")
            seen.add(name)
            if not _HEX64.match(_need(e, "sha256", str, where, q)):
                raise _fail(where, f"{q}sha256", "must be 64 lowercase hex digits")
            size = _need(e, "size", int, where, q)
            if not 0 <= size <= MAX_ARTIFACT_BYTES:
                raise _fail(where, f"{q}size", f"= {size} is out of range")
        fmt = _need(rec, "format", str, where, p)
        if fmt not in FORMATS:
            raise _fail(where, f"{p}format", f"= {fmt!r} is unknown (known: {list(FORMATS)})")
        _need(rec, "precision", str, where, p)


def _check_thresholds(tables: Any, where: str) -> None:
    from .errors import ThresholdError
    from .thresholds import validate_table

    if not isinstance(tables, dict):
        raise _fail(where, "thresholds", "must be an object of tables per precision")
    for precision, table in tables.items():
        try:
            validate_table(table, f"thresholds.{precision}")
        except ThresholdError as e:
            raise BundleError(f"{where}: {e}") from None


def validate_manifest(manifest: Any, where: str = "manifest.json",
                      versions: Sequence[int] = SUPPORTED_SCHEMA_VERSIONS) -> Dict[str, Any]:  # fmt: skip
    """Check every field of a parsed manifest and its digest; return it. :class:`BundleError`."""
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA_NAME:
        raise BundleError(f"{where}: not a docedge bundle manifest (schema != {SCHEMA_NAME!r})")
    version = manifest.get("schema_version")
    if not _is_int(version) or version not in versions:
        raise BundleError(
            f"{where}: unknown schema_version {version!r:.40}; this docedge reads {list(versions)} "
            "(upgrade docedge, or re-export the bundle with this version)"
        )
    integrity = manifest.get(INTEGRITY_KEY)
    if not isinstance(integrity, dict) or not isinstance(integrity.get("sha256"), str):
        raise _fail(where, INTEGRITY_KEY, "is missing: the manifest's content is not protected")
    actual = manifest_digest(manifest)
    if actual != integrity["sha256"]:
        raise BundleError(
            f"{where}: content digest {actual[:16]}... does not match integrity.sha256 "
            f"{integrity['sha256'][:16]:.16}... (the manifest was modified or corrupted after it "
            "was written; re-export, or restore it)"
        )
    model = _need(manifest, "model", dict, where, "")
    _need(model, "name", str, where, "model.")
    _check_preprocess(manifest.get("preprocess"), where)
    _check_io(manifest.get("io"), manifest["preprocess"], where)
    score = _need(manifest, "score", dict, where, "")
    if score.get("space") != SCORE_SPACE:
        raise _fail(where, "score.space", f"= {score.get('space')!r:.40} is not {SCORE_SPACE!r}")
    _check_artifacts(manifest.get("artifacts"), where)
    _check_thresholds(manifest.get("thresholds", {}), where)
    return manifest
