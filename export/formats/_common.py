"""What every converter shares: typed errors, importing a converter behind its extra, and
producer versions."""

from __future__ import annotations

import importlib
import logging
import platform
from typing import Any, Dict

from docedge.runtime.errors import BackendUnavailableError, BundleError

from ..archive import zip_tree  # noqa: F401 - re-exported for the converters

logger = logging.getLogger(__name__)

#: format -> the pip extra that brings its converter (None: part of docedge[export]).
EXTRAS: Dict[str, Any] = {"ort": None, "fixed": None, "tflite": "litert", "coreml": "coreml",
                          "ncnn": "ncnn", "openvino": "openvino-export"}  # fmt: skip


class ConverterUnavailableError(BackendUnavailableError):
    """A converter (or the interpreter that verifies its output) is not installed."""


class ConversionError(BundleError):
    """A converter failed or produced an unusable artifact; the message names the file."""


def require(module: str, extra: str, what: str) -> Any:
    """Import ``module`` or raise :class:`ConverterUnavailableError` naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ConverterUnavailableError(
            f"{what} needs the Python module {module!r}, which is not installed ({e}); "
            f"install it with: pip install 'docedge[{extra}]'"
        ) from None


def dist_version(name: str) -> str:
    """Installed version of a distribution, or ``"unknown"``."""
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # PackageNotFoundError, or metadata missing
        return "unknown"


def versions(*dists: str) -> Dict[str, str]:
    """``{"python": ..., dist: version, ...}`` for provenance records."""
    out = {"python": platform.python_version()}
    for d in dists:
        out[d] = dist_version(d)
    return out
