"""Train docedge's demo model: the exact reference architecture, on synthetic document types,
synthetic text pages in real fonts and real PDF pages, with an in-batch CosFace (additive
cosine margin) loss. CPU-friendly.

Each step takes ``--types`` synthetic document types (ids >= 1000; ids below are reserved for
zero-shot evaluation; two different instances of a type are one class), ``--pages`` synthetic
text pages and ``--real`` real PDF pages (one page one class; pools built by
``samples/build_demo_data.py``), makes two views of each class (captures: photographed on a
desk or the flat simulator, after a random resampling; see ``docedge.synth.mix``), and treats
the ``classes x classes`` cosine matrix between the two views as a classification over the
batch's classes::

    logits = s * (cos - m * I)          # CosFace margin on the positive (diagonal) logits
    loss   = (CE(logits, arange) + CE(logits.T, arange)) / 2

with a learnable scale ``s`` (init 16, capped at 64) and the margin ``m`` ramped 0 -> 0.2 over
``--margin-ramp`` steps. ``--init`` starts from earlier weights. Why in-batch and not CosFace
over a fixed class pool (DocClassifier's PartialFC): at batch 64 on a CPU, a 4,000-class
CosFace head had not started learning after 200 steps, while the in-batch form learns from the
first hundred steps and sees new classes every step. See docs/model-card.md.

Batch ``k`` is a pure function of ``(--seed, k)`` and the sorted pools, so a resumed run sees
exactly the batches an uninterrupted run would. Checkpoints (model, optimizer, scale, step,
elapsed seconds, recipe, the pools' digests) go to ``--work`` every ``--checkpoint-every``
steps, atomically; ``--keep-every N`` also keeps the eval-mode weights of every N-th step
(``step<N>.safetensors``). A resume whose recipe or pools differ from the checkpoint's is
refused.

    python samples/train_demo_model.py --work /work/train_demo --minutes 60     # new run
    python samples/train_demo_model.py --work /work/train_demo --resume         # continue

With ``--steps N`` the cosine schedule runs over N steps (reproducible up to floating-point
thread effects). With ``--steps 0`` (default) it runs over wall time instead: the LR follows
``cos(pi * elapsed / budget)`` and training ends when ``--minutes`` have been spent, however
busy the shared machine is (the step count is then measured and recorded, not chosen).
``--max-minutes`` is a hard stop for fixed-step runs (saves, resumable). At the end,
``final.safetensors`` (eval-mode state dict, keys exactly as ``DocEmbeddingNet.state_dict()``)
and ``train_summary.json`` are written to the work directory;
``samples/evaluate_demo_model.py`` evaluates and publishes them.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

# On a shared machine, OpenMP threads that spin while waiting for each other lose most of their
# time slices: measured 3.6 s/step with the default policy vs 0.8 s/step with PASSIVE at a load
# of 5 on 2 cores (0.5 s/step either way when idle). Must be set before torch loads OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from docedge.export.model import ARCHITECTURE, INPUT_SIZE, build_model
from docedge.synth.documents import FIRST_TRAIN_TYPE_ID, GENERATOR_VERSION
from docedge.synth.layouts import LAYOUT_VERSION
from docedge.synth.mix import LAST_TRAIN_TYPE_ID, MixSpec, TrainingMix

log = logging.getLogger("train_demo")

#: Capture strength of each training view: uniform in this range.
STRENGTH_RANGE = (0.3, 1.0)
RENDER_LONG_SIDE = 256


def to_chw(img: np.ndarray) -> np.ndarray:
    """BGR uint8 (H, W, 3) -> float32 (3, 128, 128) in [0, 1]: the runtime's pre-processing."""
    x = cv2.resize(img, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(x.astype(np.float32).transpose(2, 0, 1) / 255.0)


def make_batch(mix: TrainingMix, seed: int, step: int) -> torch.Tensor:
    """Batch ``step``: (2 * classes, 3, 128, 128), view A of every class then view B, same order
    (see :class:`docedge.synth.mix.TrainingMix`: synthetic types, synthetic text pages and real
    PDF pages; each page one class, each synthetic type one class)."""
    A, B, _ = mix.batch(seed, step)
    return torch.from_numpy(np.stack([to_chw(im) for im in A + B]))


class Batches(torch.utils.data.IterableDataset):  # type: ignore[type-arg]
    """Batches ``start, start + 1, ...`` (inline or in a worker process)."""

    def __init__(self, mix: TrainingMix, seed: int, start: int) -> None:
        self.mix, self.seed, self.start = mix, seed, start

    def __iter__(self) -> Iterator[torch.Tensor]:
        # With W workers, worker w makes batches start + w, start + w + W, ...; the DataLoader
        # takes them from the workers in turn, so the order stays start, start + 1, ...
        info = torch.utils.data.get_worker_info()
        step, stride = (self.start, 1) if info is None else (self.start + info.id, info.num_workers)
        while True:
            yield make_batch(self.mix, self.seed, step)
            step += stride


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def in_batch_cosface(
    feats: torch.Tensor, types: int, scale: torch.Tensor, margin: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric in-batch CosFace loss; ``feats`` (2 * types, D) raw. Returns (loss, cos)."""
    f = F.normalize(feats, dim=1)
    cos = f[:types] @ f[types:].T
    logits = scale * (cos - margin * torch.eye(types, dtype=cos.dtype))
    target = torch.arange(types)
    loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    return loss, cos


def lr_at(step: int, progress: float, base: float, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 as ``progress`` goes 0 -> 1."""
    return base * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--work", type=Path, default=Path("/work/train_demo"), help="work directory")
    p.add_argument("--resume", action="store_true", help="continue from WORK/last.pt")
    p.add_argument("--steps", type=int, default=0, help="total steps (0: schedule over --minutes)")
    p.add_argument("--minutes", type=float, default=55.0, help="training wall time with --steps 0")
    p.add_argument("--max-minutes", type=float, default=80.0, help="hard stop (saves; resumable)")
    p.add_argument("--types", type=int, default=12,
                   help="synthetic document types per batch (2 views each)")
    p.add_argument("--pages", type=int, default=12, help="synthetic text pages per batch")
    p.add_argument("--real", type=int, default=16, help="real PDF pages per batch")
    p.add_argument("--group", type=int, default=4, help="real pages per PDF in a batch, at most")
    p.add_argument("--tint", type=float, default=0.0,
                   help="probability that a captured view is printed on coloured paper")
    p.add_argument("--pages-dir", type=Path, default=Path("/work/demo_data/synth_pages"))
    p.add_argument("--real-dir", type=Path, default=Path("/work/demo_data/real_train"))
    p.add_argument("--init", type=Path, default=None,
                   help="start from these weights (.safetensors), e.g. the previous demo model")
    p.add_argument("--keep-every", type=int, default=0,
                   help="also keep WORK/step<N>.safetensors every N steps (0: never)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--margin", type=float, default=0.2)
    p.add_argument("--margin-ramp", type=int, default=600)
    p.add_argument("--scale-init", type=float, default=16.0)
    p.add_argument("--scale-max", type=float, default=64.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=0, help="data worker processes (0: inline)")
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--log-every", type=int, default=20)
    return p.parse_args(argv)


def recipe(a: argparse.Namespace) -> Dict[str, Any]:
    """The hyper-parameters that define the run (stored in checkpoints and the summary)."""
    keys = ("steps", "minutes", "types", "pages", "real", "group", "lr", "weight_decay", "warmup",
            "margin", "margin_ramp", "scale_init", "scale_max", "seed")  # fmt: skip
    r = {k: getattr(a, k) for k in keys}
    r["init"] = a.init.name if a.init else None
    return r


def mix_of(a: argparse.Namespace) -> TrainingMix:
    spec = MixSpec(types=a.types, pages=a.pages, real=a.real, group=a.group,
                   strength=STRENGTH_RANGE, p_tint=a.tint)  # fmt: skip
    return TrainingMix(spec, a.pages_dir if a.pages else None, a.real_dir if a.real else None)


def main(argv: Optional[list] = None) -> int:
    a = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    a.work.mkdir(parents=True, exist_ok=True)
    ckpt = a.work / "last.pt"
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    net = build_model().train()
    if a.init is not None:
        from safetensors.torch import load_file

        net.load_state_dict(load_file(str(a.init)))
        log.info("initialized from %s", a.init)
    mix = mix_of(a)
    classes = mix.spec.classes
    scale = torch.nn.Parameter(torch.tensor(math.log(a.scale_init)))
    opt = torch.optim.AdamW([{"params": net.parameters(), "weight_decay": a.weight_decay},
                             {"params": [scale], "weight_decay": 0.0}], lr=a.lr)  # fmt: skip
    start, elapsed_before = 0, 0.0
    if ckpt.exists() and not a.resume:
        log.error("%s exists: pass --resume to continue it, or use another --work", ckpt)
        return 2
    if a.resume:
        state = torch.load(ckpt, weights_only=True)
        if state["recipe"] != recipe(a) or state.get("mix", mix.describe()) != mix.describe():
            log.error("recipe differs from the checkpoint's: %s vs %s", recipe(a), state["recipe"])
            return 2
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        scale.data = state["scale"]
        start, elapsed_before = int(state["step"]), float(state["seconds"])
        log.info("resumed at step %d (%.0f s so far)", start, elapsed_before)
    log.info("recipe %s; mix %s; generators %s, %s; torch %s, %d threads", recipe(a),
             mix.describe(), GENERATOR_VERSION, LAYOUT_VERSION, torch.__version__,
             torch.get_num_threads())  # fmt: skip

    t0 = time.time()

    def seconds() -> float:
        return elapsed_before + time.time() - t0

    def save(step: int) -> None:
        tmp = ckpt.with_suffix(".tmp")
        torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "scale": scale.data,
                    "step": step, "seconds": seconds(), "recipe": recipe(a),
                    "mix": mix.describe()}, tmp)  # fmt: skip
        os.replace(tmp, ckpt)
        if a.keep_every and step % a.keep_every == 0:
            keep(a.work / f"step{step:05d}.safetensors", net, step)

    loader = torch.utils.data.DataLoader(
        Batches(mix, a.seed, start), batch_size=None, num_workers=a.workers,
        worker_init_fn=_worker_init if a.workers else None,
        prefetch_factor=4 if a.workers else None,
    )  # fmt: skip
    target = torch.arange(classes)
    budget = a.minutes * 60
    step = start
    total = str(a.steps) if a.steps else f"{a.minutes:g}min"

    def progress() -> float:
        return step / a.steps if a.steps else seconds() / budget

    for x in loader:
        if progress() >= 1.0:
            break
        lr = lr_at(step, progress(), a.lr, a.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        s = scale.exp().clamp(max=a.scale_max)
        m = a.margin * min(1.0, step / a.margin_ramp)
        loss, cos = in_batch_cosface(net.forward_features(x), classes, s, m)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % a.log_every == 0 or step == 1:
            acc = (cos.argmax(1) == target).float().mean().item()
            log.info(
                "step %d/%s loss %.3f in-batch acc %.2f scale %.1f margin %.2f lr %.2e %.0f s",
                step,
                total,
                loss.item(),
                acc,
                s.item(),
                m,
                lr,
                seconds(),
            )
        if step % a.checkpoint_every == 0:
            save(step)
        if a.steps and seconds() > a.max_minutes * 60 and step < a.steps:
            save(step)
            log.warning("--max-minutes reached at step %d of %d: saved; resume to continue",
                        step, a.steps)  # fmt: skip
            return 3
    save(step)
    finish(
        a.work, net, step, seconds(), recipe(a), float(scale.detach().exp().clamp(max=a.scale_max)),
        mix.describe(),
    )
    return 0


def keep(path: Path, net: torch.nn.Module, step: int) -> None:
    """Eval-mode weights of the current step (the running BatchNorm statistics), atomically;
    the network is back in training mode afterwards."""
    from safetensors.torch import save_file

    was = net.training
    net.eval()
    state = {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}
    net.train(was)
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata={"architecture": ARCHITECTURE, "producer": "docedge",
                                         "step": str(step)})  # fmt: skip
    os.replace(tmp, path)


def finish(work: Path, net: torch.nn.Module, steps: int, secs: float, rec: Dict[str, Any],
           scale: float, mix: Optional[Dict[str, Any]] = None) -> None:  # fmt: skip
    """Write eval-mode weights (safetensors) and the run summary to ``work``."""
    from safetensors.torch import save_file

    net.eval()
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(work / "final.safetensors"),
              metadata={"architecture": ARCHITECTURE, "producer": "docedge"})  # fmt: skip
    summary = {
        "steps": steps, "seconds": round(secs, 1), "recipe": rec, "final_scale": scale,
        "generator": GENERATOR_VERSION, "layouts": LAYOUT_VERSION, "mix": mix,
        "train_type_ids": [FIRST_TRAIN_TYPE_ID, LAST_TRAIN_TYPE_ID],
        "capture_strength": list(STRENGTH_RANGE), "render_long_side": RENDER_LONG_SIDE,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
    }  # fmt: skip
    (work / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info("done: %d steps in %.0f s; wrote %s", steps, secs, work / "final.safetensors")


if __name__ == "__main__":
    sys.exit(main())
