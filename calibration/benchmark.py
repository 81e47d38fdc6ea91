"""Engine benchmarks that hold on a shared machine.

- every measurement runs in its own process (one engine per process: no shared allocator,
  thread pool or warm cache between engines), started by the parent;
- rounds are interleaved: round r runs every engine once, in an order rotated each round, so a
  burst of load from another user of the machine hits all engines alike;
- each run reports wall time and CPU time (``time.process_time``) per image: CPU time barely
  moves when other processes share the cores, wall time shows what a user waits;
- the summary per engine is the median over rounds with the spread (min, max), plus the load
  average before and after, and the fraction of this core's measured float32 GEMM peak
  (29.4 MFLOP per image for the squeeze-head lcnet050).

Nothing here is asserted by unit tests; ``docedge bench`` prints it and ``docs/performance.md``
holds the tables.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

logger = logging.getLogger(__name__)

#: Multiply-adds of one 128x128 image through the squeeze-head lcnet050, x2 = FLOP.
FLOP_PER_IMAGE = 29.4e6


@dataclass(frozen=True)
class EngineSpec:
    """One engine to time: ``kind`` is ``onnxruntime`` (a bundle precision), ``onnx-file``
    (``bundle`` is the path of a bare ONNX file, run by ONNX Runtime's CPU provider), ``pytorch``,
    ``tensorrt``, ``openvino`` or ``mobile``."""

    name: str
    kind: str
    bundle: str
    precision: str = "fp32"
    threads: int = 1
    spinning: bool = False
    hint: str = "f32"

    def to_json(self) -> Dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class BenchResult:
    """Per engine and batch size: the rounds and their medians."""

    engines: List[str]
    batch_sizes: List[int]
    rounds: List[Dict[str, Any]] = field(default_factory=list)
    summary: List[Dict[str, Any]] = field(default_factory=list)
    gemm_gflops: Optional[float] = None
    load_before: Optional[List[float]] = None
    load_after: Optional[List[float]] = None
    cpu_count: int = 0
    not_run: Dict[str, str] = field(default_factory=dict)

    def to_json(self) -> Dict[str, Any]:
        return dict(self.__dict__)


def _worker_code() -> str:
    return "from docedge.calibration.benchmark import _worker_main; _worker_main()"


def run_benchmark(engines: Sequence[EngineSpec], batch_sizes: Sequence[int] = (1, 32),
                  rounds: int = 5, seconds: float = 1.0, gemm: bool = True,
                  timeout_s: float = 300.0) -> BenchResult:  # fmt: skip
    """Time every engine at every batch size, ``rounds`` interleaved rounds of one process per
    (engine, round), each timing for about ``seconds`` per batch size."""
    res = BenchResult([e.name for e in engines], list(batch_sizes), cpu_count=os.cpu_count() or 1)
    res.load_before = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    if gemm:
        res.gemm_gflops = _run_worker({"task": "gemm", "threads": 1}, timeout_s).get("gflops")
    for r in range(rounds):
        order = list(engines[r % len(engines):]) + list(engines[: r % len(engines)])
        for spec in order:
            out = _run_worker({"task": "engine", "spec": spec.to_json(),
                               "batch_sizes": list(batch_sizes), "seconds": seconds}, timeout_s)
            for row in out.get("rows", []):
                res.rounds.append({"round": r, "engine": spec.name, **row})
            if "error" in out:
                res.rounds.append({"round": r, "engine": spec.name, "error": out["error"]})
            logger.info("bench round %d/%d: %s done", r + 1, rounds, spec.name)
    res.load_after = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    res.summary = summarize(res.rounds, res.gemm_gflops)
    return res


def summarize(rows: Sequence[Dict[str, Any]], gemm_gflops: Optional[float]) -> List[Dict[str, Any]]:
    """Median and (min, max) over rounds of wall and CPU time per image, per engine and batch."""
    out: List[Dict[str, Any]] = []
    keys = sorted({(r["engine"], r["batch"]) for r in rows if "batch" in r},
                  key=lambda k: (k[1], k[0]))  # fmt: skip
    for engine, batch in keys:
        mine = [r for r in rows if r.get("engine") == engine and r.get("batch") == batch]
        wall = [r["wall_ms_per_image"] for r in mine]
        cpu = [r["cpu_ms_per_image"] for r in mine]
        med_cpu = statistics.median(cpu)
        row = {"engine": engine, "batch": batch, "rounds": len(mine),
               "wall_ms_per_image": statistics.median(wall), "wall_min": min(wall),
               "wall_max": max(wall), "cpu_ms_per_image": med_cpu, "cpu_min": min(cpu),
               "cpu_max": max(cpu), "images_per_cpu_s": 1000.0 / med_cpu if med_cpu else None,
               "images_per_s": 1000.0 / statistics.median(wall)}  # fmt: skip
        if gemm_gflops and med_cpu:
            row["gemm_peak_fraction"] = (FLOP_PER_IMAGE / (med_cpu / 1000.0)) / (gemm_gflops * 1e9)
        out.append(row)
    _add_ratios(out, "onnxruntime-fp32", "onnxruntime", ("cpu",))
    _add_ratios(out, "pytorch-eager", "pytorch", ("cpu", "wall"))
    return out


def _add_ratios(rows: List[Dict[str, Any]], baseline: str, name: str,
                measures: Sequence[str]) -> None:  # fmt: skip
    """``<measure>_speedup_vs_<name>`` on every row: the ``baseline`` engine's median time per
    image at the same batch size over the row's (rows of a batch without the baseline get none)."""
    for batch in {r["batch"] for r in rows}:
        base = next((r for r in rows if r["batch"] == batch and r["engine"] == baseline), None)
        if base is None:
            continue
        for r in rows:
            if r["batch"] == batch:
                for m in measures:
                    r[f"{m}_speedup_vs_{name}"] = base[f"{m}_ms_per_image"] / r[f"{m}_ms_per_image"]


def _run_worker(job: Dict[str, Any], timeout_s: float) -> Dict[str, Any]:
    env = dict(os.environ, DOCEDGE_BENCH_JOB=json.dumps(job))
    if job.get("threads"):
        env.setdefault("OMP_NUM_THREADS", str(job["threads"]))
    try:
        proc = subprocess.run([sys.executable, "-c", _worker_code()], env=env, text=True,
                              capture_output=True, timeout=timeout_s)  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:g} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["worker failed"])[-1][:300]}
    result: Dict[str, Any] = json.loads(lines[-1])
    return result


