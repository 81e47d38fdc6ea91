"""Provenance recorded with every artifact: producer versions and timestamps.

Imports no heavy library at module level: a version is read only where the library is already
installed, so torch-free stages (threshold calibration, parity against a bundle's own fp32
artifact) record provenance too.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import platform
from typing import Dict, Sequence

from docedge.runtime import __version__ as DOCEDGE_VERSION

#: Libraries whose versions are recorded when installed (import name, recorded name).
PRODUCER_LIBRARIES: Sequence[str] = (
    "numpy", "cv2", "onnx", "onnxruntime", "torch", "timm", "onnxsim", "onnxconverter_common",
)


def library_version(module: str) -> str:
    """``module.__version__`` if the library is installed, else ``""``."""
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return ""
    return str(getattr(mod, "__version__", "") or "")


def producer_versions(libraries: Sequence[str] = PRODUCER_LIBRARIES) -> Dict[str, str]:
    """docedge, Python and the installed producer libraries' versions (absent ones omitted)."""
    versions = {"docedge": DOCEDGE_VERSION, "python": platform.python_version()}
    for lib in libraries:
        v = library_version(lib)
        if v:
            versions[{"cv2": "opencv", "onnxconverter_common": "onnxconverter-common"}.get(lib, lib)] = v
    return versions


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second (``2026-12-01T15:04:05Z``)."""
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    return now.isoformat().replace("+00:00", "Z")
