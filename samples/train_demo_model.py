"""Train docedge's demo model: the exact reference architecture, from scratch, on synthetic
document types, with an in-batch CosFace (additive cosine margin) loss. CPU-friendly.

Each step draws ``--types`` fresh document types (ids >= 1000; ids below are reserved for
zero-shot evaluation), renders two different instances of each, passes each through the
capture simulator, and treats the ``types x types`` cosine matrix between the two views as a
classification over the batch's types: logits = s * (cos - m * I), symmetric cross-entropy,
learnable scale s (capped at 64), margin m ramped 0 -> 0.2 over the first 600 steps.

Why in-batch and not CosFace over a fixed class pool (DocClassifier's PartialFC): at batch 64 on
a CPU, a 4,000-class CosFace head had not started learning after 200 steps, while the in-batch
form learns from the first hundred steps and sees a new set of types every step.

    python samples/train_demo_model.py --out /tmp/demo_run --steps 3000 --max-minutes 60
    python samples/train_demo_model.py --out /tmp/demo_run --steps 3000   # resumes

Writes ``last.pt`` (model, optimizer, scale, step; weights-only loadable) every 100 steps.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import time

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from docedge.calibration.synth.captures import capture
from docedge.calibration.synth.documents import FIRST_TRAIN_TYPE_ID, DocumentType, render
from docedge.export.model import build_model

log = logging.getLogger("train_demo")


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """BGR uint8 -> float32 (3, 128, 128) in [0, 1]: the runtime's pre-processing."""
    x = cv2.resize(img, (128, 128), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def make_batch(rng: np.random.Generator, types: int) -> torch.Tensor:
    """(2 * types, 3, 128, 128): view A of every type, then view B in the same order."""
    tids = rng.integers(FIRST_TRAIN_TYPE_ID, 2_000_000, types)
    xa, xb = [], []
    for tid in tids:
        t = DocumentType.from_id(int(tid))
        i1, i2 = rng.integers(0, 10**9, 2)
        xa.append(to_tensor(capture(render(t, int(i1)), rng, float(rng.uniform(0.3, 1.0)))))
        xb.append(to_tensor(capture(render(t, int(i2)), rng, float(rng.uniform(0.3, 1.0)))))
    return torch.stack(xa + xb)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="work directory (checkpoints, resumable)")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--types", type=int, default=32, help="document types per batch (2 views each)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--margin", type=float, default=0.2)
    p.add_argument("--max-minutes", type=float, default=120)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = build_model().train()
    scale = torch.nn.Parameter(torch.tensor(math.log(16.0)))
    opt = torch.optim.AdamW([{"params": net.parameters(), "weight_decay": 1e-4},
                             {"params": [scale], "weight_decay": 0.0}], lr=a.lr)
    ckpt = os.path.join(a.out, "last.pt")
    start = 0
    if os.path.exists(ckpt):
        state = torch.load(ckpt, weights_only=True)
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        scale.data = state["scale"]
        start = int(state["step"])
        log.info("resumed at step %d", start)
    rng = np.random.default_rng(1234 + start)
    t0 = time.time()

    def save(step: int) -> None:
        torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "scale": scale.data,
                    "step": step}, ckpt + ".tmp")
        os.replace(ckpt + ".tmp", ckpt)

    warmup = 100
    for step in range(start, a.steps):
        lr = a.lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / a.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        x = make_batch(rng, a.types)
        f = F.normalize(net.forward_features(x), dim=1)
        cos = f[: a.types] @ f[a.types :].T
        s = scale.exp().clamp(max=64)
        m = a.margin * min(1.0, step / 600)
        logits = s * (cos - m * torch.eye(a.types))
        target = torch.arange(a.types)
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 20 == 0:
            acc = (cos.argmax(1) == target).float().mean().item()
            rate = (time.time() - t0) / (step - start + 1)
            log.info("step %d/%d loss %.3f in-batch acc %.2f scale %.1f lr %.2e %.2fs/step",
                     step, a.steps, loss.item(), acc, s.item(), lr, rate)
        if (step + 1) % 100 == 0 or step == a.steps - 1:
            save(step + 1)
        if time.time() - t0 > a.max_minutes * 60:
            save(step + 1)
            log.info("time budget reached at step %d (resume to continue)", step + 1)
            break


if __name__ == "__main__":
    main()
