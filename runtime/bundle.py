"""The model bundle: a directory with ``manifest.json`` and the artifacts it lists.

Loading verifies the schema version and every artifact's size and SHA-256; anything tampered,
truncated, missing or of an unknown schema is refused with :class:`BundleError` naming the file.
The format is documented in ``docs/bundle-format.md``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from .atomic import atomic_write_bytes
from .errors import BundleError
from .hashing import sha256_bytes, sha256_file
from .preprocess import PreprocessSpec

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
SCHEMA_NAME = "docedge.bundle"
SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)
PRECISIONS = ("fp32", "fp16", "int8")
INPUT_NAME = "img"
OUTPUT_NAME = "feats"
SCORE_SPACE = "(cos+1)/2"

#: Keys copied, in compact form, into each ONNX file's ``metadata_props`` (prefix ``docedge.``).
ONNX_METADATA_PREFIX = "docedge."


@dataclass(frozen=True)
class Artifact:
    """One file of a bundle, as listed in the manifest."""

    file: str
    format: str
    precision: str
    sha256: str
    size: int
    record: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def variant(self) -> Optional[str]:
        """``None`` for a main artifact; a name (``b1-unnormalized``, ``int8-dynamic``, ...) for
        a variant of the same format and precision."""
        v = self.record.get("variant")
        return str(v) if v else None

    @classmethod
    def from_record(cls, rec: Dict[str, Any]) -> Artifact:
        try:
            return cls(
                file=str(rec["file"]),
                format=str(rec["format"]),
                precision=str(rec["precision"]),
                sha256=str(rec["sha256"]),
                size=int(rec["size"]),
                record=rec,
            )
        except (KeyError, TypeError, ValueError) as e:
            raise BundleError(
                f"{MANIFEST_NAME}: artifact record {rec!r} is malformed ({e})"
            ) from None


class Bundle:
    """A loaded (and by default verified) model bundle.

    ``manifest`` is the parsed ``manifest.json``; ``path`` the bundle directory.
    """

    def __init__(self, path: Path, manifest: Dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest
        self.artifacts: List[Artifact] = [
            Artifact.from_record(r) for r in manifest.get("artifacts", [])
        ]

    # --- identity -------------------------------------------------------------------------
    @property
    def model(self) -> Dict[str, Any]:
        m: Dict[str, Any] = self.manifest.get("model", {})
        return m

    @property
    def preprocess(self) -> PreprocessSpec:
        return PreprocessSpec.from_dict(self.manifest.get("preprocess", {}))

    @property
    def input_name(self) -> str:
        return str(self.manifest.get("io", {}).get("input", {}).get("name", INPUT_NAME))

    @property
    def output_name(self) -> str:
        return str(self.manifest.get("io", {}).get("output", {}).get("name", OUTPUT_NAME))

    @property
    def embedding_dim(self) -> int:
        shape = self.manifest.get("io", {}).get("output", {}).get("shape", ["N", 256])
        return int(shape[-1])

    @property
    def precisions(self) -> List[str]:
        """Precisions of the main ONNX artifacts (variants such as fixed-shape copies excluded)."""
        return [a.precision for a in self.artifacts if a.format == "onnx" and not a.variant]

    def artifact(self, precision: str = "fp32", format: str = "onnx", variant: Optional[str] = None
                 ) -> Artifact:  # fmt: skip
        """The artifact of that precision, format and variant (default: the main one, no
        variant); :class:`BundleError` if absent."""
        for a in self.artifacts:
            if a.precision == precision and a.format == format and a.variant == variant:
                return a
        have = ", ".join(f"{a.format}/{a.precision}" for a in self.artifacts) or "none"
        raise BundleError(
            f"{self.path}: no {format} artifact of precision {precision!r} (bundle has: {have})"
        )

    def artifact_path(self, precision: str = "fp32", format: str = "onnx") -> Path:
        return self.path / self.artifact(precision, format).file

    def thresholds(self, precision: str) -> Optional[Dict[str, Any]]:
        """The TPR@FPR table recorded for ``precision``, or None."""
        tables = self.manifest.get("thresholds") or {}
        t = tables.get(precision)
        return dict(t) if t else None

    def fingerprint(self, precision: str = "fp32") -> Dict[str, str]:
        """What a gallery records to prove its embeddings came from this model.

        Keys: ``model_sha256`` (the source checkpoint/ONNX hash), ``artifact_sha256`` (the
        artifact of that precision), ``precision``, ``preprocess`` (canonical JSON).
        """
        art = self.artifact(precision, "onnx")
        return {
            "model_sha256": str(self.model.get("source", {}).get("sha256", "")),
            "artifact_sha256": art.sha256,
            "precision": precision,
            "preprocess": json.dumps(self.preprocess.to_dict(), sort_keys=True),
        }

    # --- verification ---------------------------------------------------------------------
    def verify(self) -> None:
        """Check every listed artifact exists with the recorded size and SHA-256.

        Multi-file artifacts (a ``files`` list: ncnn ``.param`` + ``.bin``, a Core ML
        ``.mlpackage`` directory, the test vectors) have every listed file checked; a directory
        artifact must hold exactly its listed files.
        """
        for a in self.artifacts:
            p = self.path / a.file
            if os.path.basename(a.file) != a.file:
                raise BundleError(f"{p}: artifact names must be plain file names in the bundle")
            if "files" in a.record:
                _verify_files(self.path, a)
                if p.is_dir():
                    continue
            if not p.is_file():
                raise BundleError(f"{p}: listed in {MANIFEST_NAME} but missing")
            size = p.stat().st_size
            if size != a.size:
                raise BundleError(
                    f"{p}: size {size} bytes, manifest says {a.size} (truncated or replaced)"
                )
            digest = sha256_file(p)
            if digest != a.sha256:
                raise BundleError(
                    f"{p}: sha256 {digest[:16]}... does not match the manifest's "
                    f"{a.sha256[:16]}... (file modified after the bundle was made)"
                )

    def __repr__(self) -> str:
        return f"Bundle({str(self.path)!r}, precisions={self.precisions})"


def _verify_files(root: Path, a: Artifact) -> None:
    """Check each entry of a multi-file artifact's ``files`` list (size, SHA-256, containment)."""
    entries = a.record.get("files")
    if not isinstance(entries, list) or not entries:
        raise BundleError(f"{root / a.file}: malformed 'files' list in {MANIFEST_NAME}")
    is_dir = (root / a.file).is_dir()
    listed = set()
    for e in entries:
        rel = str(e.get("path", "")) if isinstance(e, dict) else ""
        parts = rel.split("/")
        if not rel or rel.startswith("/") or any(x in ("", ".", "..") for x in parts):
            raise BundleError(f"{root / a.file}: bad file path {rel!r} in {MANIFEST_NAME}")
        if is_dir and parts[0] != a.file:
            raise BundleError(f"{root / rel}: listed for {a.file} but outside its directory")
        p = root / rel
        if p.is_symlink() or not p.is_file():
            raise BundleError(f"{p}: listed in {MANIFEST_NAME} (part of {a.file}) but missing")
        if p.stat().st_size != int(e.get("size", -1)):
            raise BundleError(f"{p}: size {p.stat().st_size} bytes, manifest says {e.get('size')} "
                              "(truncated or replaced)")  # fmt: skip
        digest = sha256_file(p)
        if digest != e.get("sha256"):
            raise BundleError(f"{p}: sha256 {digest[:16]}... does not match the manifest's "
                              f"{str(e.get('sha256'))[:16]}... (file modified after the bundle was made)")  # fmt: skip
        listed.add(rel)
    if is_dir:
        present = {q.relative_to(root).as_posix() for q in (root / a.file).rglob("*")
                   if q.is_file() or q.is_symlink()}  # fmt: skip
        extra = sorted(present - listed)
        if extra:
            raise BundleError(f"{root / extra[0]}: not listed in {MANIFEST_NAME} for {a.file} "
                              f"({len(extra)} unlisted file(s) in the artifact directory)")  # fmt: skip
        lines = "".join(f"{e['sha256']}  {e['path']}\n" for e in sorted(entries, key=lambda e: e["path"]))
        if sha256_bytes(lines.encode("utf-8")) != a.sha256:
            raise BundleError(f"{root / a.file}: the file list's digest does not match the manifest's sha256")


