"""A Triton Inference Server model repository from a verified bundle (torch-free).

    docedge export-triton BUNDLE --out REPO [--precision fp32,fp16] [--engine fp16=PLAN]

For a bundle named ``NAME`` (the manifest's model name, made safe for Triton):

- ``NAME_onnx_<precision>``: ONNX Runtime backend models, one per precision, with a GPU and a CPU
  instance group (Triton uses the GPU one where a GPU exists, ``KIND_CPU`` otherwise), dynamic
  batching up to ``max_batch``, and for fp16/int8 ONNX Runtime's TensorRT execution accelerator
  (``precision_mode`` FP16 / INT8) on GPUs;
- ``NAME_trt_<precision>``: TensorRT backend models from engines built with
  ``docedge build-engine`` (``--engine PREC=PATH``); ``max_batch`` is the engine's profile
  maximum, read from its sidecar;
- ``NAME_preprocess``: a Python-backend model that takes encoded image bytes (TYPE_STRING) and
  runs docedge's own pre-processing (needs ``pip install docedge`` in Triton's Python
  environment), and ``NAME`` itself: an ensemble ``bytes -> NAME_preprocess -> NAME_onnx_fp32``
  so that a client sends a JPEG and gets the embedding.

Every ``config.pbtxt`` is parsed back with ``tritonclient``'s ``ModelConfig`` protobuf when
``tritonclient`` is installed (``docedge[triton]``); the Triton backends themselves were not
run here (docs/serving.md says so).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from docedge.runtime.bundle import Bundle, load_bundle
from docedge.runtime.errors import BundleError

PREPROCESS_MODEL_PY = '''"""Triton Python backend: image bytes -> docedge pre-processing -> (3, 128, 128)."""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from docedge.runtime.errors import ImageError
from docedge.runtime.preprocess import PreprocessSpec, load_image, preprocess_bgr


class TritonPythonModel:
    def initialize(self, args):
        params = json.loads(args["model_config"]).get("parameters", {})
        self.spec = PreprocessSpec.from_dict(json.loads(params["preprocess"]["string_value"]))

    def execute(self, requests):
        responses = []
        for request in requests:
            data = pb_utils.get_input_tensor_by_name(request, "image_bytes").as_numpy()
            try:
                batch = np.stack([preprocess_bgr(load_image(bytes(item[0]), i), self.spec)
                                  for i, item in enumerate(data)])
            except ImageError as e:  # a typed error for the client, not a crash
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(e))))
                continue
            out = pb_utils.Tensor("img", batch.astype(np.float32))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses
'''


def triton_name(text: str) -> str:
    """A model name Triton accepts (letters, digits, ``_``, ``-``)."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")
    return name or "docedge"


def _q(s: str) -> str:
    return json.dumps(s)


def _io_block(kind: str, name: str, dtype: str, dims: Sequence[int]) -> str:
    return (f"{kind} [\n  {{\n    name: {_q(name)}\n    data_type: {dtype}\n"
            f"    dims: [ {', '.join(str(d) for d in dims)} ]\n  }}\n]\n")


