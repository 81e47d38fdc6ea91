"""Build the PyTorch reference model from a checkpoint, the shipped demo weights, or a
seeded random initialization with data-estimated BatchNorm statistics."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch

from docedge.runtime.hashing import sha256_file

from .checkpoint import CheckpointError, load_weights
from .model import DocEmbeddingNet, build_model

logger = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEMO_WEIGHTS = WEIGHTS_DIR / "demo_lcnet050_synth.safetensors"
DEMO_CARD = WEIGHTS_DIR / "demo_lcnet050_synth.json"
DEMO_MODEL_NAME = "docedge-demo-lcnet050-synth"


@dataclass
class ReferenceModel:
    """A reference network plus where it came from (recorded in bundle manifests)."""

    net: DocEmbeddingNet
    source: Dict[str, Any]
    name: str
    model_cfg: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict)


def seeded_model(seed: int, bn_batches: int = 4, batch_size: int = 32) -> DocEmbeddingNet:
    """A seeded random network whose BatchNorm statistics are estimated from data.

    With default BatchNorm statistics this architecture maps every image to nearly the same
    unit vector, so parity tests would pass trivially; estimating the statistics from a few
    batches of varied images (cumulative average, train mode, no gradients) makes embeddings
    input-dependent. The images are the deterministic check images (other seeds).
    """
    from .check_images import check_batch

    torch.manual_seed(seed)
    net = build_model()
    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the estimation batches
    net.train()
    with torch.no_grad():
        for b in range(bn_batches):
            x = torch.from_numpy(check_batch(batch_size, seed=10_000 + seed * 100 + b * 7919))
            net(x)
    for m in bns:
        m.momentum = 0.1
    return net.eval()


def load_reference(
    checkpoint: Optional[Union[str, Path]] = None,
    random_init_seed: Optional[int] = None,
) -> ReferenceModel:
    """The reference model from ``checkpoint``, a seeded init, or (neither) the demo model."""
    if checkpoint is not None and random_init_seed is not None:
        raise ValueError("give either a checkpoint or a random-init seed, not both")
    if random_init_seed is not None:
        net = seeded_model(random_init_seed)
        return ReferenceModel(
            net,
            {"kind": "random-init", "seed": int(random_init_seed), "sha256": _state_sha(net)},
            name=f"lcnet050-squeeze-lbn-seeded-{random_init_seed}",
        )
    if checkpoint is None:
        if not DEMO_WEIGHTS.is_file():
            raise CheckpointError(
                f"{DEMO_WEIGHTS}: the demo model's weights are not in this installation; "
                "give --checkpoint PATH or --random-init --seed N"
            )
        net = build_model()
        load_weights(net, DEMO_WEIGHTS)
        card: Dict[str, Any] = {}
        if DEMO_CARD.is_file():
            card = json.loads(DEMO_CARD.read_text(encoding="utf-8"))
        return ReferenceModel(
            net,
            {
                "kind": "demo-weights",
                "file": DEMO_WEIGHTS.name,
                "sha256": sha256_file(DEMO_WEIGHTS),
            },
            name=DEMO_MODEL_NAME,
            extra={"card": card},
        )
    path = Path(checkpoint)
    net = build_model()
    load_weights(net, path)
    return ReferenceModel(
        net,
        {"kind": "checkpoint", "file": path.name, "sha256": sha256_file(path)},
        name=path.stem,
        model_cfg=model_cfg_from_name(path.name),
    )


def model_cfg_from_name(name: str) -> Optional[str]:
    """DocClassifier's model_cfg (a date like ``20240326``) from a released file name."""
    import re

    m = re.search(r"_(20\d{6})(?:_fp(?:32|16))?(?:\.[a-z]+)?$", name)
    return m.group(1) if m else None


def _state_sha(net: torch.nn.Module) -> str:
    import hashlib

    h = hashlib.sha256()
    for k, v in net.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def reference_for_bundle(
    model_info: Dict[str, Any],
    checkpoint: Optional[Union[str, Path]] = None,
    random_init_seed: Optional[int] = None,
    strict: bool = True,
) -> Optional[ReferenceModel]:
    """The PyTorch reference a bundle was exported from (its manifest ``model`` section).

    Demo weights and seeded random inits are rebuilt from the manifest; a checkpoint must be
    given (its hash must match). Returns None for bundles imported from ONNX (no PyTorch
    model exists) and, unless ``strict``, for checkpoint bundles when no checkpoint is given.
    """
    src = model_info.get("source", {})
    kind = src.get("kind")
    if checkpoint is not None or random_init_seed is not None:
        ref = load_reference(checkpoint, random_init_seed)
        if ref.source.get("sha256") != src.get("sha256"):
            raise CheckpointError(
                f"the given reference ({str(ref.source.get('sha256'))[:16]}...) is not the "
                f"bundle's source ({str(src.get('sha256'))[:16]}...)"
            )
        return ref
    if kind == "demo-weights":
        ref = load_reference()
        if src.get("sha256") and ref.source.get("sha256") != src.get("sha256"):
            raise CheckpointError(
                f"this bundle was exported from demo weights {str(src.get('sha256'))[:16]}..., "
                f"this installation ships {str(ref.source.get('sha256'))[:16]}... (another docedge "
                "version): pass those weights as --checkpoint PATH, or re-export the bundle"
            )
        return ref
    if kind == "random-init":
        return load_reference(random_init_seed=int(src["seed"]))
    if kind == "checkpoint" and strict:
        raise CheckpointError(
            f"this bundle was exported from a checkpoint ({src.get('file')}, sha256 "
            f"{str(src.get('sha256'))[:16]}...): pass --checkpoint PATH"
        )
    return None
