"""Zero-shot evaluation of a demo-model checkpoint and export of the shipped weights + card.

Protocol: document types 0..N-1 (never used in training: training uses ids >= 1000). Each type
is registered with one clean render (instance 0); probes are 3 simulated captures of other
instances (100..102, capture strength uniform in [0.3, 1.0]). Genuine pairs: probe vs its own
type's exemplar; impostor pairs: probe vs every other type's exemplar. Scores (cos+1)/2 in
float32; table rule: at most floor(FPR*N) false accepts (docedge.calibration.roc).

    python samples/evaluate_demo_model.py /tmp/demo_run/last.pt --write   # updates export/weights/
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import Any, Dict

import numpy as np
import torch

from docedge.calibration.roc import auroc, format_table, tpr_at_fpr_table
from docedge.calibration.synth.captures import capture
from docedge.calibration.synth.documents import GENERATOR_VERSION, DocumentType, render
from docedge.export.model import build_model
from docedge.runtime.hashing import sha256_file
from docedge.runtime.preprocess import preprocess_bgr
from docedge.runtime.search import scores

WEIGHTS = Path(__file__).resolve().parents[1] / "export" / "weights"


def evaluate(net: torch.nn.Module, n_types: int = 200, probes: int = 3, seed: int = 7) -> Dict[str, Any]:
    rng = np.random.default_rng(seed)
    reg, probe, plab = [], [], []
    for tid in range(n_types):
        t = DocumentType.from_id(tid)
        reg.append(preprocess_bgr(render(t, 0)))
        for k in range(probes):
            probe.append(preprocess_bgr(capture(render(t, 100 + k), rng, float(rng.uniform(0.3, 1.0)))))
            plab.append(tid)
    with torch.no_grad():
        R = net.eval()(torch.from_numpy(np.stack(reg))).numpy()
        P = np.concatenate([net(torch.from_numpy(np.stack(probe[i : i + 128]))).numpy()
                            for i in range(0, len(probe), 128)])
    S = scores(P, R)
    lab = np.array(plab)
    genuine = S[np.arange(len(lab)), lab]
    mask = np.ones_like(S, bool)
    mask[np.arange(len(lab)), lab] = False
    impostor = S[mask]
    rows = tpr_at_fpr_table(genuine, impostor)
    return {"top1": float((S.argmax(1) == lab).mean()), "rows": rows, "auroc": auroc(genuine, impostor),
            "genuine_pairs": int(genuine.size), "impostor_pairs": int(impostor.size),
            "types": n_types, "probes_per_type": probes}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("checkpoint")
    p.add_argument("--types", type=int, default=200)
    p.add_argument("--write", action="store_true", help="write export/weights/demo_lcnet050_synth.*")
    a = p.parse_args()
    state = torch.load(a.checkpoint, weights_only=True)
    net = build_model()
    net.load_state_dict(state.get("net", state))
    net.eval()
    res = evaluate(net, a.types)
    print(f"zero-shot on {res['types']} held-out types: top-1 {res['top1']:.3f}, AUROC {res['auroc']:.4f}")
    print(format_table(res["rows"]))
    if not a.write:
        return
    from safetensors.torch import save_file

    WEIGHTS.mkdir(parents=True, exist_ok=True)
    wpath = WEIGHTS / "demo_lcnet050_synth.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(wpath),
              metadata={"architecture": "lcnet050_squeeze_lbn_f256_r128", "producer": "docedge"})
    card = {
        "name": "docedge-demo-lcnet050-synth",
        "weights": wpath.name, "sha256": sha256_file(wpath),
        "architecture": "lcnet050_squeeze_lbn_f256_r128 (DocClassifier squeeze head, LN+BN, 256-d, 128x128)",
        "training": {"script": "samples/train_demo_model.py", "steps": int(state.get("step", 0)),
                     "batch": "32 document types x 2 captures", "loss": "in-batch CosFace (m=0.2, "
                     "learnable scale), symmetric cross-entropy", "optimizer": "AdamW lr 2e-3 cosine, "
                     "wd 1e-4", "seed": 0, "pretrained": "none (from scratch)",
                     "data": f"synthetic documents ({GENERATOR_VERSION}), type ids >= 1000, "
                             "capture simulator strength U(0.3, 1.0)"},
        "evaluation": {k: v for k, v in res.items() if k != "rows"},
        "threshold_table": {
            "precision": "fp32", "rows": res["rows"], "auroc": res["auroc"],
            "source": {"origin": "docedge demo model card (zero-shot, held-out synthetic types)",
                       "types": res["types"], "genuine_pairs": res["genuine_pairs"],
                       "impostor_pairs": res["impostor_pairs"], "score_space": "(cos+1)/2",
                       "rule": "at most floor(FPR*N) false accepts",
                       "date": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()},
        },
    }
    (WEIGHTS / "demo_lcnet050_synth.json").write_text(json.dumps(card, indent=2) + "\n")
    print(f"wrote {wpath} and its card")


if __name__ == "__main__":
    main()