# --- the worker (runs in its own process) ------------------------------------------------------
def _time_batches(fn: Any, x: Any, batch: int, seconds: float) -> Dict[str, Any]:
    import time

    for _ in range(3):
        fn(x)
    n, w0, c0 = 0, time.perf_counter(), time.process_time()
    while True:
        fn(x)
        n += 1
        if time.perf_counter() - w0 >= seconds and n >= 3:
            break
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return {"batch": batch, "calls": n, "wall_ms_per_image": 1000.0 * wall / (n * batch),
            "cpu_ms_per_image": 1000.0 * cpu / (n * batch)}  # fmt: skip


def _engine_fn(spec: Dict[str, Any]) -> Any:
    if spec["kind"] == "pytorch":
        import torch

        from docedge.export.reference import reference_for_bundle
        from docedge.runtime.bundle import load_bundle

        torch.set_num_threads(max(1, int(spec["threads"])))
        ref = reference_for_bundle(load_bundle(spec["bundle"]).model, strict=False)
        if ref is None:
            raise RuntimeError("no PyTorch reference for this bundle")
        net = ref.net.eval()

        def run_torch(x: Any) -> Any:
            with torch.inference_mode():
                return net(torch.from_numpy(x))

        return run_torch
    from docedge.runtime.embedder import Embedder

    if spec["kind"] == "onnx-file":
        from docedge.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(spec["bundle"], intra_op_threads=int(spec["threads"]),
                                  allow_spinning=bool(spec["spinning"])).run  # fmt: skip
    if spec["kind"] == "tensorrt":
        return Embedder(spec["bundle"], precision=spec["precision"], backend="tensorrt").run_tensor
    if spec["kind"] == "mobile":
        from docedge.export.formats.run import MobileBackend, mobile_runs
        from docedge.runtime.bundle import load_bundle

        for name, rec, factory in mobile_runs(load_bundle(spec["bundle"])):
            if name == spec["precision"]:
                return MobileBackend.from_factory(name, rec, factory).run
        raise RuntimeError(f"no converted artifact {spec['precision']!r} in the bundle")
    if spec["kind"] == "openvino":
        return Embedder(spec["bundle"], precision=spec["precision"], backend="openvino",
                        batch_size=256, threads=int(spec["threads"]),
                        inference_precision=spec.get("hint", "f32")).backend.run
    emb = Embedder(spec["bundle"], precision=spec["precision"], batch_size=256,
                   intra_op_threads=int(spec["threads"]), allow_spinning=bool(spec["spinning"]))
    return emb.backend.run


