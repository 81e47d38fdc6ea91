"""Checkpoints load strictly and safely: DocClassifier format, plain, safetensors, bad keys."""

from __future__ import annotations

import collections
import logging

import pytest
import torch
from safetensors.torch import save_file

from docedge.export.checkpoint import CheckpointError, load_weights
from docedge.export.model import build_model


@pytest.fixture()
def state():
    torch.manual_seed(1)
    net = build_model()
    for p in net.parameters():
        p.data.normal_(0, 0.05)
    return net.state_dict()


def _same(net, state):
    return all(torch.equal(net.state_dict()[k], state[k]) for k in state)


def test_docclassifier_lightning_checkpoint_drops_training_only_keys(tmp_path, state, caplog):
    ckpt = {
        "epoch": 3,
        "global_step": 1000,
        "state_dict": {
            **state,
            "pfc.weight": torch.zeros(10, 256),
            "clip_proj.weight": torch.zeros(512, 256),
        },
    }
    path = tmp_path / "docclassifier.ckpt"
    torch.save(ckpt, path)
    with caplog.at_level(logging.INFO):
        net = load_weights(build_model(), path)
    assert _same(net, state)
    assert "pfc.weight" in caplog.text and "clip_proj.weight" in caplog.text
    assert not net.training


def test_plain_state_dict(tmp_path, state):
    path = tmp_path / "plain.pth"
    torch.save(state, path)
    assert _same(load_weights(build_model(), path), state)


def test_safetensors_file(tmp_path, state):
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    assert _same(load_weights(build_model(), path), state)


def test_missing_unexpected_and_misshaped_keys_are_listed(tmp_path, state):
    bad = dict(state)
    del bad["head.squeeze_feats.0.weight"]
    bad["head.extra.weight"] = torch.zeros(3)
    bad["head.embed_feats.0.weight"] = torch.zeros(256, 512)
    path = tmp_path / "bad.pth"
    torch.save(bad, path)
    with pytest.raises(CheckpointError) as e:
        load_weights(build_model(), path)
    msg = str(e.value)
    assert "missing keys (1)" in msg and "head.squeeze_feats.0.weight" in msg
    assert "unexpected keys (1)" in msg and "head.extra.weight" in msg
    assert "shape mismatches (1)" in msg and "(256, 512)" in msg


def test_arbitrary_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": collections.Counter(a=1), "obj": _Custom()}, path)
    with pytest.raises(CheckpointError, match="weights-only"):
        load_weights(build_model(), path)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_weights(build_model(), tmp_path / "nope.pth")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="safetensors"):
        load_weights(build_model(), bad)


class _Custom:
    pass


class HyperParams:  # a class outside torch's safe list, as Lightning's hyper_parameters hold
    def __init__(self) -> None:
        self.lr = 1e-3


def test_a_blocked_class_is_named_with_the_exact_command_to_extract_the_weights(tmp_path):
    import torch

    from docedge.export.checkpoint import CheckpointError, read_state_dict

    path = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "hyper_parameters": HyperParams()}, path)
    with pytest.raises(CheckpointError) as info:
        read_state_dict(path)
    msg = str(info.value)
    assert "HyperParams" in msg and "safe_globals" in msg and "weights.pt" in msg
    assert "\x1b[" not in msg  # no terminal escape codes


def test_a_bundle_of_other_demo_weights_is_not_gated_against_this_installations_demo():
    """A bundle exported by another docedge version (other demo weights) must not be compared
    with this installation's demo model as if it were its reference."""
    from docedge.export.reference import CheckpointError, load_reference, reference_for_bundle

    here = load_reference().source
    other = {"source": {**here, "sha256": "0" * 64}}
    with pytest.raises(CheckpointError, match="another docedge version"):
        reference_for_bundle(other)
    assert reference_for_bundle({"source": here}).source["sha256"] == here["sha256"]
