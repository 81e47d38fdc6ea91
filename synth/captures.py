"""Capture simulator: what a phone camera and a document localizer do to a clean document.

Conditions (each with its own strength multiplier, 0 disables it):

- ``crop``: corner-localization errors: perspective jitter with over-cropping (background
  shows) and under-cropping (edges cut);
- ``light``: global brightness/contrast change; ``shadow``: a smooth shading gradient;
- ``color_cast``: per-channel gain; ``glare``: a blurred bright reflection;
- ``blur``: defocus (Gaussian) or motion (a rotated line kernel);
- ``low_res``: downscale then upscale; ``noise``: Gaussian sensor noise;
- ``jpeg``: JPEG re-compression.

``simulate_capture(img, rng, strength)`` with every multiplier at 1 is exactly the distribution
the demo model was trained on; ``strength`` in [0, 1] scales the overall severity (0 returns the
image unchanged). The result says which conditions were applied: the stochastic ones (shadow,
glare, blur, low resolution, noise, JPEG) fire with a probability, so an enabled condition is not
applied to every capture; a disabled one never is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

CONDITIONS = (
    "crop", "light", "shadow", "color_cast", "glare", "blur", "low_res", "noise", "jpeg",
)  # fmt: skip


@dataclass
class CaptureConditions:
    """Per-condition strength multipliers (1 = default, 0 = off, >1 = stronger)."""

    crop: float = 1.0
    light: float = 1.0
    shadow: float = 1.0
    color_cast: float = 1.0
    glare: float = 1.0
    blur: float = 1.0
    low_res: float = 1.0
    noise: float = 1.0
    jpeg: float = 1.0

    def __post_init__(self) -> None:
        bad = {k: v for k, v in asdict(self).items() if not v >= 0}
        if bad:
            raise ValueError(f"capture condition strengths must be >= 0, got {bad}")

    @classmethod
    def only(cls, *names: str, strength: float = 1.0) -> CaptureConditions:
        """All conditions off except ``names``."""
        unknown = set(names) - set(CONDITIONS)
        if unknown:
            raise ValueError(f"unknown capture conditions {sorted(unknown)}; known: {CONDITIONS}")
        return cls(**{c: (strength if c in names else 0.0) for c in CONDITIONS})

    def to_dict(self) -> Dict[str, float]:
        """``{condition: multiplier}`` (for manifests)."""
        return asdict(self)


@dataclass
class CaptureResult:
    """A simulated capture and the conditions that were actually applied to it."""

    image: np.ndarray
    applied: List[str] = field(default_factory=list)


def _color(rng: np.random.Generator) -> Tuple[int, int, int]:
    c = rng.integers(0, 256, 3)
    return (int(c[0]), int(c[1]), int(c[2]))


def simulate_capture(
    img: np.ndarray,
    rng: np.random.Generator,
    strength: float = 1.0,
    conditions: Optional[CaptureConditions] = None,
) -> CaptureResult:
    """Apply capture conditions to BGR uint8 ``img`` ``(H, W, 3)``; the new image has the same
    size. ``strength`` scales every condition's severity; ``conditions`` holds per-condition
    multipliers (default: all 1). Deterministic for a given ``rng`` state.

    Draw order is fixed for the parameters of the crop, light and colour-cast conditions and for
    each stochastic condition's "does it fire" draw; a condition that fires draws more numbers,
    so switching one off can change the samples (not the distribution) of the later ones.
    """
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected a BGR uint8 (H, W, 3) image, got {img.dtype} {img.shape}")
    s = float(strength)
    if s < 0:
        raise ValueError(f"strength must be >= 0, got {strength}")
    c = conditions if conditions is not None else CaptureConditions()
    H, W = img.shape[:2]
    applied: List[str] = []

    # Corner-localization error: each corner moves by up to 8% (in: background, out: cut).
    d = 0.08 * s * c.crop
    src = np.array([[0, 0], [W, 0], [W, H], [0, H]], np.float32)
    offsets = rng.uniform(-d, d, (4, 2)) if d > 0 else rng.uniform(0, 0, (4, 2))
    dst = src + (offsets * [W, H]).astype(np.float32)
    bg = _color(rng)
    out = img
    if c.crop > 0 and s > 0:
        M = cv2.getPerspectiveTransform(dst, src)
        out = cv2.warpPerspective(img, M, (W, H), borderMode=cv2.BORDER_CONSTANT, borderValue=bg)
        applied.append("crop")
    f: np.ndarray = out.astype(np.float32)

    gain = float(rng.uniform(1 - 0.35 * s, 1 + 0.25 * s))
    offset = float(rng.uniform(-30, 30)) * s
    if c.light > 0 and s > 0:
        f = f * (1 + (gain - 1) * c.light) + offset * c.light
        applied.append("light")
    if rng.random() < 0.6 * s * min(1.0, c.shadow):
        gx0, gx1 = float(rng.uniform(0.5, 1)), float(rng.uniform(0.9, 1.2))
        gx = np.linspace(gx0, gx1, W, dtype=np.float32)
        gy0, gy1 = float(rng.uniform(0.6, 1)), float(rng.uniform(0.9, 1.1))
        gy = np.linspace(gy0, gy1, H, dtype=np.float32)
        shade = gy[:, None] * gx[None, :]
        if rng.random() < 0.5:
            shade = shade[::-1, ::-1]
        f *= (1 + (shade - 1) * max(1.0, c.shadow))[:, :, None]
        applied.append("shadow")
    cast = (1 + rng.uniform(-0.12, 0.12, 3) * s * c.color_cast).astype(np.float32)
    if c.color_cast > 0 and s > 0:
        f *= cast[None, None, :]
        applied.append("color_cast")
    if rng.random() < 0.3 * s * min(1.0, c.glare):
        cx, cy = int(rng.integers(0, W)), int(rng.integers(0, H))
        mask: np.ndarray = np.zeros((H, W), np.float32)
        axes = (int(W * rng.uniform(0.05, 0.3)), int(H * rng.uniform(0.03, 0.15)))
        cv2.ellipse(mask, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
        mask = cv2.GaussianBlur(mask, (0, 0), max(1, W / 30))
        f += mask[:, :, None] * float(rng.uniform(80, 200)) * max(1.0, c.glare)
        applied.append("glare")
    out = np.clip(f, 0, 255).astype(np.uint8)

    k = rng.random()
    if k < 0.25 * s * min(1.0, c.blur):
        out = cv2.GaussianBlur(out, (0, 0), float(rng.uniform(0.5, 1.8)) * max(1.0, c.blur))
        applied.append("blur")
    elif k < 0.4 * s * min(1.0, c.blur):
        L = int(rng.integers(3, 8))
        ker: np.ndarray = np.zeros((L, L), np.float32)
        ker[L // 2, :] = 1 / L
        R = cv2.getRotationMatrix2D((L / 2 - 0.5, L / 2 - 0.5), float(rng.uniform(0, 180)), 1)
        ker = np.asarray(cv2.warpAffine(ker, R, (L, L)), np.float32)
        ker = ker / max(float(ker.sum()), 1e-6)
        out = cv2.filter2D(out, -1, ker)
        applied.append("blur")
    if rng.random() < 0.3 * s * min(1.0, c.low_res):
        factor = float(rng.uniform(0.3, 0.6)) / max(1.0, c.low_res)
        small_size = (max(8, int(W * factor)), max(8, int(H * factor)))
        small = cv2.resize(out, small_size, interpolation=cv2.INTER_AREA)
        out = cv2.resize(small, (W, H))
        applied.append("low_res")
    if rng.random() < 0.7 * min(1.0, c.noise):
        sigma = float(rng.uniform(1, 8)) * s * c.noise
        noisy = out.astype(np.float32) + rng.normal(0, sigma, out.shape)
        out = np.clip(noisy, 0, 255).astype(np.uint8)
        if sigma > 0:
            applied.append("noise")
    if rng.random() < 0.7 * min(1.0, c.jpeg) and s > 0:
        lo = int(40 + 50 * (1 - s))
        quality = int(rng.integers(lo, 96))
        quality = max(5, int(quality / max(1.0, c.jpeg)))
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
        decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
        if decoded is not None:
            out = decoded
            applied.append("jpeg")
    return CaptureResult(out, applied)


def capture(img: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """The default capture distribution (the demo model's training distribution): BGR uint8
    in, BGR uint8 out (same size)."""
    return simulate_capture(img, rng, strength).image
