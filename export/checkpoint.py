"""Load weights into the reference model: DocClassifier checkpoints, plain state dicts,
safetensors files. Never unpickles arbitrary objects (``torch.load(weights_only=True)``).

Strict: after dropping DocClassifier's training-only keys (PartialFC centres ``pfc.*``,
CLIP distillation projection ``clip_proj.*``) every key must match the model by name and
shape; otherwise :class:`CheckpointError` lists what is missing, unexpected or mis-shaped.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Dict, List, Mapping, Union

import torch
from torch import nn

from docedge.runtime.errors import DocedgeError

logger = logging.getLogger(__name__)

#: Prefixes of DocClassifier training-only parameters, dropped on load.
TRAINING_ONLY_PREFIXES = ("pfc.", "clip_proj.")
#: Wrappers some training frameworks add in front of every key.
WRAPPER_PREFIXES = ("model.", "module.")


class CheckpointError(DocedgeError):
    """A checkpoint cannot be read or does not fit the reference model."""


def read_state_dict(path: Union[str, Path]) -> Dict[str, torch.Tensor]:
    """Read tensors from a ``.safetensors`` file or a torch checkpoint (weights only).

    A Lightning-style checkpoint's ``state_dict`` entry is unwrapped.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint file not found")
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(p), device="cpu"))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{p}: not a readable safetensors file ({e})") from None
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:  # pickle.UnpicklingError, RuntimeError, EOFError, ...
        raise CheckpointError(_unreadable_message(p, e)) from None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{p}: expected a state dict, found {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{p}: non-tensor entries in the state dict: {bad[:10]}")
    return {str(k): v for k, v in obj.items()}


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def blocking_globals(path: Path) -> List[str]:
    """Classes in a checkpoint that torch's weights-only loader refuses (read without
    unpickling anything, via ``torch.serialization.get_unsafe_globals_in_checkpoint``)."""
    probe = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if probe is None:
        return []
    try:
        return sorted(str(g) for g in probe(str(path)))
    except Exception:  # not a zip checkpoint, truncated, ...
        return []


def _unreadable_message(p: Path, e: BaseException) -> str:
    first = _ANSI.sub("", str(e)).strip().splitlines()[0] if str(e).strip() else ""
    blocked = blocking_globals(p)
    if not blocked:
        return (f"{p}: cannot be read as a weights-only torch checkpoint ({type(e).__name__}: "
                f"{first[:300]}). docedge never unpickles arbitrary objects; re-save the weights "
                "with torch.save(model.state_dict()) or as safetensors.")  # fmt: skip
    mods = sorted({g.rsplit(".", 1)[0] for g in blocked if "." in g})
    script = "\n".join([
        "python - <<'EOF'",
        "import torch" + "".join(f", {m}" for m in mods),
        "from torch.serialization import safe_globals",
        f"with safe_globals([{', '.join(blocked)}]):",
        f"    ck = torch.load({str(p)!r}, map_location='cpu', weights_only=True)",
        "torch.save(ck.get('state_dict', ck), 'weights.pt')",
        "EOF",
    ])  # fmt: skip
    return (f"{p}: refused by torch's weights-only loader: it holds objects of class "
            f"{', '.join(blocked)} (in Lightning checkpoints, usually hyper_parameters). docedge "
            "never unpickles arbitrary objects. If you trust those classes, extract the weights "
            f"once where their code is importable:\n{script}\nthen export weights.pt (a plain "
            "state dict).")  # fmt: skip


def normalize_keys(
    state: Mapping[str, torch.Tensor], source: str = "<state>"
) -> Dict[str, torch.Tensor]:
    """Strip wrapper prefixes and drop DocClassifier's training-only keys (with a log line)."""
    out: Dict[str, torch.Tensor] = {}
    dropped: List[str] = []
    for key, value in state.items():
        k = key
        for prefix in WRAPPER_PREFIXES:
            if k.startswith(prefix) and not k.startswith(("backbone.", "head.")):
                k = k[len(prefix) :]
        if k.startswith(TRAINING_ONLY_PREFIXES):
            dropped.append(k)
            continue
        out[k] = value
    if dropped:
        logger.info("%s: dropped %d training-only key(s): %s", source, len(dropped), dropped)
    return out


def load_weights(model: nn.Module, path: Union[str, Path]) -> nn.Module:
    """Load a checkpoint into ``model`` strictly; returns the model in eval mode."""
    state = normalize_keys(read_state_dict(path), str(path))
    load_state_dict_strict(model, state, str(path))
    return model.eval()


def load_state_dict_strict(
    model: nn.Module, state: Mapping[str, torch.Tensor], source: str
) -> None:
    """Copy ``state`` into ``model``; any missing, unexpected or mis-shaped key is an error."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(state) & set(expected)
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {missing[:20]}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {unexpected[:20]}")
        if mismatched:
            parts.append(f"shape mismatches ({len(mismatched)}): {mismatched[:20]}")
        raise CheckpointError(
            f"{source}: does not fit the squeeze-head lcnet050 reference: " + "; ".join(parts)
        )
    model.load_state_dict(dict(state), strict=True)
