"""Which TensorRT Python API names exist in each TensorRT line docedge supports.

Recorded from NVIDIA's TensorRT Python API reference and migration guides (8.5, 10.x, 11.x),
cross-checked against the Python binding sources of the NVIDIA/TensorRT repository at the tags
``8.5.2`` (JetPack 5.1), ``v10.3.0`` (JetPack 6.1/6.2), ``v10.13.0`` (JetPack 7, and the
``tensorrt-stubs`` used for type checking) and ``v11.1``. 10.3 and 10.13 agree on every name
below, so they form one column, "10".

The compatibility layer (:mod:`docedge.runtime.backends.tensorrt.compat`) never reads this
table at run time: it detects
features with ``hasattr`` on the objects it is given. The table documents what that detection
will find on each line, drives the fake ``tensorrt`` modules of the unit tests, and is checked
against the installed ``tensorrt-stubs`` (10.13) by the tests.

Keys are ``<prefix>.<name>``; :data:`PREFIXES` maps each prefix to the Python class it is
looked up on.
"""

from __future__ import annotations

from typing import Dict, FrozenSet

LINES = ("8.5", "10", "11")

#: What each line column was recorded from.
SOURCES: Dict[str, str] = {
    "8.5": "TensorRT 8.5.2 (JetPack 5.1.x, Python 3.8)",
    "10": "TensorRT 10.3 (JetPack 6.1/6.2) and 10.13 (JetPack 7; tensorrt-stubs 10.13)",
    "11": "TensorRT 11.1 (x86/SBSA; strongly typed only)",
}

#: Prefix -> the ``tensorrt`` class (or the module itself) the name is an attribute of.
PREFIXES: Dict[str, str] = {
    "trt": "tensorrt (module)",
    "engine": "ICudaEngine",
    "ctx": "IExecutionContext",
    "config": "IBuilderConfig",
    "builder": "Builder",
    "runtime": "Runtime",
    "flag": "BuilderFlag",
    "netflag": "NetworkDefinitionCreationFlag",
    "parser": "OnnxParser",
    "perr": "ParserError",
}

_ALL = frozenset(LINES)
_85 = frozenset({"8.5"})
_85_10 = frozenset({"8.5", "10"})
_10_11 = frozenset({"10", "11"})

