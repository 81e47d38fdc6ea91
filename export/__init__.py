"""docedge.export: PyTorch reference model, ONNX export, FP16, bundles, TensorRT engine builds.

Needs the ``[export]`` extra (torch, timm, onnx, onnxsim, onnxconverter-common).
"""