def _batching(max_batch: int, delay_us: int) -> str:
    preferred = sorted({b for b in (max(1, max_batch // 4), max(1, max_batch // 2), max_batch)})
    return (f"dynamic_batching {{\n  preferred_batch_size: [ {', '.join(map(str, preferred))} ]\n"
            f"  max_queue_delay_microseconds: {delay_us}\n}}\n")


def onnx_model_config(name: str, bundle: Bundle, precision: str, max_batch: int,
                      delay_us: int, gpu_instances: int, cpu_instances: int) -> str:  # fmt: skip
    """``config.pbtxt`` of an ONNX Runtime backend model for one precision."""
    h, w = bundle.preprocess.height, bundle.preprocess.width
    text = (f"name: {_q(name)}\nbackend: \"onnxruntime\"\nmax_batch_size: {max_batch}\n"
            + _io_block("input", bundle.input_name, "TYPE_FP32", [3, h, w])
            + _io_block("output", bundle.output_name, "TYPE_FP32", [bundle.embedding_dim])
            + _batching(max_batch, delay_us)
            + "instance_group [\n"
            f"  {{ count: {gpu_instances}\n    kind: KIND_GPU }},\n"
            f"  {{ count: {cpu_instances}\n    kind: KIND_CPU }}\n]\n")  # fmt: skip
    if precision in ("fp16", "int8"):
        mode = "FP16" if precision == "fp16" else "INT8"
        text += ("optimization {\n  execution_accelerators {\n    gpu_execution_accelerator: [\n"
                 "      {\n        name: \"tensorrt\"\n"
                 f"        parameters {{ key: \"precision_mode\" value: \"{mode}\" }}\n"
                 "        parameters { key: \"max_workspace_size_bytes\" value: \"1073741824\" }\n"
                 "      }\n    ]\n  }\n}\n")  # fmt: skip
    text += (f"parameters {{ key: \"docedge.precision\" value: {{ string_value: {_q(precision)} }} }}\n"
             f"parameters {{ key: \"docedge.artifact_sha256\" value: "
             f"{{ string_value: {_q(bundle.artifact(precision).sha256)} }} }}\n")  # fmt: skip
    return text


def tensorrt_model_config(name: str, bundle: Bundle, max_batch: int, delay_us: int,
                          gpu_instances: int) -> str:  # fmt: skip
    """``config.pbtxt`` of a TensorRT backend model (a serialized engine, ``model.plan``)."""
    h, w = bundle.preprocess.height, bundle.preprocess.width
    return (f"name: {_q(name)}\nbackend: \"tensorrt\"\nplatform: \"tensorrt_plan\"\n"
            f"max_batch_size: {max_batch}\n"
            + _io_block("input", bundle.input_name, "TYPE_FP32", [3, h, w])
            + _io_block("output", bundle.output_name, "TYPE_FP32", [bundle.embedding_dim])
            + _batching(max_batch, delay_us)
            + f"instance_group [\n  {{ count: {gpu_instances}\n    kind: KIND_GPU }}\n]\n")  # fmt: skip


def preprocess_model_config(name: str, bundle: Bundle, max_batch: int) -> str:
    """``config.pbtxt`` of the Python-backend pre-processing model."""
    h, w = bundle.preprocess.height, bundle.preprocess.width
    spec = json.dumps(bundle.preprocess.to_dict(), sort_keys=True)
    return (f"name: {_q(name)}\nbackend: \"python\"\nmax_batch_size: {max_batch}\n"
            + _io_block("input", "image_bytes", "TYPE_STRING", [1])
            + _io_block("output", bundle.input_name, "TYPE_FP32", [3, h, w])
            + "instance_group [\n  { count: 2\n    kind: KIND_CPU }\n]\n"
            + f"parameters {{ key: \"preprocess\" value: {{ string_value: {_q(spec)} }} }}\n")  # fmt: skip


def ensemble_config(name: str, bundle: Bundle, pre: str, model: str, max_batch: int) -> str:
    """``config.pbtxt`` of the ensemble: image bytes in, embedding out."""
    return (f"name: {_q(name)}\nplatform: \"ensemble\"\nmax_batch_size: {max_batch}\n"
            + _io_block("input", "image_bytes", "TYPE_STRING", [1])
            + _io_block("output", bundle.output_name, "TYPE_FP32", [bundle.embedding_dim])
            + "ensemble_scheduling {\n  step [\n"
            f"    {{\n      model_name: {_q(pre)}\n      model_version: -1\n"
            "      input_map { key: \"image_bytes\" value: \"image_bytes\" }\n"
            f"      output_map {{ key: {_q(bundle.input_name)} value: \"preprocessed\" }}\n    }},\n"
            f"    {{\n      model_name: {_q(model)}\n      model_version: -1\n"
            f"      input_map {{ key: {_q(bundle.input_name)} value: \"preprocessed\" }}\n"
            f"      output_map {{ key: {_q(bundle.output_name)} value: {_q(bundle.output_name)} }}\n"
            "    }\n  ]\n}\n")  # fmt: skip


def validate_config(text: str, where: str = "config.pbtxt") -> Any:
    """Parse ``text`` with tritonclient's ``ModelConfig`` protobuf; returns the message.
    :class:`BundleError` naming the file when it does not parse."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        raise BundleError("validating Triton configs needs tritonclient: pip install "
                          "'docedge[triton]'") from None  # fmt: skip
    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as e:
        raise BundleError(f"{where}: not a valid Triton ModelConfig ({e})") from None


def _engine_max_batch(engine: Path) -> int:
    side = engine.with_name(engine.name + ".json")
    try:
        profile = json.loads(side.read_text())["key"]["profile"]
        return int(profile["max"])
    except (OSError, ValueError, KeyError, TypeError):
        raise BundleError(f"{engine}: no readable docedge sidecar ({side.name}) with the engine's "
                          "optimization profile; build it with docedge build-engine") from None


def export_triton(bundle_dir: Union[str, Path], out_dir: Union[str, Path],
                  precisions: Optional[Sequence[str]] = None,
                  engines: Optional[Mapping[str, Union[str, Path]]] = None,
                  max_batch: int = 64, delay_us: int = 500, gpu_instances: int = 1,
                  cpu_instances: int = 1, validate: bool = True,
                  overwrite: bool = False) -> Dict[str, Any]:  # fmt: skip
    """Write a Triton model repository for ``bundle_dir`` into ``out_dir``; returns
    ``{"repository", "models": {name: {"kind", "precision", "config"}}}``."""
    bundle = load_bundle(bundle_dir)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise BundleError(f"{out}: exists and is not empty (use --overwrite)")
        shutil.rmtree(out)
    if max_batch < 1:
        raise BundleError(f"max_batch must be >= 1, got {max_batch}")
    base = triton_name(str(bundle.model.get("name") or "docedge"))
    precs: List[str] = list(precisions or bundle.precisions)
    models: Dict[str, Dict[str, Any]] = {}

    def write(name: str, config: str, files: Mapping[str, Path], kind: str, prec: Optional[str]) -> None:
        folder = out / name
        (folder / "1").mkdir(parents=True)
        if validate:
            validate_config(config, str(folder / "config.pbtxt"))
        (folder / "config.pbtxt").write_text(config, encoding="utf-8")
        for target, src in files.items():
            shutil.copyfile(src, folder / "1" / target)
        models[name] = {"kind": kind, "precision": prec, "config": str(folder / "config.pbtxt")}

    for prec in precs:
        name = f"{base}_onnx_{prec}"
        write(name, onnx_model_config(name, bundle, prec, max_batch, delay_us, gpu_instances,
                                      cpu_instances),
              {"model.onnx": bundle.artifact_path(prec)}, "onnxruntime", prec)  # fmt: skip
    for prec, engine in (engines or {}).items():
        path = Path(engine)
        if not path.is_file():
            raise BundleError(f"{path}: TensorRT engine not found")
        name = f"{base}_trt_{prec}"
        write(name, tensorrt_model_config(name, bundle, _engine_max_batch(path), delay_us,
                                          gpu_instances),
              {"model.plan": path}, "tensorrt", prec)  # fmt: skip
    pre = f"{base}_preprocess"
    write(pre, preprocess_model_config(pre, bundle, max_batch), {}, "python", None)
    (out / pre / "1" / "model.py").write_text(PREPROCESS_MODEL_PY, encoding="utf-8")
    first = f"{base}_onnx_{precs[0]}"
    write(base, ensemble_config(base, bundle, pre, first, max_batch), {}, "ensemble", precs[0])
    (out / "docedge-triton.json").write_text(json.dumps(
        {"bundle": str(bundle.path), "model": bundle.model.get("name"), "models": models,
         "note": "generated by docedge export-triton; the Triton backends were not run by docedge"},
        indent=2) + "\n", encoding="utf-8")  # fmt: skip
    return {"repository": str(out), "models": models}
