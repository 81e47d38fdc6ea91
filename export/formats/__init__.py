"""Mobile and edge artifact converters, one module per format, each a set of plain functions
with explicit options that write one artifact and return its manifest record fields:

- :mod:`.fixed_shape`: batch-1 ONNX, optional NHWC input, optional variant without the final
  L2 normalization (ONNX Runtime's shape tools and onnx's extractor).
- :mod:`.ort_mobile`: ``.ort`` files, the reduced-operator build config, ONNX Runtime's
  mobile usability report.
- :mod:`.litert`: LiteRT fp32 / fp16 / dynamic-range int8 / static int8 (``[litert]``).
- :mod:`.coreml`: Core ML ``.mlpackage`` fp16 and int8 weights (``[coreml]``; runs on macOS).
- :mod:`.ncnn`: ncnn ``.param``/``.bin`` fp16 and fp32 (``[ncnn]``).
- :mod:`.gate`: the gate of a converted artifact against the PyTorch reference.

Converters never touch a bundle's manifest; :func:`docedge.export.formats.convert.convert_bundle`
gates and commits.
"""

from typing import Any


def convert_bundle(*args: Any, **kwargs: Any) -> Any:
    """:func:`docedge.export.formats.convert.convert_bundle` (imported on first use)."""
    from .convert import convert_bundle as _convert_bundle

    return _convert_bundle(*args, **kwargs)


__all__ = ["convert_bundle"]
