"""The interface every inference backend implements (ONNX Runtime, TensorRT, ...)."""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

try:  # Python >= 3.8
    from typing import Protocol, runtime_checkable
except ImportError:  # pragma: no cover
    from typing_extensions import Protocol, runtime_checkable  # type: ignore[assignment]


@runtime_checkable
class Backend(Protocol):
    """Runs the embedding network on pre-processed batches.

    ``run`` takes float32 ``(n, 3, 128, 128)`` with ``1 <= n <= max_batch`` (when set) and
    returns float32 ``(n, 256)`` unit vectors. Implementations are safe to call from several
    threads (each documents how).
    """

    name: str
    precision: str
    #: Largest batch one ``run`` call accepts (None: unbounded). Embedders split larger ones.
    max_batch: Optional[int]

    def run(self, batch: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]: ...

    def describe(self) -> Dict[str, Any]:
        """Backend name, library version, device/providers, artifact: for logs and reports."""
        ...

    def close(self) -> None: ...
