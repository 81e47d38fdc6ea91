"""The demo model's training script on the new mix (tiny pools, a few steps): it writes
checkpoints, kept eval-mode weights and a summary naming the mix; batches are a pure function
of (seed, step); a resume with changed pools is refused."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script():
    path = ROOT / "samples" / "train_demo_model.py"
    spec = importlib.util.spec_from_file_location("train_demo_model", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["train_demo_model"] = mod
    spec.loader.exec_module(mod)
    return mod


def _pool(root: Path, n: int) -> None:
    root.mkdir(parents=True)
    for i in range(n):
        img = np.full((200, 150, 3), 240, np.uint8)
        cv2.rectangle(img, (10, 10 + 12 * i), (140, 30 + 12 * i), (20, 20, 20), -1)
        cv2.imwrite(str(root / f"doc{i // 2}-x_p{i:04d}.png"), img)


@pytest.mark.slow
def test_train_on_the_mix_writes_weights_and_refuses_changed_pools(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    import torch
    from safetensors.torch import load_file

    from docedge.export.model import build_model

    threads = torch.get_num_threads()
    mod = _script()
    _pool(tmp_path / "pages", 4)
    _pool(tmp_path / "real", 6)
    args = ["--work", str(tmp_path / "w"), "--steps", "2", "--types", "2", "--pages", "2",
            "--real", "2", "--group", "2", "--pages-dir", str(tmp_path / "pages"),
            "--real-dir", str(tmp_path / "real"), "--keep-every", "2", "--checkpoint-every", "1",
            "--warmup", "1", "--margin-ramp", "1"]  # fmt: skip
    assert mod.main(args) == 0
    w = tmp_path / "w"
    net = build_model()
    net.load_state_dict(load_file(str(w / "final.safetensors")))
    assert (w / "step00002.safetensors").is_file()
    summary = json.loads((w / "train_summary.json").read_text())
    assert summary["steps"] == 2 and summary["mix"]["real_n"] == 6
    assert summary["mix"]["pages"] == 2 and summary["layouts"]

    mix = mod.mix_of(mod.parse_args(args))
    a, b = mod.make_batch(mix, 0, 3), mod.make_batch(mix, 0, 3)
    assert a.shape == (12, 3, 128, 128) and bool((a == b).all())

    cv2.imwrite(str(tmp_path / "real" / "doc9-x_p0099.png"), np.zeros((50, 40, 3), np.uint8))
    assert mod.main([*args, "--resume"]) == 2  # the pool changed: not the same run
    torch.set_num_threads(threads)
