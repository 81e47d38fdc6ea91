"""Typed errors of the docedge runtime. Every error names the file or item and the problem."""

from __future__ import annotations


class DocedgeError(Exception):
    """Base class of every error docedge raises on purpose."""


class BundleError(DocedgeError):
    """A model bundle is missing, tampered, truncated, of an unknown schema or inconsistent."""


class ImageError(DocedgeError):
    """One input image could not be read, decoded or converted.

    ``source`` names the image (a path, ``"<bytes #i>"`` or ``"<array #i>"``).
    """

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem


class BackendUnavailableError(DocedgeError):
    """An optional backend (ONNX Runtime, TensorRT, pycuda) is not installed or not usable.

    The message says what to install for the platform.
    """


class ProviderUnavailableError(BackendUnavailableError):
    """A requested ONNX Runtime execution provider is not available (no silent CPU fallback)."""


class GalleryError(DocedgeError):
    """A gallery file is corrupt, locked, of an unknown schema, or does not match the model."""


class FingerprintMismatchError(GalleryError):
    """A gallery was made with another model bundle, precision or pre-processing."""


class ThresholdError(DocedgeError):
    """No usable decision threshold (no table for the precision, unsupported FPR row, ...)."""
