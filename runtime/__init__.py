"""docedge.runtime: the slim on-device runtime (numpy + OpenCV + ONNX Runtime or TensorRT).

Importing this package loads no torch, onnx or matplotlib; backends import lazily.

    from docedge.runtime import Embedder
    emb = Embedder("bundle_dir", precision="fp32")
    vectors = emb.embed(["a.jpg", "b.png"])     # float32 (2, 256), unit length
"""

from __future__ import annotations

from .bundle import Artifact, Bundle, load_bundle
from .classifier import Candidate, Classifier, Decision
from .embedder import Embedder, EmbedResult, embed_images
from .errors import (
    BackendUnavailableError,
    BundleError,
    DocedgeError,
    FingerprintMismatchError,
    GalleryError,
    ImageError,
    ProviderUnavailableError,
    ThresholdError,
)
from .gallery import Gallery
from .preprocess import DEFAULT_SPEC, PreprocessSpec, load_image, preprocess, preprocess_bgr
from .thresholds import OperatingPoint

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_SPEC",
    "Artifact",
    "BackendUnavailableError",
    "Bundle",
    "BundleError",
    "Candidate",
    "Classifier",
    "Decision",
    "DocedgeError",
    "EmbedResult",
    "Embedder",
    "FingerprintMismatchError",
    "Gallery",
    "GalleryError",
    "ImageError",
    "OperatingPoint",
    "PreprocessSpec",
    "ProviderUnavailableError",
    "ThresholdError",
    "__version__",
    "embed_images",
    "load_bundle",
    "load_image",
    "preprocess",
    "preprocess_bgr",
]
