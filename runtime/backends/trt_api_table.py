"""Which TensorRT Python API names exist in each line users have (from NVIDIA's Python API
reference for 8.5, 10.x and 11.x). The compatibility layer detects features with ``hasattr``
at run time; this table documents the expectations and drives the tests' fake modules.
"""

from __future__ import annotations

from typing import Dict, FrozenSet

#: attribute -> the TensorRT lines that have it. ("ctx" = IExecutionContext, "engine" =
#: ICudaEngine, "config" = IBuilderConfig, "flag" = BuilderFlag, "netflag" =
#: NetworkDefinitionCreationFlag, "perr" = ParserError.)
API: Dict[str, FrozenSet[str]] = {
    "engine.num_bindings": frozenset({"8.5"}),
    "engine.get_binding_name": frozenset({"8.5"}),
    "engine.binding_is_input": frozenset({"8.5"}),
    "engine.get_profile_shape": frozenset({"8.5"}),
    "ctx.set_binding_shape": frozenset({"8.5"}),
    "ctx.execute_async_v2": frozenset({"8.5"}),
    # The named-tensor API appeared in 8.5 and is the only one from 10.0 on.
    "engine.num_io_tensors": frozenset({"8.5", "10", "11"}),
    "engine.get_tensor_name": frozenset({"8.5", "10", "11"}),
    "engine.get_tensor_mode": frozenset({"8.5", "10", "11"}),
    "engine.get_tensor_profile_shape": frozenset({"8.5", "10", "11"}),
    "ctx.set_input_shape": frozenset({"8.5", "10", "11"}),
    "ctx.set_tensor_address": frozenset({"8.5", "10", "11"}),
    "ctx.execute_async_v3": frozenset({"8.5", "10", "11"}),
    "config.max_workspace_size": frozenset({"8.5"}),
    "config.set_memory_pool_limit": frozenset({"8.5", "10", "11"}),
    "config.int8_calibrator": frozenset({"8.5", "10"}),
    "builder.build_engine": frozenset({"8.5"}),
    "builder.build_serialized_network": frozenset({"8.5", "10", "11"}),
    "flag.FP16": frozenset({"8.5", "10"}),
    "flag.INT8": frozenset({"8.5", "10"}),
    "flag.VERSION_COMPATIBLE": frozenset({"10", "11"}),
    "flag.GPU_FALLBACK": frozenset({"8.5", "10", "11"}),
    "netflag.EXPLICIT_BATCH": frozenset({"8.5", "10"}),
    "netflag.STRONGLY_TYPED": frozenset({"10", "11"}),
    "trt.IInt8EntropyCalibrator2": frozenset({"8.5", "10"}),
    "perr.node_name": frozenset({"10", "11"}),
}

LINES = ("8.5", "10", "11")


def names_for(line: str, prefix: str) -> FrozenSet[str]:
    """Attribute names (without prefix) with ``prefix.`` that line ``line`` has."""
    return frozenset(k.split(".", 1)[1] for k, v in API.items()
                     if k.startswith(prefix + ".") and line in v)  # fmt: skip
