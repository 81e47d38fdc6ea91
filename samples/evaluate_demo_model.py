"""Zero-shot evaluation of demo-model weights, and publication of the shipped weights + card.

Protocol (``PROTOCOL`` below): document types ``0..N-1`` (training uses ids >= 1000, so none of
them was ever seen). Each type is registered with one clean render (instance 0); probes are
``--probes`` simulated captures of other instances (100, 101, ...; capture strength uniform in
[0.3, 1.0], the training distribution). Genuine pairs: each probe vs its own type's exemplar;
impostor pairs: each probe vs every other type's exemplar. Scores (cos+1)/2 in float32, through
the runtime's pre-processing (cv2 bilinear resize to 128x128, BGR, /255). Table rule: at most
floor(FPR*N) false accepts (:mod:`docedge.calibration.roc`). Top-1: the best-scoring exemplar is
the probe's type. A second, harder probe set (strength 1.0 for every capture) is reported too.

    python samples/evaluate_demo_model.py /work/train_demo/final.safetensors
    python samples/evaluate_demo_model.py /work/train_demo/final.safetensors --write
    python samples/evaluate_demo_model.py A.safetensors --compare B.safetensors   # same protocol

``--write`` copies the weights to ``export/weights/demo_lcnet050_synth.safetensors`` (eval-mode
state dict, keys exactly as ``DocEmbeddingNet.state_dict()``) and writes the card
``demo_lcnet050_synth.json`` (recipe from the run's ``train_summary.json``, sha256, protocol,
measured table, AUROC, top-1).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from docedge.calibration.roc import auroc, format_table, tpr_at_fpr_table
from docedge.export.model import ARCHITECTURE, build_model, count_parameters
from docedge.runtime.hashing import sha256_file
from docedge.runtime.preprocess import preprocess_bgr
from docedge.runtime.search import scores
from docedge.synth.captures import capture
from docedge.synth.documents import GENERATOR_VERSION, DocumentType, render

WEIGHTS = Path(__file__).resolve().parents[1] / "export" / "weights"
NAME = "docedge-demo-lcnet050-synth"
PROTOCOL = {
    "types": "ids 0..N-1 (training used ids >= 1000)",
    "register": "1 clean render per type (instance 0)",
    "probes": "captures of instances 100.. (capture strength U(0.3, 1.0), seed 7)",
    "genuine": "probe vs its own type's exemplar",
    "impostor": "probe vs every other type's exemplar",
    "score": "(cos+1)/2, float32, runtime pre-processing",
    "table_rule": "at most floor(FPR*N) false accepts; score > threshold",
}


def load_net(path: Path) -> torch.nn.Module:
    """Eval-mode network from a ``.safetensors`` state dict or a training ``.pt`` checkpoint."""
    net = build_model()
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        net.load_state_dict(load_file(str(path)))
    else:
        state = torch.load(path, weights_only=True)
        net.load_state_dict(state.get("net", state))
    return net.eval()


def embed(net: torch.nn.Module, images: List[np.ndarray], batch: int = 128) -> np.ndarray:
    """Unit embeddings ``(N, 256)`` float32 of BGR uint8 images (runtime pre-processing)."""
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = np.stack([preprocess_bgr(im) for im in images[i : i + batch]])
            out.append(net(torch.from_numpy(x)).numpy())
    return np.concatenate(out).astype(np.float32)


def evaluate(
    net: torch.nn.Module,
    n_types: int = 200,
    probes: int = 5,
    seed: int = 7,
    strength: Optional[float] = None,
) -> Dict[str, Any]:
    """Zero-shot metrics on types ``0..n_types-1`` (see the module docstring).

    ``strength`` None draws each capture's strength from U(0.3, 1.0); a number fixes it.
    """
    rng = np.random.default_rng(seed)
    reg, probe_imgs, labels = [], [], []
    for tid in range(n_types):
        t = DocumentType.from_id(tid)
        reg.append(render(t, 0))
        for k in range(probes):
            s = float(rng.uniform(0.3, 1.0)) if strength is None else strength
            probe_imgs.append(capture(render(t, 100 + k), rng, s))
            labels.append(tid)
    S = scores(embed(net, probe_imgs), embed(net, reg))
    lab = np.asarray(labels)
    genuine = S[np.arange(lab.size), lab]
    mask = np.ones_like(S, bool)
    mask[np.arange(lab.size), lab] = False
    impostor = S[mask]
    return {
        "top1": float((S.argmax(1) == lab).mean()),
        "auroc": auroc(genuine, impostor),
        "rows": tpr_at_fpr_table(genuine, impostor),
        "genuine_pairs": int(genuine.size),
        "impostor_pairs": int(impostor.size),
        "types": n_types,
        "probes_per_type": probes,
        "capture_strength": "U(0.3, 1.0)" if strength is None else strength,
    }


def _tpr_at(rows: List[Dict[str, Any]], fpr: float) -> Optional[float]:
    return next((r["tpr"] for r in rows if r["fpr"] == fpr), None)


def report(name: str, res: Dict[str, Any]) -> str:
    return (f"{name}: zero-shot on {res['types']} held-out types x {res['probes_per_type']} probes "
            f"(strength {res['capture_strength']}): top-1 {res['top1']:.4f}, AUROC "
            f"{res['auroc']:.5f}\n{format_table(res['rows'])}")  # fmt: skip


def card(
    weights: Path, summary: Dict[str, Any], main: Dict[str, Any], hard: Dict[str, Any]
) -> Dict[str, Any]:
    """The published card (``demo_lcnet050_synth.json``)."""
    rec = summary.get("recipe", {})
    schedule = (f"cosine over {rec['steps']} steps" if rec.get("steps")
                else f"cosine over {rec.get('minutes')} minutes of wall time")  # fmt: skip
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    return {
        "name": NAME,
        "weights": weights.name,
        "sha256": sha256_file(weights),
        "size_bytes": weights.stat().st_size,
        "architecture": f"{ARCHITECTURE} (DocClassifier squeeze head, LN+BN, 256-d, 128x128)",
        "parameters": count_parameters(build_model()),
        "training": {
            "script": "samples/train_demo_model.py",
            "steps": summary.get("steps"),
            "seconds": summary.get("seconds"),
            "images": (summary.get("steps") or 0) * 2 * rec.get("types", 32),
            "batch": f"{rec.get('types', 32)} document types x 2 captures",
            "loss": (
                f"in-batch CosFace: logits s*(cos - m*I) over the {rec.get('types', 32)}x"
                f"{rec.get('types', 32)} view-A x view-B cosine matrix, symmetric "
                f"cross-entropy; m={rec.get('margin')} ramped from 0 over "
                f"{rec.get('margin_ramp')} steps; learnable s (init {rec.get('scale_init')}, "
                f"cap {rec.get('scale_max')}, final {summary.get('final_scale', 0):.1f})"
            ),
            "optimizer": (
                f"AdamW lr {rec.get('lr')}, weight decay {rec.get('weight_decay')}, "
                f"{rec.get('warmup')} warm-up steps, {schedule}"
            ),
            "seed": rec.get("seed"),
            "pretrained": (
                f"initialized from {rec['init']} (see the model card for the chain of runs)"
                if rec.get("init") else "none (from scratch)"
            ),
            "generator": summary.get("generator", GENERATOR_VERSION),
            "layouts": summary.get("layouts"),
            "mix": summary.get("mix"),
            "data": _data_text(summary),
            "machine": summary.get("machine"),
            "torch": summary.get("torch"),
            "threads": summary.get("threads"),
        },
        "evaluation": {
            "protocol": PROTOCOL,
            **{k: v for k, v in main.items() if k != "rows"},
            "rows": main["rows"],
            "hard_captures": {k: v for k, v in hard.items()},
        },
        "threshold_table": {
            "precision": "fp32",
            "rows": main["rows"],
            "auroc": main["auroc"],
            "source": {
                "origin": "docedge demo model card (zero-shot, held-out synthetic types)",
                "types": main["types"],
                "genuine_pairs": main["genuine_pairs"],
                "impostor_pairs": main["impostor_pairs"],
                "score_space": "(cos+1)/2",
                "rule": "at most floor(FPR*N) false accepts",
                "date": now,
            },
        },
    }


def _data_text(summary: Dict[str, Any]) -> str:
    mix = summary.get("mix")
    gen = summary.get("generator", GENERATOR_VERSION)
    if not mix:
        return (f"synthetic documents ({gen}), type ids in {summary.get('train_type_ids')}, two "
                "different instances per type, each through the capture simulator at strength "
                f"U{tuple(summary.get('capture_strength', []))}, rendered at long side "
                f"{summary.get('render_long_side')} px")  # fmt: skip
    return (
        f"per step {mix['types']} synthetic document types ({gen}, ids in "
        f"{summary.get('train_type_ids')}; two instances = one class), {mix['pages']} synthetic "
        f"text pages in real fonts ({summary.get('layouts')}, pool of {mix['pages_n']}) and "
        f"{mix['real']} real PDF pages (pool of {mix['real_n']} pages of the TRAIN packages, "
        f"groups of up to {mix['group']} pages of one PDF); each page one class; two views "
        "each: resampled to a long side in "
        f"{mix['resample_range']} px (bilinear with p={mix['p_alias']}, else area), then "
        f"photographed on a desk (p={mix['p_photo']}) or the flat capture simulator, strength "
        f"U{tuple(mix['strength'])}; view A of a page is clean with p={mix['p_clean_a']}"
    )


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("weights", type=Path, help=".safetensors state dict or training .pt checkpoint")
    p.add_argument("--types", type=int, default=200)
    p.add_argument("--probes", type=int, default=5)
    p.add_argument(
        "--compare", type=Path, nargs="*", default=[], help="other weights, same protocol"
    )
    p.add_argument("--summary", type=Path, help="train_summary.json (default: beside the weights)")
    p.add_argument(
        "--write", action="store_true", help="publish export/weights/demo_lcnet050_synth.*"
    )
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    results = {}
    for path in [a.weights, *a.compare]:
        net = load_net(path)
        res = evaluate(net, a.types, a.probes)
        hard = evaluate(net, a.types, a.probes, seed=8, strength=1.0)
        results[path] = (res, hard)
        print(report(f"{path}", res))
        print(report(f"{path} [hard]", hard))
    if not a.write:
        return 0
    import shutil

    if a.weights.suffix != ".safetensors":
        p.error("--write needs the .safetensors weights written at the end of training")
    summary_path = a.summary or a.weights.parent / "train_summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    dst = WEIGHTS / "demo_lcnet050_synth.safetensors"
    if a.weights.resolve() != dst.resolve():
        shutil.copyfile(a.weights, dst)
    load_net(dst)  # keys exactly as DocEmbeddingNet.state_dict() (load_state_dict is strict)
    res, hard = results[a.weights]
    text = json.dumps(card(dst, summary, res, hard), indent=2) + "\n"
    (WEIGHTS / "demo_lcnet050_synth.json").write_text(text)
    print(
        f"wrote {dst} ({dst.stat().st_size} bytes) and its card; "
        f"TPR@1e-2 {_tpr_at(res['rows'], 1e-2)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
