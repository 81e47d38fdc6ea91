"""A drop-in replacement for DocClassifier 0.10.1's public API, backed by a docedge bundle and a
persistent gallery (torch-free: it runs on devices).

    from docedge.runtime.compat import DocClassifier
    clf = DocClassifier(register_root="register/", bundle="bundle/")
    label, score = clf(cv2.imread("photo.jpg"))      # (str or None, float)

What DocClassifier users rely on, kept as it is there:

- ``DocClassifier(register_root=..., threshold=..., model_cfg=...)``; an unknown ``model_cfg``
  raises ``ValueError`` listing the valid ones; ``list_models()`` is a non-empty list;
- register labels: sub-folder names joined by ``_``, plus ``_``, plus the file stem;
- ``__call__(img)`` on a BGR ``(H, W, 3)`` array (uint8, or float as DocClassifier accepts:
  resized, then divided by 255) returns ``(label, score)``: the best registered entry whose
  score ``(cos+1)/2`` is strictly above the threshold, else ``(None, 0.0)``;
- ``extract_feature(img)`` -> float32 ``(256,)``; ``bank`` -> ``{label: feature}`` (one entry
  per label: when a label occurs twice, the later file wins, as in DocClassifier's dict);
  ``get_register(root)`` -> the same for another folder; ``threshold``.

What is different: the register is embedded once into a gallery file and synced incrementally
(unchanged files are never re-embedded), instead of at every start; the model comes from a
verified bundle (``bundle=``, or ``$DOCEDGE_BUNDLE``); without a threshold the bundle's FPR 1e-2
table row is used, else DocClassifier's 0.627 for model_cfg 20240326.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import cv2
import numpy as np

from .bundle import Bundle, load_bundle
from .embedder import Embedder
from .errors import BundleError, ThresholdError
from .gallery import Gallery
from .gallery_sync import sync_register
from .register import scan_register
from .thresholds import bundle_operating_point

#: DocClassifier's model configurations (name -> its default threshold at FPR 1e-2).
MODEL_CONFIGS: Dict[str, Dict[str, Any]] = {
    "20240326": {"threshold": 0.627, "img_size_infer": (128, 128),
                 "model_path": "lcnet050_cosface_f256_r128_squeeze_lbn_imagenet_finetune_20240326_fp32.onnx"},
}  # fmt: skip
BUNDLE_ENV = "DOCEDGE_BUNDLE"


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "docedge"


def default_bundle_dir() -> Path:
    """Where ``DocClassifier()`` looks without ``bundle=``: ``$DOCEDGE_BUNDLE``, else
    ``~/.cache/docedge/demo-bundle`` (made by ``docedge export --out`` that folder)."""
    given = os.environ.get(BUNDLE_ENV)
    return Path(given) if given else _cache_dir() / "demo-bundle"


def _default_bundle() -> Bundle:
    where = default_bundle_dir()
    if not (where / "manifest.json").is_file():
        raise BundleError(
            f"DocClassifier() needs a model bundle and found none at {where}: pass "
            f"bundle='path/to/bundle', set ${BUNDLE_ENV}, or create the demo bundle once with "
            f"`docedge export --out {where}` (needs docedge[export])"
        )
    return load_bundle(where)


def _to_bgr_like_docclassifier(img: Any) -> np.ndarray[Any, Any]:
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.size == 0:
        raise ValueError("Input image must be numpy array.")
    return img


class DocClassifier:
    """DocClassifier 0.10.1's interface over a docedge bundle and gallery (see module doc)."""

    def __init__(self, *, model_type: Any = None, model_cfg: Optional[str] = None,
                 backend: Any = None, gpu_id: int = 0, threshold: Optional[float] = None,
                 register_root: Optional[Union[str, Path]] = None,
                 bundle: Optional[Union[str, Path, Bundle]] = None,
                 gallery: Optional[Union[str, Path]] = None, precision: str = "fp32",
                 **backend_options: Any) -> None:  # fmt: skip
        cfg_name = "20240326" if model_cfg is None else model_cfg
        if cfg_name not in MODEL_CONFIGS:
            raise ValueError(f"Invalid model_cfg: {cfg_name}, valid model_cfgs: {self.list_models()}")
        self.model_cfg = cfg_name
        self._bundle = bundle if isinstance(bundle, Bundle) else (
            load_bundle(bundle) if bundle is not None else _default_bundle())  # fmt: skip
        if backend is not None and str(getattr(backend, "name", backend)).lower() in ("cuda", "gpu"):
            backend_options.setdefault("providers", [("cuda", {"device_id": gpu_id}), "cpu"])
        self.embedder = Embedder(self._bundle, precision=precision, **backend_options)
        self._threshold = self._resolve_threshold(threshold, precision)
        self.register_root = Path(register_root) if register_root is not None else None
        self.gallery_path = Path(gallery) if gallery is not None else self._gallery_for(precision)
        self._bank: Dict[str, np.ndarray[Any, Any]] = {}
        self._labels: List[str] = []
        self._matrix = np.zeros((0, self._bundle.embedding_dim), np.float32)
        if self.register_root is not None:
            self._load_register()

    # --- DocClassifier's public API -------------------------------------------------------
    @property
    def bank(self) -> Dict[str, np.ndarray[Any, Any]]:
        """``{label: feature (256,)}`` of the register (later files win for a repeated label)."""
        return dict(self._bank)

    @property
    def threshold(self) -> float:
        return self._threshold

    def list_models(self) -> List[str]:
        return list(MODEL_CONFIGS)

    def get_register(self, register_root: Union[str, Path]) -> Dict[str, np.ndarray[Any, Any]]:
        """``{label: feature}`` of every image under ``register_root`` (not persisted)."""
        found = scan_register(register_root)
        res = self.embedder.embed_many([str(p) for _, p in found])
        return {label: res.embeddings[i] for i, (label, _) in enumerate(found) if res.ok[i]}

    def extract_feature(self, img: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """float32 ``(256,)`` unit embedding of a BGR image."""
        x = self._preprocess(_to_bgr_like_docclassifier(img))
        out: np.ndarray[Any, Any] = self.embedder.run_tensor(x[None])[0]
        return out

    def __call__(self, img: np.ndarray[Any, Any]) -> Tuple[Optional[str], float]:
        if not self._labels:
            return None, 0.0
        feat = self.extract_feature(img)
        sc = (self._matrix @ feat.astype(np.float32) + 1.0) / 2.0
        best = int(np.argmax(sc))
        if not float(sc[best]) > self._threshold:
            return None, 0.0
        return self._labels[best], float(sc[best])

    def __repr__(self) -> str:
        return f"DocClassifier(docedge bundle {self._bundle.path}, {len(self._labels)} registered)"

    # --- docedge internals ----------------------------------------------------------------
    def _preprocess(self, img: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        spec = self.embedder.spec
        if img.dtype == np.uint8:
            return self.embedder.preprocess_one(img)
        resized = cv2.resize(np.asarray(img, np.float32), (spec.width, spec.height),
                             interpolation=cv2.INTER_LINEAR)  # fmt: skip
        x: np.ndarray[Any, Any] = np.ascontiguousarray((resized / 255.0).astype(np.float32)
                                                       .transpose(2, 0, 1))  # fmt: skip
        return x

    def _resolve_threshold(self, threshold: Optional[float], precision: str) -> float:
        if threshold is not None:
            return float(threshold)
        try:
            return bundle_operating_point(self._bundle, precision, 1e-2, None).threshold
        except ThresholdError:
            return float(MODEL_CONFIGS[self.model_cfg]["threshold"])

    def _gallery_for(self, precision: str) -> Path:
        root = str(self.register_root.resolve()) if self.register_root is not None else ""
        fp = self.embedder.fingerprint()
        key = hashlib.sha256(f"{root}|{fp['artifact_sha256']}|{precision}".encode()).hexdigest()[:16]
        return _cache_dir() / "galleries" / f"{key}.gal"

    def _load_register(self) -> None:
        assert self.register_root is not None
        self.gallery_path.parent.mkdir(parents=True, exist_ok=True)
        sync_register(self.gallery_path, self.embedder, self.register_root)
        g = Gallery.open(self.gallery_path,
                         expect_fingerprint=self.embedder.fingerprint())  # fmt: skip
        g.check_embeddings()
        order = sorted(range(len(g)), key=lambda r: str(g.entries[r].source or ""))
        emb = np.asarray(g.embeddings, np.float32)
        for r in order:  # sorted by file path: a repeated label keeps the later file
            self._bank[g.row_labels[r]] = emb[r]
        self._labels = list(self._bank)
        self._matrix = np.stack([self._bank[k] for k in self._labels]) if self._labels else self._matrix
