"""Documents photographed on backgrounds: a desk (wood, fabric, paper, plain) under a phone,
a hand or fingers over an edge, perspective and rotation, uneven light, then the crop a
document localizer hands to the classifier (corner errors: background shows or edges are cut,
sometimes a partial crop), then the camera's photometric conditions
(:func:`docedge.synth.captures.simulate_capture` without its flat warp).

    crop = photograph(img, rng, strength=0.8)      # BGR uint8, same size as ``img``

Deterministic for a given ``rng`` state.
"""

from __future__ import annotations

from typing import Tuple

import cv2
import numpy as np

from .captures import CaptureConditions, simulate_capture

BACKGROUNDS = ("wood", "fabric", "plain", "paper", "stone")
_SKIN = ((140, 170, 220), (110, 140, 200), (80, 110, 160), (60, 80, 120), (150, 185, 230))


def desk(rng: np.random.Generator, h: int, w: int, kind: str = "") -> np.ndarray:
    """A desk-like BGR texture ``(h, w, 3)``."""
    kind = kind or BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    base = rng.integers(30, 230, 3).astype(np.float32)
    tex: np.ndarray
    if kind == "wood":
        base = np.array([rng.uniform(30, 90), rng.uniform(60, 130), rng.uniform(100, 190)],
                        np.float32)  # fmt: skip
        y = np.arange(h, dtype=np.float32)[:, None]
        x = np.arange(w, dtype=np.float32)[None, :]
        warp = cv2.resize(rng.normal(0, 1, (4, 4)).astype(np.float32), (w, h)) * 12
        grain = np.sin((y + warp) / rng.uniform(2, 6) + 0.02 * x) * 0.5 + 0.5
        tex = (0.75 + 0.35 * grain)[:, :, None] * base[None, None, :]
    elif kind == "fabric":
        n = rng.normal(0, 1, (h, w)).astype(np.float32)
        weave = (np.sin(np.arange(w) * rng.uniform(0.8, 1.6))[None, :] *
                 np.sin(np.arange(h) * rng.uniform(0.8, 1.6))[:, None])  # fmt: skip
        tex = base[None, None, :] * (1 + 0.08 * weave[:, :, None] + 0.05 * n[:, :, None])
    elif kind == "paper":  # other papers lying around
        tex = np.ones((h, w, 3), np.float32) * base
        for _ in range(int(rng.integers(2, 6))):
            c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            sz = (int(rng.integers(w // 6, w // 2)), int(rng.integers(h // 6, h // 2)))
            box = cv2.boxPoints((c, sz, float(rng.uniform(0, 90)))).astype(np.int32)
            v = float(rng.uniform(180, 250))
            cv2.fillPoly(tex, [box], (v, v, v))
            for k in range(int(rng.integers(0, 12))):  # a few text lines on them
                a = box[0] + (box[1] - box[0]) * 0.1 + (box[3] - box[0]) * (0.1 + 0.07 * k)
                b = a + (box[1] - box[0]) * 0.7
                cv2.line(tex, tuple(int(t) for t in a), tuple(int(t) for t in b), (90, 90, 90), 1)
    else:  # plain / stone: low-frequency blotches + fine noise
        low = cv2.resize(rng.normal(0, 1, (6, 6, 3)).astype(np.float32), (w, h))
        fine = rng.normal(0, 1, (h, w, 1)).astype(np.float32)
        amp = 18 if kind == "stone" else 6
        tex = base[None, None, :] + low * amp + fine * (10 if kind == "stone" else 3)
    return np.clip(tex, 0, 255).astype(np.uint8)


def _hand(img: np.ndarray, rng: np.random.Generator, quad: np.ndarray) -> None:
    """Draw a hand / thumb over a random edge of the document quad (in place)."""
    H, W = img.shape[:2]
    e = int(rng.integers(4))
    a, b = quad[e], quad[(e + 1) % 4]
    t = float(rng.uniform(0.15, 0.85))
    p = a + (b - a) * t
    centre = quad.mean(0)
    inward = centre - p
    inward /= np.linalg.norm(inward) + 1e-6
    skin = np.array(_SKIN[int(rng.integers(len(_SKIN)))], np.float32) + rng.normal(0, 8, 3)
    size = float(np.linalg.norm(b - a)) * float(rng.uniform(0.06, 0.14))
    mask: np.ndarray = np.zeros((H, W), np.float32)
    ang = float(np.degrees(np.arctan2(inward[1], inward[0])))
    n_fingers = 1 if rng.random() < 0.6 else int(rng.integers(2, 5))
    side = np.array([-inward[1], inward[0]])
    for k in range(n_fingers):
        off = side * size * 1.1 * (k - (n_fingers - 1) / 2)
        tip = p + inward * size * float(rng.uniform(0.5, 1.6)) + off
        base_pt = p - inward * size * 3 + off
        c = (tip + base_pt) / 2
        length = float(np.linalg.norm(tip - base_pt)) / 2
        cv2.ellipse(mask, (int(c[0]), int(c[1])), (int(length), int(size / 2)), ang, 0, 360, 1.0, -1)
    if n_fingers > 1:  # the palm outside the page
        c = p - inward * size * 4
        cv2.ellipse(mask, (int(c[0]), int(c[1])), (int(size * n_fingers), int(size * 2.5)),
                    ang + 90, 0, 360, 1.0, -1)  # fmt: skip
    mask = cv2.GaussianBlur(mask, (0, 0), max(0.7, size / 10))[:, :, None]
    shade = np.linspace(0.85, 1.1, W, dtype=np.float32)[None, :, None]
    hand = skin[None, None, :] * shade
    img[:] = np.clip(img * (1 - mask) + hand * mask, 0, 255).astype(np.uint8)


def photograph(img: np.ndarray, rng: np.random.Generator, strength: float = 1.0,
               hand: float = 0.3, partial: float = 0.12) -> np.ndarray:  # fmt: skip
    """The crop a localizer returns for a photo of ``img`` lying on a desk (same size as
    ``img``). ``hand``: probability of fingers over an edge; ``partial``: probability that the
    localizer returns only part of the page (one side cut by 10-30%)."""
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected a BGR uint8 (H, W, 3) image, got {img.dtype} {img.shape}")
    s = float(np.clip(strength, 0, 1.5))
    H, W = img.shape[:2]
    # the page on the desk (desk coordinates: page centred): rotation, scale, camera tilt
    src = np.array([[0, 0], [W, 0], [W, H], [0, H]], np.float32)
    ang = np.radians(float(rng.uniform(-12, 12)) * s)
    R = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]], np.float32)
    c = np.array([W / 2, H / 2], np.float32)
    quad = (src - c) @ R.T * float(rng.uniform(0.92, 1.02)) + c
    quad = (quad + rng.uniform(-0.07, 0.07, (4, 2)) * s * np.array([W, H])).astype(np.float32)
    # the localizer's corners: errors, sometimes only part of the page
    loc = quad + (rng.uniform(-0.05, 0.05, (4, 2)) * s * np.array([W, H])).astype(np.float32)
    if rng.random() < partial * s:
        e = int(rng.integers(4))
        cut = float(rng.uniform(0.1, 0.3))
        i, j = e, (e + 1) % 4  # move edge (i, j) towards the opposite edge
        oi, oj = (e + 3) % 4, (e + 2) % 4
        loc[i] = loc[i] + (loc[oi] - loc[i]) * cut
        loc[j] = loc[j] + (loc[oj] - loc[j]) * cut
    # everything is drawn straight in the crop's coordinates (one warp: page -> desk -> crop)
    M = cv2.getPerspectiveTransform(loc.astype(np.float32), src) @ cv2.getPerspectiveTransform(
        src, quad)
    page = cv2.warpPerspective(img, M, (W, H), flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(np.ones((H, W), np.float32), M, (W, H))
    q = cv2.perspectiveTransform(src[None], M)[0]
    canvas = desk(rng, H, W).astype(np.float32)
    sh = cv2.GaussianBlur(mask, (0, 0), max(1.0, W / 60))
    sh = np.roll(sh, (int(rng.integers(1, 5)), int(rng.integers(1, 5))), (0, 1))
    m3 = mask[:, :, None]
    out = canvas * (1 - 0.35 * sh[:, :, None]) * (1 - m3) + page.astype(np.float32) * m3
    # paper curl / uneven light: a smooth multiplicative field
    light = cv2.resize(rng.uniform(1 - 0.25 * s, 1.05, (3, 3)).astype(np.float32), (W, H),
                       interpolation=cv2.INTER_CUBIC)  # fmt: skip
    out = np.clip(out * light[:, :, None], 0, 255).astype(np.uint8)
    if rng.random() < hand * s:
        _hand(out, rng, q.astype(np.float32))
    crop = out
    cond = CaptureConditions(crop=0.0)
    return simulate_capture(crop, rng, s, cond).image


def capture_mix(img: np.ndarray, rng: np.random.Generator,
                strength_range: Tuple[float, float] = (0.3, 1.0),
                p_photo: float = 0.6) -> np.ndarray:  # fmt: skip
    """One training / evaluation view: with probability ``p_photo`` a photographed crop
    (:func:`photograph`), otherwise the flat capture simulator; strength uniform in the range."""
    s = float(rng.uniform(*strength_range))
    if rng.random() < p_photo:
        return photograph(img, rng, s)
    return simulate_capture(img, rng, s).image
