"""TensorRT, one package (as Polygraphy's ``backend/trt/``): everything that needs TensorRT
lives here, and building an engine stays a device-side runtime capability.

- :mod:`.compat`: feature-detected API layer over TensorRT 8.5 (JetPack 5), 10.x and 11.x;
- :mod:`.calibration_cache`: the INT8 calibration-cache format and its one validator;
- :mod:`.builder`: ONNX -> engine (strongly typed, explicit QDQ, implicit INT8 with the cache);
- :mod:`.engine_cache`: engines keyed by model, precision, TensorRT version and GPU, sidecars;
- :mod:`.runner`: the :class:`~docedge.runtime.backends.base.Backend` that runs an engine.

Importing this package imports no TensorRT; its modules import it when used.
"""