def read_manifest(path: Union[str, Path]) -> Dict[str, Any]:
    """Parse and schema-check ``manifest.json`` of a bundle directory (no checksum checks)."""
    root = Path(path)
    mpath = root / MANIFEST_NAME
    if not root.is_dir():
        raise BundleError(f"{root}: not a bundle directory (does not exist or is a file)")
    if not mpath.is_file():
        raise BundleError(f"{mpath}: missing; {root} is not a docedge bundle")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{mpath}: not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA_NAME:
        raise BundleError(f"{mpath}: not a docedge bundle manifest (schema != {SCHEMA_NAME!r})")
    version = manifest.get("schema_version")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise BundleError(
            f"{mpath}: unknown schema_version {version!r}; this docedge reads "
            f"{list(SUPPORTED_SCHEMA_VERSIONS)} (upgrade docedge or re-export the bundle)"
        )
    return manifest


def load_bundle(path: Union[str, Path], verify: bool = True) -> Bundle:
    """Load a bundle directory; with ``verify`` (default) check every artifact's checksum."""
    root = Path(path)
    bundle = Bundle(root, read_manifest(root))
    if verify:
        bundle.verify()
    logger.debug("loaded bundle %s (%s)", root, ", ".join(bundle.precisions))
    return bundle


def write_manifest(path: Union[str, Path], manifest: Dict[str, Any]) -> None:
    """Atomically (re)write a bundle's ``manifest.json``."""
    data = (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode("utf-8")
    atomic_write_bytes(Path(path) / MANIFEST_NAME, data)


def artifact_record(
    bundle_dir: Union[str, Path], file: str, format: str, precision: str, **extra: Any
) -> Dict[str, Any]:
    """Manifest record for a file already written into ``bundle_dir`` (hash and size taken)."""
    p = Path(bundle_dir) / file
    rec: Dict[str, Any] = {
        "file": file,
        "format": format,
        "precision": precision,
        "sha256": sha256_file(p),
        "size": p.stat().st_size,
    }
    rec.update(extra)
    return rec


def upsert_artifact(manifest: Dict[str, Any], record: Dict[str, Any]) -> None:
    """Add ``record`` to the manifest's artifacts, replacing one with the same file name."""
    arts = [a for a in manifest.setdefault("artifacts", []) if a.get("file") != record["file"]]
    arts.append(record)
    manifest["artifacts"] = arts
