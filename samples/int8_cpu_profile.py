"""Why INT8 does not pay on ONNX Runtime's x86 CPU provider for this network, measured: per-node
profiles (ONNX Runtime's own profiler) and process-isolated, interleaved timings of fp32, the
bundle's INT8 (QDQ, symmetric, depthwise float: the TensorRT-style artifact) and the INT8
variants ONNX Runtime's documentation recommends for x86 CPUs (U8S8: uint8 activations,
int8 per-channel weights, every convolution quantized; QDQ and QOperator), all quantized with
``onnxruntime.quantization.quantize_static`` on the bundle's own gate images.

    python samples/int8_cpu_profile.py BUNDLE --out int8_cpu/     # report.json, report.md, PNG

The report gives, per model: CPU ms/image (median, min-max over rounds, one engine per process),
speed-up over fp32, cosine to fp32, microseconds per image per operator class, and the bound
``fp32 total / INT8 convolution time``: the best speed-up any INT8 graph with these kernels
could reach if every Q/DQ, activation and transpose were free.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from docedge.calibration.benchmark import EngineSpec, run_benchmark
from docedge.calibration.node_profile import NodeProfile, conv_bound, profile_nodes
from docedge.export.check_images import document_check_batch
from docedge.export.verify import cosine_rows
from docedge.runtime.bundle import load_bundle

log = logging.getLogger("int8_cpu_profile")


def u8s8_variants(fp32: Path, work: Path, calib: np.ndarray) -> Dict[str, Path]:
    """ONNX Runtime's x86 recipe: uint8 activations (asymmetric), int8 per-channel weights, all
    convolutions quantized, MinMax on ``calib`` in batches of 16; QDQ and QOperator."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.i = 0

        def get_next(self) -> Optional[Dict[str, np.ndarray]]:
            if self.i >= len(calib):
                return None
            b = calib[self.i : self.i + 16]
            self.i += 16
            return {"img": b}

    pre = work / "fp32_pre.onnx"
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    out = {}
    for name, fmt in (("u8s8-qdq", QuantFormat.QDQ), ("u8s8-qoperator", QuantFormat.QOperator)):
        path = work / f"{name}.onnx"
        quantize_static(str(pre), str(path), Reader(), quant_format=fmt, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["Conv"])  # fmt: skip
        out[name] = path
    return out


def cosines(models: Dict[str, Path], x: np.ndarray) -> Dict[str, Dict[str, float]]:
    """Cosine of every model's embeddings to the first model's (fp32), min and mean."""
    from docedge.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    outs = {k: OnnxRuntimeBackend(p, intra_op_threads=1).run(x) for k, p in models.items()}
    ref = next(iter(outs.values()))
    res = {}
    for k, y in outs.items():
        c = cosine_rows(y, ref)
        res[k] = {"cos_min": float(c.min()), "cos_mean": float(c.mean())}
    return res


def plot(profiles: Dict[str, NodeProfile], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds: List[str] = []
    for p in profiles.values():
        kinds += [k for k in p.per_image_us if k not in kinds]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    names = list(profiles)
    left = np.zeros(len(names))
    cmap = plt.get_cmap("tab20")
    for i, k in enumerate(kinds[:14]):
        vals = np.array([profiles[n].per_image_us.get(k, 0.0) for n in names])
        ax.barh(names, vals, left=left, label=k, color=cmap(i % 20))
        left += vals
    ax.set_xlabel("kernel time, microseconds per image (batch 32, one thread)")
    ax.set_title("ONNX Runtime CPU: where the time goes")
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", type=Path)
    p.add_argument("--out", type=Path, default=Path("int8_cpu"))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=0.5)
    p.add_argument("--batch", type=int, default=32)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    b = load_bundle(a.bundle)
    models: Dict[str, Path] = {"fp32": b.artifact_path("fp32")}
    if "int8" in b.precisions:
        models["docedge-int8 (QDQ, dw float)"] = b.artifact_path("int8")
    calib = document_check_batch(64)
    a.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        models.update(u8s8_variants(models["fp32"], Path(tmp), calib))
        cos = cosines(models, calib)
        profiles = {k: profile_nodes(v, batch=a.batch, threads=1) for k, v in models.items()}
        engines = [EngineSpec(k, "onnx-file", str(v), threads=1) for k, v in models.items()]
        bench = run_benchmark(engines, batch_sizes=(1, a.batch), rounds=a.rounds,
                              seconds=a.seconds, gemm=False)  # fmt: skip
    fp32 = profiles["fp32"]
    rows = []
    for s in bench.summary:
        base = next(r for r in bench.summary if r["engine"] == "fp32" and r["batch"] == s["batch"])
        prof = profiles[s["engine"]]
        rows.append({"model": s["engine"], "batch": s["batch"], "cpu_ms": s["cpu_ms_per_image"],
                     "cpu_min": s["cpu_min"], "cpu_max": s["cpu_max"],
                     "speedup_vs_fp32": base["cpu_ms_per_image"] / s["cpu_ms_per_image"],
                     **cos[s["engine"]], "conv_us": prof.conv_us(), "total_us": prof.total_us,
                     "bound_vs_fp32": None if s["engine"] == "fp32" else conv_bound(fp32, prof)})
    report = {"bundle": str(a.bundle), "rows": rows, "load_before": bench.load_before,
              "load_after": bench.load_after, "profiles": {k: v.to_json() for k, v in profiles.items()},
              "errors": [r for r in bench.rounds if "error" in r]}  # fmt: skip
    (a.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    md = [f"Load average before {bench.load_before}, after {bench.load_after}; one thread; "
          f"{a.rounds} interleaved rounds, one process per model and round.", "",
          "| model | batch | CPU ms/image (min-max) | vs fp32 | cos min / mean | conv us/img | "
          "all us/img | best possible vs fp32 |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        md.append(f"| {r['model']} | {r['batch']} | {r['cpu_ms']:.3f} ({r['cpu_min']:.3f}-"
                  f"{r['cpu_max']:.3f}) | {r['speedup_vs_fp32']:.2f}x | {r['cos_min']:.4f} / "
                  f"{r['cos_mean']:.4f} | {r['conv_us']:.0f} | {r['total_us']:.0f} | "
                  f"{'-' if r['bound_vs_fp32'] is None else format(r['bound_vs_fp32'], '.2f') + 'x'} |")
    md += ["", "Per operator class, microseconds per image (batch "
           f"{a.batch}, one thread, ONNX Runtime's profiler):", ""]  # fmt: skip
    for k, prof in profiles.items():
        top = ", ".join(f"{op} {us:.0f}" for op, us in list(prof.per_image_us.items())[:8])
        md.append(f"- {k}: {top}")
    (a.out / "report.md").write_text("\n".join(md) + "\n")
    plot(profiles, a.out / "profile.png")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    sys.exit(main())
