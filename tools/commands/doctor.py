"""``docedge doctor``: what this machine offers docedge (Python, libraries, providers, GPU)."""

from __future__ import annotations

import argparse
import importlib
import platform
import shutil
import subprocess
from typing import Any, Dict

from ..output import add_json_flag, print_json


def register(sub: Any) -> None:
    p = sub.add_parser("doctor", help="report Python, numpy, OpenCV, ONNX Runtime, TensorRT, GPU")
    add_json_flag(p)
    p.set_defaults(func=run)


def _version(module: str) -> Dict[str, Any]:
    try:
        m = importlib.import_module(module)
    except Exception as e:  # ImportError, or a broken install raising anything
        return {"installed": False, "error": f"{type(e).__name__}: {e}".splitlines()[0]}
    return {"installed": True, "version": str(getattr(m, "__version__", "unknown"))}


def collect() -> Dict[str, Any]:
    """Facts about this machine, for bug reports and device bring-up."""
    facts: Dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "jetson": _jetson_release(),
    }
    for name in ("numpy", "cv2", "onnxruntime", "tensorrt", "pycuda", "torch", "onnx", "timm"):
        facts[name] = _version(name)
    if facts["onnxruntime"]["installed"]:
        import onnxruntime

        facts["onnxruntime"]["providers"] = list(onnxruntime.get_available_providers())
        facts["onnxruntime"]["device"] = onnxruntime.get_device()
    facts["gpu"] = _gpus()
    return facts


def _jetson_release() -> Any:
    try:
        with open("/etc/nv_tegra_release", encoding="utf-8") as f:
            return f.readline().strip()
    except OSError:
        return None


def _gpus() -> Any:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run(
            [
                smi,
                "--query-gpu=name,compute_cap,driver_version,memory.total",
                "--format=csv,noheader",
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def run(args: argparse.Namespace) -> int:
    facts = collect()
    if args.json:
        print_json(facts)
        return 0
    print(f"python       {facts['python']} ({facts['machine']}, {facts['platform']})")
    if facts["jetson"]:
        print(f"jetson       {facts['jetson']}")
    for name in ("numpy", "cv2", "onnxruntime", "tensorrt", "pycuda", "torch", "onnx", "timm"):
        f = facts[name]
        state = f["version"] if f["installed"] else f"not installed ({f['error']})"
        print(f"{name:<12} {state}")
    if facts["onnxruntime"]["installed"]:
        print(f"ort providers {', '.join(facts['onnxruntime']['providers'])}")
    print(
        f"gpu          {'; '.join(facts['gpu']) if facts['gpu'] else 'none found (no nvidia-smi)'}"
    )
    if not facts["onnxruntime"]["installed"]:
        print("hint: pip install 'docedge[onnxruntime]' (or onnxruntime-gpu on CUDA/Jetson)")
    return 0
