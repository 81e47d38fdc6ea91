"""End to end against DocClassifier's own runtime on the same ONNX file and the same ONNX Runtime
version: JPEG files in, a label per file out, ``--types`` registered document types.

    python samples/e2e_vs_docclassifier.py --peer-python /path/to/venv/bin/python --out e2e/

The peer interpreter must have ``docclassifier-docsaid`` (and ``capybara-docsaid`` < 1) and the
same ``onnxruntime`` version as this one (checked; a mismatch is an error). DocClassifier
downloads its model at start; here its checkpoint folder is pointed at a temporary copy of the
bundle's fp32 ONNX under the file name it expects, so both runtimes run the same bytes.

Each side runs in its own process, ``--rounds`` interleaved rounds with the order alternating;
per round: start-up (model + registration of every type: DocClassifier embeds its register
folder, docedge opens a gallery built from the same folder), then every query file classified
(DocClassifier: ``capybara.imread`` + ``model(img)`` per file, as its README does; docedge:
``Classifier.classify(paths)``, which decodes and pre-processes batch i+1 while batch i runs).
Reported: wall and CPU ms per image (median, min-max), start-up seconds, agreement of the labels,
and docedge's single-threaded stage times (decode, pre-process, embed at batch 32) whose sum is the
limit one core can reach. JSON + Markdown + PNG into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import cv2
import numpy as np

log = logging.getLogger("e2e")

#: DocClassifier 0.10.1's file name for its 20240326 model (margin_based/infer.py).
PEER_MODEL_NAME = "lcnet050_cosface_f256_r128_squeeze_lbn_imagenet_finetune_20240326_fp32.onnx"

PEER_WORKER = r"""
import json, os, sys, time
import numpy as np
job = json.loads(os.environ["E2E_JOB"])
import capybara as cb
import onnxruntime as ort
from docclassifier.margin_based import infer
infer.DIR = cb.Path(job["peer_dir"])          # its ckpt/ holds the bundle's fp32 ONNX
from docclassifier import DocClassifier
c0, w0 = time.process_time(), time.perf_counter()
model = DocClassifier(register_root=job["register"], threshold=job["threshold"])
start = {"wall_s": time.perf_counter() - w0, "cpu_s": time.process_time() - c0}
c0, w0 = time.process_time(), time.perf_counter()
labels = []
for p in job["queries"]:
    label, score = model(cb.imread(p))
    labels.append(label)
print(json.dumps({"start": start, "wall_s": time.perf_counter() - w0,
                  "cpu_s": time.process_time() - c0, "labels": labels, "ort": ort.__version__}))
"""

OURS_WORKER = r"""
import json, os, time
job = json.loads(os.environ["E2E_JOB"])
import onnxruntime as ort
from docedge.runtime.classifier import Classifier
c0, w0 = time.process_time(), time.perf_counter()
clf = Classifier(job["bundle"], job["gallery"], threshold=job["threshold"], top_k=2)
start = {"wall_s": time.perf_counter() - w0, "cpu_s": time.process_time() - c0}
c0, w0 = time.process_time(), time.perf_counter()
decisions = clf.classify(job["queries"])
out = {"start": start, "wall_s": time.perf_counter() - w0, "cpu_s": time.process_time() - c0,
       "labels": [d.label for d in decisions], "ort": ort.__version__}
