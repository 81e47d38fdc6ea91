"""Check an integrator's own pre-processing and model output against a bundle's test vectors.

The vectors (``<bundle>/test_vectors.zip``, written at conversion; format in ``index.json``) are
PNG images, the exact float32 NCHW tensors docedge feeds the model, and the reference
embeddings. Run your device's decode + resize + colour handling on each PNG, then compare:

- tensors: max absolute difference <= ``TENSOR_MAX_ABS`` (2/255) and mean absolute difference
  <= ``TENSOR_MEAN_ABS`` (0.5/255). A correct bilinear resize with OpenCV's half-pixel
  centres, in float or in fixed point, passes; an antialiased (area/box/mipmapped) scaler or
  a swapped colour order does not.
- embeddings: cosine to the reference >= ``EMBEDDING_COS_MIN[precision]`` (fp32 0.9999,
  fp16 0.999, int8 0.97), the same limits as the conversion gate's minimum.

numpy and OpenCV only (no torch, no onnx); Python 3.8 compatible.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import numpy as np

from .errors import DocedgeError

VECTOR_DIR = "test_vectors"
#: In a bundle the vectors are one file (bundles hold plain files only): a zip of ``test_vectors/``.
ARCHIVE_NAME = "test_vectors.zip"
INDEX_NAME = "index.json"
SCHEMA = "docedge.test_vectors"
TENSOR_MAX_ABS = 2.0 / 255.0
TENSOR_MEAN_ABS = 0.5 / 255.0
EMBEDDING_COS_MIN: Dict[str, float] = {"fp32": 0.9999, "fp16": 0.999, "int8": 0.97}


class TestVectorError(DocedgeError):
    """The test vectors are missing or malformed, or a given array has the wrong shape."""

    __test__ = False  # not a pytest test class


@dataclass
class VectorCheck:
    """The comparison of one vector: tensor and/or embedding, each with its verdict."""

    name: str
    tensor_max_abs: Optional[float] = None
    tensor_mean_abs: Optional[float] = None
    tensor_passed: Optional[bool] = None
    embedding_cos: Optional[float] = None
    embedding_passed: Optional[bool] = None

    @property
    def passed(self) -> bool:
        verdicts = [v for v in (self.tensor_passed, self.embedding_passed) if v is not None]
        return bool(verdicts) and all(verdicts)

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["passed"] = self.passed
        return d


class TestVectors:
    """A test-vector folder: ``index.json`` plus the files it names."""

    __test__ = False

    def __init__(self, source: Union[str, Path]) -> None:
        """``source``: a bundle directory (reads its ``test_vectors.zip``), the zip itself, or
        an extracted ``test_vectors`` folder."""
        src = Path(source)
        self._zip: Optional[zipfile.ZipFile] = None
        self._prefix = ""
        if src.is_dir() and (src / ARCHIVE_NAME).is_file():
            src = src / ARCHIVE_NAME
        if src.is_file():
            try:
                self._zip = zipfile.ZipFile(src)
            except (OSError, zipfile.BadZipFile) as e:
                raise TestVectorError(f"{src}: not a readable test-vector archive ({e})") from None
            self._prefix = VECTOR_DIR + "/"
            where = f"{src}:{self._prefix}{INDEX_NAME}"
            if self._prefix + INDEX_NAME not in self._zip.namelist():
                raise TestVectorError(f"{where}: missing from the archive")
            raw = self._zip.read(self._prefix + INDEX_NAME)
        else:
            if (src / VECTOR_DIR / INDEX_NAME).is_file():
                src = src / VECTOR_DIR
            where = str(src / INDEX_NAME)
            if not (src / INDEX_NAME).is_file():
                raise TestVectorError(f"{where}: missing (no test vectors here; run `docedge convert`)")
            raw = (src / INDEX_NAME).read_bytes()
        try:
            index = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise TestVectorError(f"{where}: not valid JSON ({e})") from None
        if not isinstance(index, dict) or index.get("schema") != SCHEMA:
            raise TestVectorError(f"{where}: not a docedge test-vector index (schema != {SCHEMA!r})")
        self.root = src
        self.index = index
        self.vectors: List[Dict[str, Any]] = list(index.get("vectors", []))

    def read_bytes(self, member: str) -> bytes:
        """The bytes of one file of the vectors (``index.json``, a PNG, a ``.npy``)."""
        try:
            if self._zip is not None:
                return self._zip.read(self._prefix + member)
            return (self.root / member).read_bytes()
        except (KeyError, OSError) as e:
            raise TestVectorError(f"{self.root}: cannot read {member} ({e})") from None

    def extract(self, dest: Union[str, Path]) -> Path:
        """Write the vectors as plain files into ``dest/test_vectors`` (to copy to a device)."""
        out = Path(dest) / VECTOR_DIR
        out.mkdir(parents=True, exist_ok=True)
        for member in [INDEX_NAME] + [
            str(v[k]) for v in self.vectors for k in ("image", "tensor", "embedding")
        ]:
            (out / member).write_bytes(self.read_bytes(member))
        return out

    @property
    def names(self) -> List[str]:
        return [str(v["name"]) for v in self.vectors]

    def _entry(self, name: str) -> Dict[str, Any]:
        for v in self.vectors:
            if v["name"] == name:
                return v
        raise TestVectorError(f"{self.root}: no test vector named {name!r} (have {self.names})")

    def image_bytes(self, name: str) -> bytes:
        """The encoded PNG of vector ``name`` (decode it the way your device does)."""
        return self.read_bytes(str(self._entry(name)["image"]))

    def _load(self, name: str, key: str) -> np.ndarray:
        member = str(self._entry(name)[key])
        try:
            arr: np.ndarray = np.load(io.BytesIO(self.read_bytes(member)), allow_pickle=False)
        except (OSError, ValueError) as e:
            raise TestVectorError(f"{self.root}: {member}: cannot read the .npy file ({e})") from None
        return arr

    def tensor(self, name: str, layout: str = "NCHW") -> np.ndarray:
        """The expected float32 input ``(1, 3, 128, 128)`` (or ``(1, 128, 128, 3)`` for NHWC)."""
        x = self._load(name, "tensor")
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if layout.upper() == "NHWC" else x

    def embedding(self, name: str) -> np.ndarray:
        """The reference embedding, float32 ``(256,)``, unit length."""
        return self._load(name, "embedding")

    # --- checks ---------------------------------------------------------------------------
    def check_tensor(self, name: str, tensor: Any, layout: str = "NCHW") -> VectorCheck:
        """Compare your pre-processed tensor for vector ``name`` (float values in [0, 1])."""
        expected = self.tensor(name, layout)
        got = np.asarray(tensor, np.float32).reshape(-1)
        if got.size != expected.size:
            raise TestVectorError(f"{name}: tensor has {got.size} values, expected {expected.size} "
                                  f"({layout} {list(expected.shape)})")  # fmt: skip
        diff = np.abs(got - expected.reshape(-1))
        mx, mean = float(diff.max()), float(diff.mean())
        return VectorCheck(name, tensor_max_abs=mx, tensor_mean_abs=mean,
                           tensor_passed=mx <= TENSOR_MAX_ABS and mean <= TENSOR_MEAN_ABS)  # fmt: skip

    def check_embedding(self, name: str, embedding: Any, precision: str = "fp32") -> VectorCheck:
        """Compare your model output for vector ``name`` (normalized or not) with the reference."""
        if precision not in EMBEDDING_COS_MIN:
            raise TestVectorError(f"unknown precision {precision!r}; use one of {sorted(EMBEDDING_COS_MIN)}")
        ref = self.embedding(name).astype(np.float64).reshape(-1)
        got = np.asarray(embedding, np.float64).reshape(-1)
        if got.size != ref.size:
            raise TestVectorError(f"{name}: embedding has {got.size} values, expected {ref.size}")
        den = max(float(np.linalg.norm(got)) * float(np.linalg.norm(ref)), 1e-30)
        cos = float(got @ ref) / den
        return VectorCheck(name, embedding_cos=cos, embedding_passed=cos >= EMBEDDING_COS_MIN[precision])

    def check(
        self,
        tensors: Optional[Mapping[str, Any]] = None,
        embeddings: Optional[Mapping[str, Any]] = None,
        precision: str = "fp32",
        layout: str = "NCHW",
    ) -> List[VectorCheck]:
        """Check every vector given (by name) in ``tensors`` and/or ``embeddings``."""
        tensors, embeddings = dict(tensors or {}), dict(embeddings or {})
        unknown = sorted((set(tensors) | set(embeddings)) - set(self.names))
        if unknown:
            raise TestVectorError(f"{self.root}: unknown vector name(s) {unknown} (have {self.names})")
        out = []
        for name in self.names:
            if name not in tensors and name not in embeddings:
                continue
            c = VectorCheck(name)
            if name in tensors:
                t = self.check_tensor(name, tensors[name], layout)
                c.tensor_max_abs, c.tensor_mean_abs, c.tensor_passed = (
                    t.tensor_max_abs,
                    t.tensor_mean_abs,
                    t.tensor_passed,
                )
            if name in embeddings:
                e = self.check_embedding(name, embeddings[name], precision)
                c.embedding_cos, c.embedding_passed = e.embedding_cos, e.embedding_passed
            out.append(c)
        return out


def load_test_vectors(source: Union[str, Path]) -> TestVectors:
    """Open the test vectors of a bundle directory, a ``test_vectors.zip`` or an extracted folder."""
    return TestVectors(source)
