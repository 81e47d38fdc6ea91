"""ONNX Runtime Mobile: ``.ort`` files, the reduced-operator build config, the usability report.

All three come from ONNX Runtime's own tools (``onnxruntime.tools``):

- :func:`convert_ort`: ``convert_onnx_models_to_ort`` with one optimization style and level.
  A "fixed" file has its graph optimizations baked in (best on the CPU/XNNPACK EPs; fused
  nodes are contrib ops NNAPI/Core ML cannot take); a "runtime" file keeps basic optimizations
  and stores the rest to be replayed when a compiling EP (NNAPI, Core ML) leaves nodes to the
  CPU EP (session option ``session.enable_saved_runtime_optimizations=1``). Each record says
  which level and style the file is valid for.
- :func:`write_operator_config`: ``required_operators_and_types.config`` for a custom minimal
  ONNX Runtime build (``build.sh --minimal_build --include_ops_by_config ...``) that runs
  every ``.ort`` file of the bundle.
- :func:`usability_report`: ``check_onnx_model_mobile_usability``'s analysis (NNAPI, Core ML
  NeuralNetwork and MLProgram partitions) as text, plus the partition counts as data.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Sequence, Union

from ._common import ConversionError, versions

logger = logging.getLogger(__name__)

STYLES = ("fixed", "runtime")
LEVELS = ("basic", "extended", "all")
#: Per precision: (style, level), measured (see docs/android.md): the fp16 "fixed" style folds
#: the weights back to fp32 (2x the size); int8 matches its ONNX file only at "extended"
#: (layout optimizations are not stored in .ort files).
DEFAULT_OPTIMIZATION = {"fp32": ("fixed", "extended"), "fp16": ("runtime", "basic"),
                        "int8": ("fixed", "extended")}  # fmt: skip
_LEVEL_ENV = "ORT_CONVERT_ONNX_MODELS_TO_ORT_OPTIMIZATION_LEVEL"
CONFIG_NAME = "required_operators_and_types.config"


@contextlib.contextmanager
def _level(level: str) -> Iterator[None]:
    """The converter reads its optimization level from an environment variable only."""
    old = os.environ.get(_LEVEL_ENV)
    os.environ[_LEVEL_ENV] = level
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(_LEVEL_ENV, None)
        else:
            os.environ[_LEVEL_ENV] = old


def _quiet(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run an ORT tool (they print) with its stdout sent to the debug log."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        try:
            return fn(*args, **kwargs)
        finally:
            for line in buf.getvalue().splitlines():
                logger.debug("onnxruntime.tools: %s", line)


def valid_for(style: str) -> List[str]:
    """Execution providers an ``.ort`` file of this style is meant for."""
    if style == "runtime":
        return ["NNAPI", "CoreML", "XNNPACK", "CPU"]
    return ["CPU", "XNNPACK (nodes not fused)"]


def convert_ort(
    src: Union[str, Path],
    out_path: Union[str, Path],
    style: str = "fixed",
    level: str = "extended",
    target_platform: str = "arm",
) -> Dict[str, Any]:
    """Convert the ONNX file ``src`` to an ``.ort`` file at ``out_path``; returns record fields.

    The conversion runs in a private temporary directory (the tool writes beside its input and
    creates scratch directories there).
    """
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    if style not in STYLES:
        raise ValueError(f"optimization style must be one of {STYLES}, got {style!r}")
    if level not in LEVELS:
        raise ValueError(f"optimization level must be one of {LEVELS}, got {level!r}")
    src = Path(src)
    if not src.is_file():
        raise ConversionError(f"{src}: ONNX file not found")
    opt_style = OptimizationStyle.Runtime if style == "runtime" else OptimizationStyle.Fixed
    with tempfile.TemporaryDirectory(prefix="docedge-ort-") as tmp:
        work = Path(tmp) / "in"
        work.mkdir()
        shutil.copy2(src, work / "model.onnx")
        try:
            with _level(level):
                _quiet(convert_onnx_models_to_ort, work / "model.onnx", output_dir=Path(tmp) / "out",
                                   optimization_styles=[opt_style], target_platform=target_platform,
                                   enable_type_reduction=True)  # fmt: skip
        except Exception as e:
            raise ConversionError(f"{src}: ONNX Runtime could not convert it to ORT format ({e})") from None
        ort_files = sorted((Path(tmp) / "out").glob("*.ort"))
        if len(ort_files) != 1:
            raise ConversionError(
                f"{src}: expected one .ort file from the converter, got {[p.name for p in ort_files]}"
            )
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(ort_files[0]), str(out_path))
    session_options = {"session.enable_saved_runtime_optimizations": "1"} if style == "runtime" else {}
    return {
        "derived_from": src.name,
        "optimization": {"style": style, "level": level, "target_platform": target_platform},
        "valid_for": valid_for(style),
        "session_options": session_options,
        "converter": {"name": "onnxruntime.tools.convert_onnx_models_to_ort"},
        "producers": versions("onnxruntime", "onnx"),
    }


def write_operator_config(ort_files: Sequence[Union[str, Path]], out_path: Union[str, Path],
                          type_reduction: bool = True) -> None:  # fmt: skip
    """Write the reduced-operator build config for ``ort_files`` (comment lines name the files
    without their directories, so the config is reproducible)."""
    from onnxruntime.tools.ort_format_model import create_config_from_models

    paths = [Path(p).resolve() for p in ort_files]
    out = Path(out_path)
    try:
        _quiet(create_config_from_models, paths, out, type_reduction)
    except Exception as e:
        raise ConversionError(
            f"{out}: could not extract the operators of {[p.name for p in paths]} ({e})"
        ) from None
    lines = []
    for line in out.read_text(encoding="utf-8").splitlines():
        if line.startswith("# - "):
            line = "# - " + Path(line[4:]).name
        lines.append(line)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _partitions(info: Any) -> Dict[str, Any]:
    return {"nodes": int(info.num_nodes), "supported_nodes": int(info.num_supported_nodes),
            "partitions": int(info.num_partitions),
            "partition_sizes": [len(g) for g in info.supported_groups],
            "unsupported_ops": sorted(info.unsupported_ops),
            "unsupported_due_to_dynamic_shape": int(info.nodes_unsupported_due_to_dynamic_input),
            "suitability": info.suitability().name}  # fmt: skip


def usability_report(onnx_path: Union[str, Path]) -> Dict[str, Any]:
    """ONNX Runtime's mobile usability analysis of ``onnx_path``.

    Returns ``{"text": <the tool's report>, "eps": {"NNAPI": {...}, "CoreML NeuralNetwork":
    {...}, "CoreML MLProgram": {...}}}`` (node and partition counts, with shapes as they are).
    """
    from onnxruntime.tools.mobile_helpers import usability_checker as uc
    from onnxruntime.tools.onnx_model_utils import ModelProtoWithShapeInfo, optimize_model

    path = Path(onnx_path)
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(logging.Formatter("%(message)s"))
    tool_log = logging.getLogger("docedge.ort_mobile_usability")
    tool_log.setLevel(logging.INFO)
    tool_log.propagate = False
    tool_log.addHandler(handler)
    try:
        _quiet(uc.analyze_model, path, skip_optimize=False, logger=tool_log)
        with tempfile.TemporaryDirectory(prefix="docedge-usability-") as tmp:
            opt = Path(tmp) / path.name
            _quiet(optimize_model, path, opt, use_external_initializers=True)
            model = ModelProtoWithShapeInfo(opt).model_with_shape_info
            eps = {
                "NNAPI": _partitions(uc.check_nnapi_partitions(model, True)),
                "CoreML NeuralNetwork": _partitions(
                    uc.check_coreml_partitions(model, True, "coreml_supported_neuralnetwork_ops.md")),
                "CoreML MLProgram": _partitions(
                    uc.check_coreml_partitions(model, True, "coreml_supported_mlprogram_ops.md")),
            }  # fmt: skip
    except ConversionError:
        raise
    except Exception as e:
        raise ConversionError(f"{path}: ONNX Runtime's mobile usability check failed ({e})") from None
    finally:
        tool_log.removeHandler(handler)
    return {"model": path.name, "eps": eps, "text": buf.getvalue()}