print(json.dumps(out))
"""


def make_data(root: Path, types: int, queries: int, seed: int = 0) -> Dict[str, Any]:
    """``register/<type>.jpg`` (one clean render per type, DocClassifier's layout) and
    ``queries/q<i>.jpg`` (captures of other instances of the first types), 1280 px long side."""
    from docedge.synth.captures import capture
    from docedge.synth.documents import DocumentType, render

    reg, qd = root / "register", root / "queries"
    reg.mkdir(parents=True)
    qd.mkdir()
    rng = np.random.default_rng(seed)
    truth = []
    for t in range(types):
        cv2.imwrite(str(reg / f"type{t:04d}.jpg"), render(DocumentType.from_id(t), 0, 1280))
    paths = []
    for i in range(queries):
        t = i % types
        img = capture(render(DocumentType.from_id(t), 100 + i, 1280), rng, 0.6)
        p = qd / f"q{i:04d}.jpg"
        cv2.imwrite(str(p), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(str(p))
        truth.append(f"type{t:04d}")
    return {"register": str(reg), "queries": paths, "truth": truth}


def build_gallery(bundle: Path, register: Path, out: Path) -> None:
    from docedge.runtime.embedder import Embedder
    from docedge.runtime.gallery import Gallery

    emb = Embedder(bundle)
    files = sorted(register.glob("*.jpg"))
    res = emb.embed_many([str(f) for f in files])
    g = Gallery.create(out, emb.bundle.fingerprint("fp32"))
    g.add(res.embeddings, [f.stem for f in files])


def stage_times(bundle: Path, queries: List[str]) -> Dict[str, float]:
    """docedge's stages on one thread, ms per image: read+decode, pre-process, embed (batch 32)."""
    from docedge.runtime.embedder import Embedder
    from docedge.runtime.preprocess import preprocess_bgr

    emb = Embedder(bundle, intra_op_threads=1)
    blobs = [Path(q).read_bytes() for q in queries]
    c0 = time.process_time()
    imgs = [cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR) for b in blobs]
    decode = (time.process_time() - c0) / len(blobs) * 1000
    c0 = time.process_time()
    x = np.stack([preprocess_bgr(im) for im in imgs])
    pre = (time.process_time() - c0) / len(blobs) * 1000
    emb.run_tensor(x[:32])
    c0 = time.process_time()
    emb.run_tensor(x)
    run = (time.process_time() - c0) / len(blobs) * 1000
    return {"decode_ms": decode, "preprocess_ms": pre, "embed_ms": run,
            "sum_ms": decode + pre + run}  # fmt: skip


def run_worker(python: str, code: str, job: Dict[str, Any]) -> Dict[str, Any]:
    env = dict(os.environ, E2E_JOB=json.dumps(job), OMP_WAIT_POLICY="PASSIVE")
    if python != sys.executable:  # the peer's own environment, not this checkout's
        env.pop("PYTHONPATH", None)
    proc = subprocess.run([python, "-c", code], env=env, capture_output=True, text=True,
                          timeout=900)  # fmt: skip
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{python} worker failed: {proc.stderr.strip()[-800:]}")
    out: Dict[str, Any] = json.loads(lines[-1])
    return out


def summary(runs: List[Dict[str, Any]], n: int) -> Dict[str, Any]:
    wall = [r["wall_s"] / n * 1000 for r in runs]
    cpu = [r["cpu_s"] / n * 1000 for r in runs]
    st = [r["start"]["wall_s"] for r in runs]
    return {"wall_ms": statistics.median(wall), "wall_min": min(wall), "wall_max": max(wall),
            "cpu_ms": statistics.median(cpu), "cpu_min": min(cpu), "cpu_max": max(cpu),
            "start_s": statistics.median(st), "start_min": min(st), "start_max": max(st)}  # fmt: skip


