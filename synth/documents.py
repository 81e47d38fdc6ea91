"""Deterministic synthetic document types and instances (OpenCV drawing, no downloads).

A *type* (``DocumentType.from_id(type_id)``) fixes a layout: family (ID card, passport page,
receipt, ...), aspect ratio, background gradient, header band, emblem, photo box, field grid,
table, machine-readable zone, security waves, seal and border. An *instance*
(``render(doc_type, instance_seed)``) fills the layout with random text and a random photo and
jitters positions slightly, as real documents of one type differ. Type ids are unbounded, so
training and zero-shot evaluation can use disjoint ids (the demo model trains on ids >= 1000
and is evaluated on ids below 1000).

Rendering is fully determined by ``(type_id, seed, instance_seed, long_side)``; at the default
long side of 256 px one render takes about 1 ms on one core (the network sees 128x128).

    t = DocumentType.from_id(42)          # layout of type 42 (a pure function of the id)
    img = render(t, instance_seed=3)      # BGR uint8 (H, W, 3), long side 256 px
    type_name(42)                         # "t00042_<family>", the folder name of the type
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import cv2
import numpy as np

GENERATOR_VERSION = "docedge-synth-1"

FAMILIES = (
    "id_front", "id_back", "driving_licence", "health_card", "residence_permit",
    "passport_page", "passport_cover", "vehicle_registration", "form", "receipt", "certificate",
)  # fmt: skip
#: Width / height of each family (ID-1 cards 85.6x54 mm, passport pages, A4, receipts).
ASPECT = {
    "id_front": 1.586, "id_back": 1.586, "driving_licence": 1.586, "health_card": 1.586,
    "residence_permit": 1.586, "passport_page": 1.42, "passport_cover": 0.70,
    "vehicle_registration": 1.45, "form": 0.707, "receipt": 0.38, "certificate": 1.414,
}  # fmt: skip
ALNUM = list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
#: First type id used for training; ids below it are reserved for zero-shot evaluation.
FIRST_TRAIN_TYPE_ID = 1000

Color = Tuple[int, int, int]


def _color(rng: np.random.Generator, lo: int = 0, hi: int = 256) -> Color:
    c = rng.integers(lo, hi, 3)
    return (int(c[0]), int(c[1]), int(c[2]))


@dataclass
class DocumentType:
    """The layout of one synthetic document type (all fields derived from ``type_id``)."""

    type_id: int
    seed: int
    family: str
    aspect: float
    bg1: Color
    bg2: Color
    grad_dir: int
    header_h: float
    header_col: Color
    header_pos: int
    footer: bool
    footer_col: Color
    logo_kind: int
    logo_col: Color
    logo_pos: Tuple[float, float]
    logo_r: float
    photo: bool
    photo_box: Tuple[float, float, float]
    n_fields: int
    field_cols: int
    text_col: Color
    label_col: Color
    font: int
    table: bool
    table_rows: int
    table_cols: int
    waves: int
    wave_col: Color
    wave_f: float
    wave_a: float
    border: int
    border_col: Color
    title: str
    stripes: int
    stripe_col: Color
    mrz: bool
    seal: bool
    seal_pos: Tuple[float, float]

    @property
    def name(self) -> str:
        """Folder-friendly name, e.g. ``t00042_passport_page``."""
        return type_name(self.type_id, self.family)

    @property
    def photo_left(self) -> bool:
        return self.photo_box[0] < 0.3

    @classmethod
    def from_id(cls, type_id: int, seed: int = 0) -> DocumentType:
        """The layout of type ``type_id`` >= 0 (deterministic; ``seed`` selects another universe
        of types: the same id under another seed is an unrelated layout)."""
        if type_id < 0 or seed < 0:
            raise ValueError(f"type ids and seeds are >= 0, got type_id={type_id}, seed={seed}")
        r = np.random.default_rng([type_id, seed, 17])
        family = FAMILIES[int(r.integers(len(FAMILIES)))]
        aspect = ASPECT[family] * float(r.uniform(0.93, 1.07))
        bg1, bg2 = _color(r, 120, 256), _color(r, 100, 256)
        grad_dir = int(r.integers(4))
        header_h = float(r.uniform(0.08, 0.25))
        header_col = _color(r, 0, 200)
        header_pos = int(r.integers(3))
        footer = bool(r.random() < 0.5)
        footer_col = _color(r, 0, 220)
        logo_kind = int(r.integers(4))
        logo_col = _color(r, 0, 256)
        logo_pos = (float(r.uniform(0.05, 0.9)), float(r.uniform(0.05, 0.3)))
        logo_r = float(r.uniform(0.04, 0.1))
        no_photo = ("form", "receipt", "certificate", "passport_cover", "vehicle_registration")
        photo = bool(family not in no_photo or r.random() < 0.3)
        photo_box = (
            float(r.uniform(0.03, 0.6)), float(r.uniform(0.25, 0.45)), float(r.uniform(0.2, 0.32))
        )  # fmt: skip
        n_fields = int(r.integers(3, 10))
        field_cols = int(r.integers(1, 3))
        text_col, label_col = _color(r, 0, 90), _color(r, 0, 160)
        font = int(r.choice([0, 1, 2, 3, 4, 6, 7]))
        tabular = ("form", "receipt", "vehicle_registration", "certificate")
        table = bool(family in tabular and r.random() < 0.8)
        table_rows, table_cols = int(r.integers(3, 9)), int(r.integers(2, 5))
        waves = int(r.integers(0, 6))
        wave_col = _color(r, 100, 256)
        wave_f, wave_a = float(r.uniform(2, 12)), float(r.uniform(0.01, 0.06))
        border = int(r.integers(0, 3))
        border_col = _color(r, 0, 200)
        title = "".join(r.choice(ALNUM[:26], int(r.integers(5, 14))))
        stripes = int(r.integers(0, 4))
        stripe_col = _color(r, 0, 256)
        mrz = bool(family in ("passport_page", "id_back", "residence_permit") and r.random() < 0.8)
        seal = bool(r.random() < 0.4)
        seal_pos = (float(r.uniform(0.5, 0.9)), float(r.uniform(0.6, 0.9)))
        return cls(
            type_id, seed, family, aspect, bg1, bg2, grad_dir, header_h, header_col, header_pos,
            footer, footer_col, logo_kind, logo_col, logo_pos, logo_r, photo, photo_box, n_fields,
            field_cols, text_col, label_col, font, table, table_rows, table_cols, waves, wave_col,
            wave_f, wave_a, border, border_col, title, stripes, stripe_col, mrz, seal, seal_pos,
        )  # fmt: skip


def type_name(type_id: int, family: Optional[str] = None, seed: int = 0) -> str:
    """Folder-friendly name of a type, ``t<id, 5 digits>_<family>`` (e.g. ``t00042_receipt``).

    Without ``family`` the type's layout is derived (from ``type_id`` and ``seed``).
    """
    if family is None:
        family = DocumentType.from_id(type_id, seed).family
    return f"t{type_id:05d}_{family}"


def _background(t: DocumentType, height: int, width: int) -> np.ndarray:
    g = np.linspace(0, 1, width if t.grad_dir % 2 == 0 else height, dtype=np.float32)
    if t.grad_dir >= 2:
        g = g[::-1]
    c1 = np.array(t.bg1, np.float32)
    c2 = np.array(t.bg2, np.float32)
    if t.grad_dir % 2 == 0:
        img = c1[None, None] * (1 - g[None, :, None]) + c2[None, None] * g[None, :, None]
        img = img * np.ones((height, 1, 1), np.float32)
    else:
        img = c1[None, None] * (1 - g[:, None, None]) + c2[None, None] * g[:, None, None]
        img = img * np.ones((1, width, 1), np.float32)
    return np.ascontiguousarray(img.astype(np.uint8))


def _emblem(img: np.ndarray, t: DocumentType, width: int, height: int) -> None:
    cx, cy = int(width * t.logo_pos[0]), int(height * t.logo_pos[1])
    rr = int(min(width, height) * t.logo_r) + 1
    if t.logo_kind == 0:
        cv2.circle(img, (cx, cy), rr, t.logo_col, -1)
        cv2.circle(img, (cx, cy), rr // 2, (255, 255, 255), 1)
    elif t.logo_kind == 1:
        angles = np.linspace(0, 2 * np.pi, 6)[:-1]
        pts = np.array([[cx + rr * np.cos(a), cy + rr * np.sin(a)] for a in angles], np.int32)
        cv2.fillPoly(img, [pts], t.logo_col)
    elif t.logo_kind == 2:
        cv2.rectangle(img, (cx - rr, cy - rr), (cx + rr, cy + rr), t.logo_col, 2)
        cv2.line(img, (cx - rr, cy - rr), (cx + rr, cy + rr), t.logo_col, 2)
    else:
        angles = np.linspace(0, 2 * np.pi, 11)[:-1]
        radii = [rr if i % 2 == 0 else rr // 2 for i in range(len(angles))]
        pts = np.array(
            [[cx + r_ * np.cos(a), cy + r_ * np.sin(a)] for r_, a in zip(radii, angles)], np.int32
        )
        cv2.fillPoly(img, [pts], t.logo_col)


def render(t: DocumentType, instance_seed: int, long_side: int = 256) -> np.ndarray:
    """Render one instance of type ``t``: BGR uint8 ``(H, W, 3)``, long side ``long_side`` px,
    the other side from the type's aspect ratio. Instances differ in filled-in text, photo and
    small layout jitter; the same ``(t, instance_seed, long_side)`` gives identical bytes."""
    if long_side < 32:
        raise ValueError(f"long_side must be >= 32 px, got {long_side}")
    r = np.random.default_rng([t.type_id, instance_seed, 99])
    if t.aspect >= 1:
        W, H = long_side, round(long_side / t.aspect)
    else:
        H, W = long_side, round(long_side * t.aspect)

    def jit(v: float, s: float = 0.015) -> float:
        return v + float(r.uniform(-s, s))

    img = _background(t, H, W)
    xs = np.arange(W)
    for k in range(t.waves):  # guilloche-like security waves
        phase = xs / W * t.wave_f * np.pi * 2 + k
        ys = (H * (0.2 + 0.6 * k / max(1, t.waves)) + H * t.wave_a * np.sin(phase)).astype(np.int32)
        pts = np.stack([xs, ys], 1).reshape(-1, 1, 2)
        cv2.polylines(img, [pts], False, t.wave_col, 1, cv2.LINE_AA)
    for k in range(t.stripes):
        y = int(H * (0.3 + 0.15 * k))
        cv2.line(img, (0, y), (W, y + int(H * 0.1)), t.stripe_col, max(1, H // 40))
    hh = int(H * t.header_h)
    if t.header_pos == 0:
        cv2.rectangle(img, (0, 0), (W, hh), t.header_col, -1)
    elif t.header_pos == 1:
        cv2.rectangle(img, (0, 0), (int(W * 0.12), H), t.header_col, -1)
    else:
        cv2.rectangle(img, (0, 0), (W, hh // 2), t.header_col, -1)
        cv2.rectangle(img, (0, hh // 2 + 2), (W, hh // 2 + 4), t.header_col, -1)
    if t.footer:
        cv2.rectangle(img, (0, int(H * 0.92)), (W, H), t.footer_col, -1)
    fs = max(0.25, H / 450)
    title_col = (255, 255, 255) if sum(t.header_col) < 300 else (0, 0, 0)
    title_y = int(max(hh * 0.7, H * 0.08))
    cv2.putText(img, t.title, (int(W * jit(0.25)), title_y), t.font, fs * 1.2, title_col, 1,
                cv2.LINE_AA)  # fmt: skip
    _emblem(img, t, W, H)
    x0 = 0.05
    if t.photo:
        px, py, pw = t.photo_box
        pw_ = int(W * pw)
        ph_ = int(pw_ * 1.3)
        X, Y = int(W * jit(px, 0.005)), int(H * jit(py, 0.005))
        Y = min(Y, H - ph_ - 2)
        cv2.rectangle(img, (X, Y), (X + pw_, Y + ph_), _color(r, 150, 256), -1)
        cv2.ellipse(img, (X + pw_ // 2, Y + ph_ // 3), (pw_ // 4, ph_ // 5), 0, 0, 360,
                    _color(r, 60, 200), -1)  # fmt: skip
        cv2.ellipse(img, (X + pw_ // 2, Y + ph_), (pw_ // 2, ph_ // 3), 0, 180, 360,
                    _color(r, 0, 150), -1)  # fmt: skip
        if t.photo_left:
            x0 = px + pw + 0.04
    y0 = max(t.header_h + 0.08, 0.2)
    for i in range(t.n_fields):
        col, row = i % t.field_cols, i // t.field_cols
        fx, fy = x0 + col * (0.9 - x0) / t.field_cols, y0 + row * 0.09
        if fy > 0.88:
            break
        cv2.putText(img, f"F{i}", (int(W * fx), int(H * fy)), t.font, fs * 0.6, t.label_col, 1,
                    cv2.LINE_AA)  # fmt: skip
        val = "".join(r.choice(ALNUM, int(r.integers(4, 11))))
        pos = (int(W * jit(fx + 0.06, 0.004)), int(H * jit(fy + 0.035, 0.004)))
        cv2.putText(img, val, pos, t.font, fs * 0.8, t.text_col, 1, cv2.LINE_AA)
    if t.table:
        tx0, ty0, tx1, ty1 = int(W * 0.06), int(H * 0.55), int(W * 0.94), int(H * 0.88)
        for k in range(t.table_rows + 1):
            y = ty0 + (ty1 - ty0) * k // t.table_rows
            cv2.line(img, (tx0, y), (tx1, y), t.label_col, 1)
        for k in range(t.table_cols + 1):
            x = tx0 + (tx1 - tx0) * k // t.table_cols
            cv2.line(img, (x, ty0), (x, ty1), t.label_col, 1)
        for k in range(t.table_rows):
            for q in range(t.table_cols):
                if r.random() < 0.7:
                    cell = "".join(r.choice(ALNUM, int(r.integers(2, 6))))
                    pos = (tx0 + (tx1 - tx0) * q // t.table_cols + 2,
                           ty0 + (ty1 - ty0) * (k + 1) // t.table_rows - 2)  # fmt: skip
                    cv2.putText(img, cell, pos, t.font, fs * 0.45, t.text_col, 1)
    if t.mrz:  # machine-readable zone
        for k in range(2):
            line = "".join(r.choice([*ALNUM, *(["<"] * 10)], 30))
            cv2.putText(img, line, (int(W * 0.04), int(H * (0.86 + 0.06 * k))), 1, fs * 0.7,
                        (20, 20, 20), 1)  # fmt: skip
    if t.seal:
        centre = (int(W * t.seal_pos[0]), int(H * t.seal_pos[1]))
        cv2.circle(img, centre, int(min(W, H) * 0.08), t.logo_col, 1)
    for k in range(3):  # fine print
        line = "".join(r.choice(ALNUM, 40))
        cv2.putText(img, line, (int(W * 0.04), int(H * (0.93 + 0.02 * k))), 0, fs * 0.25,
                    t.label_col, 1)  # fmt: skip
    if t.border:
        cv2.rectangle(img, (1, 1), (W - 2, H - 2), t.border_col, t.border)
    return img