#: attribute -> the TensorRT lines that have it.
API: Dict[str, FrozenSet[str]] = {
    # Runtime I/O: bindings (8.x only) and named tensors (8.5 and later).
    "engine.num_bindings": _85,
    "engine.get_binding_name": _85,
    "engine.get_binding_index": _85,
    "engine.binding_is_input": _85,
    "engine.get_binding_shape": _85,
    "engine.get_binding_dtype": _85,
    "engine.get_profile_shape": _85,
    "engine.max_batch_size": _85,
    "engine.has_implicit_batch_dimension": _85_10,
    "engine.num_io_tensors": _ALL,
    "engine.get_tensor_name": _ALL,
    "engine.get_tensor_mode": _ALL,
    "engine.get_tensor_shape": _ALL,
    "engine.get_tensor_dtype": _ALL,
    "engine.get_tensor_profile_shape": _ALL,
    "engine.num_optimization_profiles": _ALL,
    "engine.create_execution_context": _ALL,
    "ctx.set_binding_shape": _85,
    "ctx.execute_async_v2": _85,
    "ctx.set_input_shape": _ALL,
    "ctx.set_tensor_address": _ALL,
    "ctx.execute_async_v3": _ALL,
    "ctx.set_optimization_profile_async": _ALL,
    # Builder.
    "config.max_workspace_size": _85,
    "config.set_memory_pool_limit": _ALL,
    "config.int8_calibrator": _85_10,  # deprecated in 10.1, removed in 11
    "config.set_calibration_profile": _85_10,
    "config.set_flag": _ALL,
    "config.clear_flag": _ALL,
    "config.DLA_core": _ALL,
    "config.default_device_type": _ALL,
    "config.create_timing_cache": _ALL,
    "config.set_timing_cache": _ALL,
    "config.get_timing_cache": _ALL,
    "config.add_optimization_profile": _ALL,
    "builder.build_engine": _85,
    "builder.build_serialized_network": _ALL,
    "builder.max_batch_size": _85,  # implicit-batch networks still exist (8.x, 9.x)
    "builder.num_DLA_cores": _ALL,
    "builder.create_network": _ALL,
    "builder.create_builder_config": _ALL,
    "builder.create_optimization_profile": _ALL,
    "builder.platform_has_fast_fp16": _85_10,
    "runtime.deserialize_cuda_engine": _ALL,
    "runtime.engine_host_code_allowed": _10_11,  # 8.6+: needed for version-compatible plans
    "flag.FP16": _85_10,  # weak typing: deprecated in 10.12, removed in 11
    "flag.INT8": _85_10,
    "flag.TF32": _ALL,
    "flag.GPU_FALLBACK": _ALL,
    "flag.VERSION_COMPATIBLE": _10_11,  # 8.6+
    "flag.OBEY_PRECISION_CONSTRAINTS": _85_10,
    "flag.PREFER_PRECISION_CONSTRAINTS": _85_10,
    "flag.STRICT_TYPES": _85,
    "netflag.EXPLICIT_BATCH": _85_10,  # required in 8.x; ignored (deprecated) in 10
    "netflag.EXPLICIT_PRECISION": _85,
    "netflag.STRONGLY_TYPED": _10_11,  # 9.1+; the only typing mode of 11
    # Implicit INT8 calibrators: deprecated in 10.1, removed in 11.
    "trt.IInt8EntropyCalibrator2": _85_10,
    "trt.IInt8EntropyCalibrator": _85_10,
    "trt.IInt8MinMaxCalibrator": _85_10,
    "trt.IInt8LegacyCalibrator": _85_10,
    "parser.parse": _ALL,
    "parser.num_errors": _ALL,
    "parser.get_error": _ALL,
    "perr.code": _ALL,
    "perr.desc": _ALL,
    "perr.node": _ALL,
    "perr.node_name": _10_11,
    "perr.node_operator": _10_11,
}

#: Deprecations worth knowing on the lines that still have the name.
DEPRECATED: Dict[str, str] = {
    "flag.FP16": "10.12 (superseded by strong typing)",
    "flag.INT8": "10.12 (superseded by strong typing)",
    "config.int8_calibrator": "10.1 (superseded by explicit quantization)",
    "trt.IInt8EntropyCalibrator2": "10.1 (superseded by explicit quantization)",
    "netflag.EXPLICIT_BATCH": "10.0 (networks are always explicit batch)",
    "ctx.set_binding_shape": "8.5 (superseded by set_input_shape)",
    "engine.get_binding_dtype": "8.5 (superseded by get_tensor_dtype)",
    "builder.build_engine": "8.0 (superseded by build_serialized_network)",
    "config.max_workspace_size": "8.4 (superseded by set_memory_pool_limit)",
}


def names_for(line: str, prefix: str) -> FrozenSet[str]:
    """Attribute names (without prefix) under ``prefix`` that line ``line`` has."""
    if line not in LINES:
        raise ValueError(f"unknown TensorRT line {line!r}; known: {LINES}")
    return frozenset(k.split(".", 1)[1] for k, v in API.items()
                     if k.startswith(prefix + ".") and line in v)  # fmt: skip


def table_markdown() -> str:
    """The table as Markdown (docs/tensorrt.md embeds this output)."""
    rows = ["| attribute | " + " | ".join(LINES) + " |", "|---|" + "---|" * len(LINES)]
    for key in sorted(API, key=lambda k: (k.split(".")[0], k)):
        prefix, name = key.split(".", 1)
        cells = ["yes" if line in API[key] else "-" for line in LINES]
        rows.append(f"| `{PREFIXES[prefix].split()[0]}.{name}` | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"