def _worker_main() -> None:
    import numpy as np

    job = json.loads(os.environ["DOCEDGE_BENCH_JOB"])
    if job["task"] == "gemm":
        a = np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32)
        import time

        a @ a
        n, t0 = 0, time.process_time()
        while time.process_time() - t0 < 0.5:
            a @ a
            n += 1
        print(json.dumps({"gflops": 2 * 1024**3 * n / (time.process_time() - t0) / 1e9}))
        return
    spec = job["spec"]
    try:
        fn = _engine_fn(spec)
        rng = np.random.default_rng(0)
        rows = [_time_batches(fn, rng.random((b, 3, 128, 128), dtype=np.float32), b, job["seconds"])
                for b in job["batch_sizes"]]  # fmt: skip
    except Exception as e:  # reported as this engine's error, the benchmark goes on
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        return
    print(json.dumps({"rows": rows}))


def default_engines(bundle: str, precisions: Sequence[str], threads: int = 1,
                    pytorch: bool = True, tensorrt: bool = False,
                    openvino: bool = False) -> List[EngineSpec]:  # fmt: skip
    """ONNX Runtime per precision (spinning off), TensorRT engines on request, OpenVINO on
    request (f32 and bf16 hints on the fp32 ONNX, and every gated OpenVINO IR artifact of the
    bundle: ``openvino-bf16-ir``, ``openvino-int8-ir``), and PyTorch eager when available."""
    out = [EngineSpec(f"onnxruntime-{p}", "onnxruntime", bundle, p, threads) for p in precisions]
    if tensorrt:
        out += [EngineSpec(f"tensorrt-{p}", "tensorrt", bundle, p, 0) for p in precisions]
    if openvino:
        out += [EngineSpec("openvino-f32", "openvino", bundle, "fp32", threads, hint="f32"),
                EngineSpec("openvino-bf16", "openvino", bundle, "fp32", threads, hint="bf16")]
        from docedge.runtime.bundle import load_bundle

        for a in load_bundle(bundle, verify=False).artifacts:
            if a.format == "openvino" and not a.variant:
                out.append(EngineSpec(f"openvino-{a.precision}-ir", "openvino", bundle, a.precision, threads,
                                      hint=str(a.record.get("inference_precision_hint", "f32"))))
    if pytorch:
        out.append(EngineSpec("pytorch-eager", "pytorch", bundle, "fp32", threads))
    return out


def compare_engines(bundle: str, threads: int = 1) -> Tuple[List[EngineSpec], Dict[str, str]]:
    """``docedge bench --compare``: the bundle's fp32 ONNX in every docedge backend this machine
    can run (ONNX Runtime, OpenVINO with f32 pinned, TensorRT) and PyTorch eager, for one table.
    Returns the engines and, for each engine that cannot run here, the reason (reported as not
    run, never dropped silently)."""
    import importlib.util

    engines = [EngineSpec("onnxruntime-fp32", "onnxruntime", bundle, "fp32", threads)]
    not_run: Dict[str, str] = {}
    if importlib.util.find_spec("openvino") is not None:
        engines.append(EngineSpec("openvino-f32", "openvino", bundle, "fp32", threads, hint="f32"))
    else:
        not_run["openvino-f32"] = "OpenVINO is not installed: pip install 'docedge[openvino]'"
    trt = _tensorrt_unavailable()
    if trt is None:
        engines.append(EngineSpec("tensorrt-fp32", "tensorrt", bundle, "fp32", 0))
    else:
        not_run["tensorrt-fp32"] = trt
    if importlib.util.find_spec("torch") is not None:
        engines.append(EngineSpec("pytorch-eager", "pytorch", bundle, "fp32", threads))
    else:
        not_run["pytorch-eager"] = "PyTorch is not installed: pip install 'docedge[export]'"
    return engines, not_run


def _tensorrt_unavailable() -> Optional[str]:
    """None when TensorRT and a CUDA device can be used here, else why not."""
    try:
        import tensorrt as trt
    except ImportError:
        return "TensorRT is not installed (docs/tensorrt.md)"
    if not hasattr(trt, "Builder"):
        return "tensorrt has no library here (type stubs only)"
    from docedge.runtime.backends.tensorrt.builder import gpu_device
    from docedge.runtime.errors import BackendUnavailableError

    try:
        gpu_device(0)
    except BackendUnavailableError as e:
        return str(e)
    return None