def plot(res: Dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    names = ["DocClassifier", "docedge"]
    for i, key in enumerate(("peer", "docedge")):
        s = res[key]
        ax.barh([i + 0.2], [s["wall_ms"]], 0.4, color="C0", label="wall" if i == 0 else None,
                xerr=[[s["wall_ms"] - s["wall_min"]], [s["wall_max"] - s["wall_ms"]]])
        ax.barh([i - 0.2], [s["cpu_ms"]], 0.4, color="C1", label="CPU" if i == 0 else None,
                xerr=[[s["cpu_ms"] - s["cpu_min"]], [s["cpu_max"] - s["cpu_ms"]]])
    ax.axvline(res["stages"]["sum_ms"], color="k", ls="--", label="sum of stages (1 core)")
    ax.axvline(res["stages"]["sum_ms"] / (res["cpus"] or 1), color="k", ls=":",
               label=f"sum of stages / {res['cpus']} cores")
    ax.set_yticks([0, 1], names)
    ax.set_xlabel("ms per image, end to end (median, min-max)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--peer-python", required=True, help="interpreter with docclassifier-docsaid")
    p.add_argument("--bundle", type=Path, help="bundle (default: the embedded demo bundle)")
    p.add_argument("--types", type=int, default=400)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threshold", type=float, default=0.5, help="score threshold for both")
    p.add_argument("--out", type=Path, default=Path("e2e_out"))
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        bundle = a.bundle
        if bundle is None:
            from docedge.calibration.pipeline import make_bundle
            from docedge.export.reference import load_reference

            bundle = tmp / "bundle"
            make_bundle(bundle, load_reference(), ("fp32",), progress=False)
        log.info("data: %d types, %d queries", a.types, a.queries)
        data = make_data(tmp / "data", a.types, a.queries)
        build_gallery(bundle, Path(data["register"]), tmp / "g.gal")
        peer_dir = tmp / "peer"
        (peer_dir / "ckpt").mkdir(parents=True)
        os.symlink(Path(bundle).resolve() / "model_fp32.onnx", peer_dir / "ckpt" / PEER_MODEL_NAME)
        job = {"register": data["register"], "queries": data["queries"],
               "threshold": a.threshold, "peer_dir": str(peer_dir), "bundle": str(bundle),
               "gallery": str(tmp / "g.gal")}  # fmt: skip
        runs: Dict[str, List[Dict[str, Any]]] = {"peer": [], "docedge": []}
        for r in range(a.rounds):
            order = ["peer", "docedge"] if r % 2 == 0 else ["docedge", "peer"]
            for side in order:
                if side == "peer":
                    out = run_worker(a.peer_python, PEER_WORKER, job)
                else:
                    out = run_worker(sys.executable, OURS_WORKER, job)
                runs[side].append(out)
                log.info("round %d/%d %s: %.3f ms/image wall", r + 1, a.rounds, side,
                         out["wall_s"] / a.queries * 1000)  # fmt: skip
        if runs["peer"][0]["ort"] != runs["docedge"][0]["ort"]:
            raise SystemExit(f"ONNX Runtime differs: peer {runs['peer'][0]['ort']}, docedge "
                             f"{runs['docedge'][0]['ort']}; install the same version")  # fmt: skip
        stages = stage_times(Path(bundle), data["queries"])
    n = a.queries
    res: Dict[str, Any] = {"peer": summary(runs["peer"], n), "docedge": summary(runs["docedge"], n),
                           "stages": stages, "types": a.types, "queries": n, "rounds": a.rounds,
                           "onnxruntime": runs["docedge"][0]["ort"], "cpus": os.cpu_count(),
                           "load": list(os.getloadavg())}  # fmt: skip
    ours, peer = runs["docedge"][0]["labels"], runs["peer"][0]["labels"]
    res["label_agreement"] = float(np.mean([x == y for x, y in zip(ours, peer)]))
    res["docedge_top1"] = float(np.mean([x == t for x, t in zip(ours, data["truth"])]))
    res["speedup_wall"] = res["peer"]["wall_ms"] / res["docedge"]["wall_ms"]
    res["speedup_cpu"] = res["peer"]["cpu_ms"] / res["docedge"]["cpu_ms"]
    res["speedup_start"] = res["peer"]["start_s"] / res["docedge"]["start_s"]
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "e2e.json").write_text(json.dumps(res, indent=2) + "\n")
    md = [f"{n} JPEG queries, {a.types} registered types, ONNX Runtime {res['onnxruntime']} on "
          f"both sides, {res['cpus']} CPUs, load average {res['load']}; {a.rounds} interleaved "
          "rounds, one process per side and round.", "",
          "| runtime | wall ms/image (min-max) | CPU ms/image (min-max) | start-up s (min-max) |",
          "|---|---|---|---|"]  # fmt: skip
    for key, name in (("peer", "DocClassifier 0.10.1"), ("docedge", "docedge Classifier")):
        s = res[key]
        md.append(f"| {name} | {s['wall_ms']:.3f} ({s['wall_min']:.3f}-{s['wall_max']:.3f}) | "
                  f"{s['cpu_ms']:.3f} ({s['cpu_min']:.3f}-{s['cpu_max']:.3f}) | "
                  f"{s['start_s']:.3f} ({s['start_min']:.3f}-{s['start_max']:.3f}) |")  # fmt: skip
    st = stages
    md += ["", f"docedge speed-up: wall {res['speedup_wall']:.2f}x, CPU {res['speedup_cpu']:.2f}x, "
           f"start-up {res['speedup_start']:.2f}x; same label on {res['label_agreement']:.1%} of "
           "queries.", "", f"Stages on one thread (ms/image): decode {st['decode_ms']:.3f}, "
           f"pre-process {st['preprocess_ms']:.3f}, embed {st['embed_ms']:.3f}; sum "
           f"{st['sum_ms']:.3f}: the wall-time limit on one core; on {res['cpus']} idle cores, "
           f"with decoding spread over them, {st['sum_ms'] / (res['cpus'] or 1):.3f}."]  # fmt: skip
    (a.out / "e2e.md").write_text("\n".join(md) + "\n")
    plot(res, a.out / "e2e.png")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
