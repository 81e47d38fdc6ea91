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
from .hashing import sha256_file
from .manifest_schema import (
    INPUT_NAME,
    OUTPUT_NAME,
    SCHEMA_NAME,
    SCHEMA_VERSION,
    SCORE_SPACE,
    SUPPORTED_SCHEMA_VERSIONS,
    manifest_digest,
    seal,
    validate_manifest,
)
from .preprocess import PreprocessSpec

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
PRECISIONS = ("fp32", "fp16", "int8")
#: The format of OpenVINO IR artifacts (``docedge convert --formats openvino``).
OPENVINO_FORMAT = "openvino"
#: Precisions that exist only as OpenVINO IR artifacts (no ONNX file of their own).
IR_ONLY_PRECISIONS = ("bf16",)
#: Key of an artifact record listing the artifacts whose galleries it may search (see
#: :meth:`Bundle.gallery_fingerprints`).
INTERCHANGEABLE_KEY = "embeddings_interchangeable_with"
__all__ = [
    "INPUT_NAME", "INTERCHANGEABLE_KEY", "IR_ONLY_PRECISIONS", "MANIFEST_NAME", "OPENVINO_FORMAT",
    "OUTPUT_NAME", "PRECISIONS", "SCHEMA_NAME", "SCHEMA_VERSION",
    "SCORE_SPACE", "SUPPORTED_SCHEMA_VERSIONS", "Artifact", "Bundle", "artifact_record",
    "load_bundle", "read_manifest", "upsert_artifact", "write_manifest",
]

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
        a variant of the same format and precision (recorded by ``docedge convert``)."""
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
        """The artifact of that precision, format and variant (default: the main one, without
        a variant); :class:`BundleError` if absent."""
        for a in self.artifacts:
            if a.precision == precision and a.format == format and a.variant == variant:
                return a
        have = ", ".join(f"{a.format}/{a.precision}" for a in self.artifacts) or "none"
        raise BundleError(
            f"{self.path}: no {format} artifact of precision {precision!r} (bundle has: {have})"
        )

    def artifact_path(self, precision: str = "fp32", format: str = "onnx") -> Path:
        return self.path / self.artifact(precision, format).file

    def ir_artifact(self, precision: str) -> Optional[Artifact]:
        """The main OpenVINO IR artifact of ``precision`` (``model_bf16.xml``,
        ``model_int8.xml``), or None."""
        for a in self.artifacts:
            if a.format == OPENVINO_FORMAT and a.precision == precision and not a.variant:
                return a
        return None

    def embedding_artifact(self, precision: str = "fp32", backend: str = "onnxruntime") -> Artifact:
        """The artifact whose embeddings ``backend`` makes for ``precision``: with
        ``openvino`` the bundle's OpenVINO IR of that precision when it has one (what
        :class:`~docedge.runtime.backends.openvino_backend.OpenVINOBackend` runs), else the
        ONNX artifact; every other backend runs the ONNX artifact (TensorRT builds its engine
        from it). ``auto`` decides per machine: ask the :class:`~docedge.runtime.Embedder`
        (``Embedder.artifact``). :class:`BundleError` when there is none."""
        if backend == "auto":
            raise ValueError("backend 'auto' chooses per machine: open an Embedder and use "
                             "its .artifact / .fingerprint()")  # fmt: skip
        if backend == "openvino":
            ir = self.ir_artifact(precision)
            if ir is not None:
                return ir
            if precision in IR_ONLY_PRECISIONS:
                raise BundleError(f"{self.path}: no OpenVINO {precision} artifact ({precision} is "
                                  f"gated per bundle): run `docedge convert {self.path} --formats "
                                  "openvino`")  # fmt: skip
        elif precision in IR_ONLY_PRECISIONS:
            raise BundleError(f"{self.path}: {precision} runs only on OpenVINO (the bundle's "
                              f"OpenVINO IR artifact): use backend 'openvino', not {backend!r}")
        return self.artifact(precision, "onnx")

    def thresholds(self, precision: str) -> Optional[Dict[str, Any]]:
        """The TPR@FPR table recorded under ``precision`` (a table key: ``fp32``, ...,
        ``int8/openvino``; see :func:`docedge.runtime.thresholds.table_key`), or None."""
        tables = self.manifest.get("thresholds") or {}
        t = tables.get(precision)
        return dict(t) if t else None

    def fingerprint(self, precision: str = "fp32", backend: str = "onnxruntime",
                    artifact: Optional[Artifact] = None) -> Dict[str, str]:  # fmt: skip
        """What a gallery records to prove its embeddings came from this model.

        Keys: ``model_sha256`` (the source checkpoint/ONNX hash), ``artifact_sha256`` (the
        artifact that made the embeddings: ``artifact``, default
        :meth:`embedding_artifact` of ``precision`` and ``backend``), ``precision``,
        ``preprocess`` (canonical JSON) and ``model_manifest_sha256``, the digest of the
        manifest sections that define what an embedding means (``model``, ``preprocess``,
        ``io``, ``score``): re-calibrating a threshold table does not invalidate galleries, a
        changed model description does. An artifact that is not ONNX (an OpenVINO IR) adds
        ``artifact_format`` and ``artifact_weights_sha256`` (its ``.bin``): an ONNX artifact's
        fingerprint is unchanged, so galleries made before IR artifacts existed still match.
        """
        art = artifact if artifact is not None else self.embedding_artifact(precision, backend)
        fp = {
            "model_sha256": str(self.model.get("source", {}).get("sha256", "")),
            "artifact_sha256": art.sha256,
            "precision": art.precision,
            "preprocess": json.dumps(self.preprocess.to_dict(), sort_keys=True),
            "model_manifest_sha256": manifest_digest(
                {k: self.manifest.get(k) for k in ("model", "preprocess", "io", "score")}
            ),
        }
        if art.format != "onnx":
            fp["artifact_format"] = art.format
            extra = [f for f in art.record.get("files") or [] if isinstance(f, dict)]
            if extra:
                fp["artifact_weights_sha256"] = str(extra[0].get("sha256", ""))
        return fp

    def gallery_fingerprints(self, artifact: Artifact) -> List[Dict[str, str]]:
        """The fingerprints a gallery searched with ``artifact``'s embeddings may carry: its
        own first, then those of the artifacts its record declares interchangeable
        (``embeddings_interchangeable_with``: ``[{"file", "sha256", "rule"}]``, written by
        ``docedge convert`` for the bf16 IR, which passed fp32's cosine rule); an entry whose
        file is not in the bundle with that SHA-256 (re-exported since) counts for nothing."""
        out = [self.fingerprint(artifact=artifact)]
        for e in artifact.record.get(INTERCHANGEABLE_KEY) or []:
            if not isinstance(e, dict):
                continue
            for a in self.artifacts:
                if a.file == e.get("file") and a.sha256 == e.get("sha256") and a is not artifact:
                    out.append(self.fingerprint(artifact=a))
        return out

    # --- verification ---------------------------------------------------------------------
    def verify(self) -> None:
        """Check every file an artifact loads (its main file and any listed extra ``files``)
        exists in the bundle as a regular file, not a symlink, with the recorded size and
        SHA-256."""
        for a in self.artifacts:
            entries: List[Dict[str, Any]] = [{"file": a.file, "size": a.size, "sha256": a.sha256}]
            entries += [e for e in a.record.get("files") or [] if isinstance(e, dict)]
            for e in entries:
                verify_file(self.path, str(e["file"]), int(e["size"]), str(e["sha256"]))

    def __repr__(self) -> str:
        return f"Bundle({str(self.path)!r}, precisions={self.precisions})"


def verify_file(root: Path, name: str, size: int, sha256: str) -> None:
    """One bundle file: a plain name, a regular file inside ``root`` (no symlink), size and hash."""
    p = root / name
    if os.path.basename(name) != name or name in ("", ".", ".."):
        raise BundleError(f"{p}: artifact names must be plain file names in the bundle")
    if p.is_symlink():
        raise BundleError(f"{p}: is a symbolic link; bundle files must be regular files inside it")
    if not p.is_file():
        raise BundleError(f"{p}: listed in {MANIFEST_NAME} but missing")
    actual = p.stat().st_size
    if actual != size:
        raise BundleError(f"{p}: size {actual} bytes, manifest says {size} (truncated or replaced)")
    digest = sha256_file(p)
    if digest != sha256:
        raise BundleError(
            f"{p}: sha256 {digest[:16]}... does not match the manifest's "
            f"{sha256[:16]}... (file modified after the bundle was made)"
        )


#: A manifest is small; anything larger is not one (and is not read whole).
MAX_MANIFEST_BYTES = 16 << 20


def read_manifest(path: Union[str, Path]) -> Dict[str, Any]:
    """Parse ``manifest.json`` of a bundle directory and check every field and its content
    digest (:mod:`.manifest_schema`); no artifact checksums. :class:`BundleError` otherwise."""
    root = Path(path)
    mpath = root / MANIFEST_NAME
    if not root.is_dir():
        raise BundleError(f"{root}: not a bundle directory (does not exist or is a file)")
    if mpath.is_symlink():
        raise BundleError(f"{mpath}: is a symbolic link; a bundle's manifest must be a regular file")
    if not mpath.is_file():
        raise BundleError(f"{mpath}: missing; {root} is not a docedge bundle")
    if mpath.stat().st_size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{mpath}: larger than {MAX_MANIFEST_BYTES >> 20} MiB; not a manifest")
    try:
        manifest = json.loads(mpath.read_bytes().decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as e:
        raise BundleError(f"{mpath}: not valid JSON ({e})") from None
    except RecursionError:
        raise BundleError(f"{mpath}: JSON nested too deeply") from None
    return validate_manifest(manifest, str(mpath))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def load_bundle(path: Union[str, Path], verify: bool = True) -> Bundle:
    """Load a bundle directory; with ``verify`` (default) check every artifact's checksum."""
    root = Path(path)
    bundle = Bundle(root, read_manifest(root))
    if verify:
        bundle.verify()
    logger.debug("loaded bundle %s (%s)", root, ", ".join(bundle.precisions))
    return bundle


def write_manifest(path: Union[str, Path], manifest: Dict[str, Any]) -> None:
    """Atomically (re)write a bundle's ``manifest.json``, sealed with its content digest.

    Use :class:`docedge.runtime.bundle_commit.BundleTransaction` to change a bundle; this is
    its commit point. ``manifest`` is updated in place with the new ``integrity`` record.
    """
    sealed = seal(manifest)
    manifest.clear()
    manifest.update(sealed)
    data = (json.dumps(manifest, indent=2, sort_keys=False, allow_nan=False) + "\n").encode("utf-8")
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