def mobile_engines(bundle: str) -> List[EngineSpec]:
    """One engine per converted mobile/edge artifact of the bundle (``precision`` holds the
    artifact's parity name, e.g. ``fp16/tflite``)."""
    from docedge.export.formats.run import mobile_runs
    from docedge.runtime.bundle import load_bundle

    return [EngineSpec(name, "mobile", bundle, name, 1) for name, _r, _f in
            mobile_runs(load_bundle(bundle))]  # fmt: skip


def artifact_table(bundle_dir: str, images: str, batch_sizes: Sequence[int] = (1, 32),
                   rounds: int = 3, seconds: float = 0.5) -> List[Dict[str, Any]]:  # fmt: skip
    """One row per artifact (ONNX precisions and converted formats): format, precision, size,
    cosine to the reference and TPR@1e-2 (from ``docedge parity`` on ``images``), and CPU
    images/s per batch size (from :func:`run_benchmark`; batch-1-only files at batch 1)."""
    from docedge.runtime.bundle import load_bundle

    from .parity import run_parity

    bundle = load_bundle(bundle_dir)
    par = run_parity(bundle_dir, images, tensorrt=False, progress=False)
    engines = default_engines(str(bundle.path), bundle.precisions, 1, pytorch=False)
    engines += mobile_engines(str(bundle.path))
    bench = run_benchmark(engines, batch_sizes, rounds=rounds, seconds=seconds, gemm=False)
    speed = {(r["engine"], r["batch"]): r.get("images_per_cpu_s") for r in bench.summary}
    rows = []
    for a in par.artifacts:
        if a.get("error"):
            continue
        engine = (f"onnxruntime-{a['precision']}" if a["name"].endswith("onnxruntime-cpu")
                  else a["name"])  # fmt: skip
        rec = next((x.record for x in bundle.artifacts if x.file == a["artifact"]["file"]), {})
        size = int(rec.get("size", 0)) + sum(int(f.get("size", 0)) for f in rec.get("files") or [])
        rows.append({"artifact": a["name"], "file": a["artifact"]["file"],
                     "format": a["artifact"].get("format", "onnx"), "precision": a["precision"],
                     "size_bytes": size, "cos_min": a["embedding"]["cos_min"],
                     "cos_mean": a["embedding"]["cos_mean"],
                     "decision_agreement": a["decision_agreement"],
                     "tpr_at_1e-2": (a.get("tpr_at_fpr") or {}).get("1e-2"),
                     **{f"images_per_cpu_s_b{b}": speed.get((engine, b)) for b in batch_sizes}})
    for s_ in par.skipped:
        rows.append({"artifact": s_["name"], "not_run": s_["reason"]})
    return rows


def markdown(res: BenchResult) -> str:
    """The summary as a Markdown table (medians; spread in brackets)."""
    lines = [f"CPU count {res.cpu_count}; load average before {res.load_before}, after "
             f"{res.load_after}; float32 GEMM peak {res.gemm_gflops or float('nan'):.1f} GFLOP/s "
             "(one thread)", "",
             "| engine | batch | CPU ms/image (min-max) | wall ms/image (min-max) | images/CPU-s | "
             "GEMM peak | vs PyTorch (CPU) | vs ONNX Runtime fp32 (CPU) |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in res.summary:
        frac = r.get("gemm_peak_fraction")
        vs = r.get("cpu_speedup_vs_pytorch")
        vs_ort = r.get("cpu_speedup_vs_onnxruntime")
        lines.append(f"| {r['engine']} | {r['batch']} | {r['cpu_ms_per_image']:.3f} "
                     f"({r['cpu_min']:.3f}-{r['cpu_max']:.3f}) | {r['wall_ms_per_image']:.3f} "
                     f"({r['wall_min']:.3f}-{r['wall_max']:.3f}) | {r['images_per_cpu_s']:.0f} | "
                     f"{'' if frac is None else f'{frac:.0%}'} | "
                     f"{'' if vs is None else f'{vs:.2f}x'} | "
                     f"{'' if vs_ort is None else f'{vs_ort:.2f}x'} |")  # fmt: skip
    errors = sorted({f"{r['engine']}: {r['error']}" for r in res.rounds if "error" in r})
    if errors:
        lines += ["", "Engines that failed: " + "; ".join(errors)]
    if res.not_run:
        lines += ["", "Not run: " + "; ".join(f"{k}: {v}" for k, v in res.not_run.items())]
    return "\n".join(lines) + "\n"


def write_benchmark(res: BenchResult, out: Path) -> Dict[str, str]:
    """``bench.json`` and ``bench.md`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(res.to_json(), indent=2) + "\n")
    (out / "bench.md").write_text(markdown(res))
    return {"json": str(out / "bench.json"), "markdown": str(out / "bench.md")}
