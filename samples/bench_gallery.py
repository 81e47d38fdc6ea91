"""Gallery search and open times beside the memory-bandwidth floor and the GEMM peak.

    python samples/bench_gallery.py                       # 10k, 100k, 1M entries; fp16, fp32
    python samples/bench_gallery.py --sizes 10000,100000 --queries 1,32 --json
    python samples/bench_gallery.py --bundle BUNDLE       # + the ONNX Runtime session's cost

Search, for each size, dtype and query batch: one pass over the embedding bytes (the floor,
:func:`docedge.runtime.search.read_floor`), the gallery's ``top_k`` (5 rows) and
``Classifier.decide`` (what ``docedge classify`` runs: 5 labels by their best exemplar, margin,
parents, entry ids) over a random unit-vector gallery with ``--rows-per-label`` exemplars per
label, queries equal to gallery rows. Interleaved rounds; medians and minima in milliseconds
(minima are the better estimate on a busy machine). Multi-query searches are also given in
GFLOP/s beside the float32 GEMM peak measured in the same run (same block shape, one BLAS
thread per call, 1 thread and the search's thread count).

Open, for each size up to ``--open-max``: a float16 gallery file written once (labels
``type<t>/v<0..6>`` with parent ``type<t>``, ``--rows-per-label`` rows each, full records),
then opened the way a Classifier opens it (fingerprint check, labels section, embedding
checksum, search index) in a fresh process each round: wall and CPU milliseconds, and the
process's resident memory before and after (``VmRSS``), beside the file size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List, Optional

import numpy as np

from docedge.runtime import search
from docedge.runtime.classifier import _Index, decide
from docedge.runtime.thresholds import OperatingPoint

FP = {"bench": "1"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--queries", default="1,32", help="query batch sizes (comma-separated)")
    p.add_argument("--dtypes", default="float16,float32")
    p.add_argument("--threads", type=int, help="search threads (default: automatic)")
    p.add_argument("--rows-per-label", type=int, default=10)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--open-max", type=int, default=100_000, help="largest size for open times")
    p.add_argument("--bundle", help="also time the ONNX Runtime session of this bundle")
    p.add_argument("--child-open", help=argparse.SUPPRESS)
    p.add_argument("--child-session", help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.child_open:
        print(json.dumps(_child_open(Path(args.child_open))))
        return 0
    if args.child_session:
        print(json.dumps(_child_session(args.child_session)))
        return 0
    sizes = [int(s) for s in args.sizes.split(",") if s]
    queries = [int(q) for q in args.queries.split(",") if q]
    dtypes = [d for d in args.dtypes.split(",") if d]
    report: Dict[str, Any] = {"cpus": os.cpu_count(), "load_before": os.getloadavg()}
    peak_threads = max(search.search_threads(1_000_000, 256, "float32", 32), 1)
    report["gemm_peak_gflops"] = {"1": search.gemm_peak_gflops(1),
                                  str(peak_threads): search.gemm_peak_gflops(peak_threads)}  # fmt: skip
    if not args.json:
        print(f"{os.cpu_count()} CPUs, load {report['load_before'][0]:.2f}; float32 GEMM peak "
              + ", ".join(f"{v:.0f} GFLOP/s ({k} thr)"
                          for k, v in report["gemm_peak_gflops"].items()))  # fmt: skip
    rows = []
    for n in sizes:
        for dtype in dtypes:
            g = search.random_gallery(n, dtype)
            index = _fake_index(g, args.rows_per_label)
            for q in queries:
                rows.append(_bench_search(g, index, q, args.repeats, args.threads, report))
                if not args.json:
                    _print_search(rows[-1], first=len(rows) == 1)
            del g, index
    report["search"] = rows
    opens = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            if n <= args.open_max:
                opens.append(_bench_open(n, Path(tmp), args.repeats, args.rows_per_label))
                if not args.json:
                    _print_open(opens[-1], first=len(opens) == 1)
    report["open"] = opens
    if args.bundle:
        report["onnxruntime_session"] = _bench_session(args.bundle, args.repeats)
        if not args.json:
            s = report["onnxruntime_session"]
            print(f"\nONNX Runtime session (Embedder, fp32): {s['ms']:.1f} ms median, "
                  f"{s['min_ms']:.1f} min, RSS +{s['rss_delta_mb']:.1f} MB")  # fmt: skip
    report["load_after"] = os.getloadavg()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"\nload average before {report['load_before'][0]:.2f}, "
              f"after {report['load_after'][0]:.2f}")  # fmt: skip
    return 0


def _fake_index(g: np.ndarray, rows_per_label: int) -> _Index:
    """A search index over an in-memory gallery: row ``i`` has label ``i % (n / r)``."""
    n = g.shape[0]
    n_labels = max(1, n // max(1, rows_per_label))
    label_ids = np.arange(n, dtype=np.int64) % n_labels
    labels = [f"type{i}" for i in range(n_labels)]
    where = SimpleNamespace(path="in-memory gallery")  # what error messages name
    return _Index(where, g, labels, label_ids, [None] * n_labels,  # type: ignore[arg-type]
                  np.arange(n, dtype=np.int64), (0, 0, 0))  # fmt: skip


def _bench_search(g: np.ndarray, index: _Index, nq: int, repeats: int,
                  threads: Optional[int], report: Dict[str, Any]) -> Dict[str, Any]:  # fmt: skip
    n, dim = g.shape
    q = np.asarray(g[:nq], np.float32)
    op = OperatingPoint(0.7, None, None, "explicit")
    if threads:
        os.environ[search.THREADS_ENV] = str(threads)
    t = search._timed({"floor": lambda: search.read_floor(g),
                       "top_k": lambda: search.top_k(q, g, 5),
                       "decide": lambda: decide(index, op, 5, q)}, repeats)  # fmt: skip
    thr = search.search_threads(n, dim, g.dtype, nq)
    out: Dict[str, Any] = {"entries": n, "dtype": str(g.dtype), "queries": nq, "threads": thr,
                           "gallery_mb": g.nbytes / 2**20}  # fmt: skip
    for name, v in t.items():
        out[f"{name}_ms"] = float(np.median(v))
        out[f"{name}_min_ms"] = float(v.min())
    out["decide_vs_top_k"] = out["decide_ms"] / out["top_k_ms"]
    out["decide_vs_top_k_min"] = out["decide_min_ms"] / out["top_k_min_ms"]
    out["top_k_vs_floor"] = out["top_k_ms"] / out["floor_ms"]
    out["top_k_vs_floor_min"] = out["top_k_min_ms"] / out["floor_min_ms"]
    flop = 2.0 * n * dim * nq
    out["decide_gflops"] = flop / (out["decide_min_ms"] / 1000) / 1e9
    peaks = report["gemm_peak_gflops"]
    peak = peaks.get(str(thr), peaks["1"] * thr)
    out["decide_vs_peak"] = out["decide_gflops"] / peak
    return out


def _write(n: int, folder: Path, rows_per_label: int) -> Path:
    from docedge.runtime.gallery import _commit, _now

    path = folder / f"g{n}.gal"
    g = search.random_gallery(n, "float32")
    types = max(1, n // max(1, 7 * rows_per_label))  # labels type<t>/v<0..6>, parent type<t>
    lab = [i % (7 * types) for i in range(n)]
    meta = {"fingerprint": FP, "created": _now(), "updated": _now(), "next_id": n}
    cols: Dict[str, List[Any]] = {
        "id": list(range(n)),
        "label": [f"type{c // 7}/v{c % 7}" for c in lab],
        "parent": [f"type{c // 7}" for c in lab],
        "source": [f"/register/type{c // 7}/v{i}.jpg" for i, c in enumerate(lab)],
        "sha256": [f"{i:064x}" for i in range(n)],
        "added": [_now()] * n,
        "meta": [{"origin": "register:/register"}] * n,
    }
    _commit(path, meta, cols, [g], n, 256, "float16")
    return path


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _child_open(path: Path) -> Dict[str, Any]:
    """In a fresh process: open ``path`` as a Classifier does; times and resident memory."""
    from docedge.runtime.classifier import load_index
    from docedge.runtime.gallery import Gallery

    rss0 = _rss_mb()
    c0, t0 = time.process_time(), time.perf_counter()
    g = Gallery.open(path, expect_fingerprint=FP)
    t1 = time.perf_counter()
    g.check_embeddings()
    t2 = time.perf_counter()
    index = load_index(g)
    t3, c3 = time.perf_counter(), time.process_time()
    assert len(index.label_ids) == len(g)
    return {"open_ms": 1000 * (t1 - t0), "checksum_ms": 1000 * (t2 - t1),
            "index_ms": 1000 * (t3 - t2), "total_ms": 1000 * (t3 - t0),
            "cpu_ms": 1000 * (c3 - c0), "rss_before_mb": rss0, "rss_after_mb": _rss_mb()}  # fmt: skip


def _bench_open(n: int, folder: Path, repeats: int, rows_per_label: int) -> Dict[str, Any]:
    path = _write(n, folder, rows_per_label)
    cmd = [sys.executable, os.path.abspath(__file__), "--child-open", str(path)]
    runs = []
    for _ in range(repeats + 1):  # first run warms the page cache
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
    runs = runs[1:]
    out: Dict[str, Any] = {"entries": n, "file_mb": path.stat().st_size / 2**20}
    for key in runs[0]:
        v = np.asarray([r[key] for r in runs])
        out[key] = float(np.median(v))
        out[f"{key}_min"] = float(v.min())
    out["rss_delta_mb"] = out["rss_after_mb"] - out["rss_before_mb"]
    out["rss_vs_file"] = out["rss_after_mb"] / out["file_mb"]
    path.unlink()
    return out


def _child_session(bundle: str) -> Dict[str, Any]:
    """In a fresh process: load ``bundle`` and create its fp32 Embedder (ONNX Runtime)."""
    from docedge.runtime import Embedder, load_bundle

    b = load_bundle(bundle)
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    Embedder(b)
    return {"ms": 1000 * (time.perf_counter() - t0), "rss_delta_mb": _rss_mb() - rss0}


def _bench_session(bundle: str, repeats: int) -> Dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), "--child-session", bundle]
    runs = []
    for _ in range(repeats):
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
    ms = np.asarray([r["ms"] for r in runs])
    return {"ms": float(np.median(ms)), "min_ms": float(ms.min()),
            "rss_delta_mb": float(np.median([r["rss_delta_mb"] for r in runs]))}  # fmt: skip


def _print_search(r: Dict[str, Any], first: bool) -> None:
    if first:
        print(f"\n{'entries':>9} {'dtype':>8} {'Q':>3} {'thr':>3} {'MB':>6} {'floor':>13} "
              f"{'top_k':>13} {'decide':>13} {'dec/top':>7} {'top/floor':>9} {'GF/s':>5} "
              f"{'peak':>5}   (ms: median/min; ratios of medians)")  # fmt: skip
    print(f"{r['entries']:>9} {r['dtype']:>8} {r['queries']:>3} {r['threads']:>3} "
          f"{r['gallery_mb']:>6.0f} {r['floor_ms']:>6.1f}/{r['floor_min_ms']:<6.1f} "
          f"{r['top_k_ms']:>6.1f}/{r['top_k_min_ms']:<6.1f} "
          f"{r['decide_ms']:>6.1f}/{r['decide_min_ms']:<6.1f} {r['decide_vs_top_k']:>7.2f} "
          f"{r['top_k_vs_floor']:>9.2f} {r['decide_gflops']:>5.0f} {r['decide_vs_peak']:>5.0%}",
          flush=True)  # fmt: skip


def _print_open(r: Dict[str, Any], first: bool) -> None:
    if first:
        print(f"\n{'open':>9} {'file MB':>8} {'total ms':>12} {'labels':>7} {'checksum':>8} "
              f"{'index':>6} {'CPU ms':>7} {'RSS before':>10} {'after':>6} {'after/file':>10}")
    print(f"{r['entries']:>9} {r['file_mb']:>8.1f} {r['total_ms']:>5.1f}/{r['total_ms_min']:<6.1f} "
          f"{r['open_ms']:>7.1f} {r['checksum_ms']:>8.1f} {r['index_ms']:>6.2f} "
          f"{r['cpu_ms']:>7.1f} {r['rss_before_mb']:>10.1f} {r['rss_after_mb']:>6.1f} "
          f"{r['rss_vs_file']:>10.2f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
