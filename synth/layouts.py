"""Text-page documents set in real fonts: articles (one or two columns), reports with tables,
forms with boxes and labels, letters and invoices, lists, pages with figures and photos,
stamps and signatures.

Each page is an *instance class*: ``render_page(page_id)`` is a pure function of
``(page_id, seed, long_side)`` (same bytes on a machine with the same font files), and two
captures of one page are the same class for training, as a clean scan registered in a gallery
and a photo of that paper are. Layout kinds are drawn per page; text is pseudo-words drawn from
English letter frequencies (so line lengths, word gaps and ascenders look like real text).

    img = render_page(12345)                 # BGR uint8, long side 320 px, A4/letter aspect
    img = render_page(7, kind="form")
"""

from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .fonts import load_font, split_styles, system_fonts

LAYOUT_VERSION = "docedge-pages-1"
KINDS = ("article", "two_column", "report", "form", "letter", "invoice", "list", "figures",
         "slide")  # fmt: skip
#: First page id used for training; ids below are reserved for evaluation.
FIRST_TRAIN_PAGE_ID = 100_000

_LETTERS = "etaoinshrdlcumwfgypbvkjxqz"
_FREQ = np.array([12.7, 9.1, 8.2, 7.5, 7.0, 6.7, 6.3, 6.1, 6.0, 4.3, 4.0, 2.8, 2.8, 2.4, 2.4,
                  2.2, 2.0, 2.0, 1.9, 1.5, 1.0, 0.8, 0.2, 0.2, 0.1, 0.1])  # fmt: skip
_FREQ = _FREQ / _FREQ.sum()
_WLEN = np.array([3, 14, 20, 16, 12, 10, 8, 6, 4, 3, 2, 1, 1], float)
_WLEN = _WLEN / _WLEN.sum()

Color = Tuple[int, int, int]


def words(rng: np.random.Generator, n: int, caps: float = 0.08) -> List[str]:
    """``n`` pseudo-words (English letter and length statistics, some capitalized)."""
    lens = rng.choice(np.arange(1, 14), n, p=_WLEN)
    letters = rng.choice(list(_LETTERS), int(lens.sum()), p=_FREQ)
    out, i = [], 0
    for L in lens:
        w = "".join(letters[i : i + L])
        i += L
        if rng.random() < caps:
            w = w.capitalize()
        out.append(w)
    return out


def sentence(rng: np.random.Generator, n: int) -> str:
    ws = words(rng, n)
    ws[0] = ws[0].capitalize()
    s = " ".join(ws)
    return s + "." if rng.random() < 0.7 else s


def number(rng: np.random.Generator, digits: int) -> str:
    return "".join(str(d) for d in rng.integers(0, 10, digits))


class Page:
    """A PIL canvas with a random style (fonts, sizes, colours, margins) for one page."""

    def __init__(self, rng: np.random.Generator, width: int, height: int, paper: Color) -> None:
        from PIL import Image, ImageDraw

        self.rng, self.W, self.H = rng, width, height
        self.img = Image.new("RGB", (width, height), paper)
        self.draw = ImageDraw.Draw(self.img)
        fonts = system_fonts()
        regular, bold, mono = split_styles(fonts)
        self.body = regular[int(rng.integers(len(regular)))]
        self.bold = bold[int(rng.integers(len(bold)))] if rng.random() < 0.8 else self.body
        self.mono = mono[int(rng.integers(len(mono)))]
        base = height / float(rng.uniform(55, 95))  # body text: 55-95 lines per page height
        self.size = max(4, round(base * 0.8))
        self.lead = max(self.size + 1, round(self.size * float(rng.uniform(1.15, 1.5))))
        ink = int(rng.integers(0, 60))
        self.ink: Color = (ink, ink, ink)
        self.accent: Color = tuple(int(c) for c in rng.integers(0, 180, 3))  # type: ignore
        if rng.random() < 0.5:
            self.accent = self.ink
        m = float(rng.uniform(0.06, 0.13))
        self.left, self.right = int(width * m), int(width * (1 - m * float(rng.uniform(0.8, 1.2))))
        self.top, self.bottom = int(height * float(rng.uniform(0.05, 0.1))), int(height * 0.94)
        self.y = self.top

    def font(self, size: Optional[int] = None, kind: str = "body"):  # type: ignore
        path = {"body": self.body, "bold": self.bold, "mono": self.mono}[kind]
        return load_font(path, size or self.size)

    def text(self, xy: Tuple[int, int], s: str, size: Optional[int] = None, kind: str = "body",
             fill: Optional[Color] = None) -> None:  # fmt: skip
        self.draw.text(xy, s, font=self.font(size, kind), fill=fill or self.ink)

    def width_of(self, s: str, size: Optional[int] = None, kind: str = "body") -> float:
        return float(self.font(size, kind).getlength(s))

    def paragraph(self, x0: int, x1: int, y: int, n_words: int, size: Optional[int] = None,
                  justify_last: bool = False, kind: str = "body",
                  indent: int = 0) -> int:  # fmt: skip
        """Fill-flow ``n_words`` pseudo-words in columns ``x0..x1`` from ``y``; returns next y."""
        size = size or self.size
        lead = round(self.lead * size / self.size)
        f = self.font(size, kind)
        space = f.getlength(" ")
        ws = words(self.rng, n_words)
        line: List[str] = []
        width = indent
        for w in ws:
            wl = f.getlength(w)
            if line and width + space + wl > x1 - x0:
                if y + lead > self.bottom:
                    return y
                self.draw.text((x0 + (indent if y == -1 else 0), y), " ".join(line), font=f,
                               fill=self.ink)  # fmt: skip
                y += lead
                line, width = [], 0
            line.append(w)
            width += wl + (space if len(line) > 1 else 0)
        if line and y + lead <= self.bottom:
            self.draw.text((x0, y), " ".join(line), font=f, fill=self.ink)
            y += lead
        return y

    def heading(self, x0: int, y: int, scale: float, n: int = 0) -> int:
        size = max(5, int(self.size * scale))
        s = " ".join(words(self.rng, n or int(self.rng.integers(1, 6)))).title()
        if self.rng.random() < 0.4:
            s = f"{int(self.rng.integers(1, 12))}.{int(self.rng.integers(1, 9))} {s}"
        self.text((x0, y), s, size, "bold", self.accent)
        return y + int(size * 1.5)

    def rule(self, y: int, x0: Optional[int] = None, x1: Optional[int] = None, w: int = 1,
             fill: Optional[Color] = None) -> None:  # fmt: skip
        self.draw.line([(x0 or self.left, y), (x1 or self.right, y)], fill=fill or self.ink,
                       width=w)  # fmt: skip

    def to_bgr(self) -> np.ndarray:
        rgb = np.asarray(self.img)
        return np.ascontiguousarray(rgb[:, :, ::-1])


# ----- page elements ---------------------------------------------------------------------


def _photo(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A photo-like RGB patch: smooth colour field, a horizon, blobs (no real content)."""
    small = rng.integers(0, 256, (3, 4, 3)).astype(np.uint8)
    img: np.ndarray = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    for _ in range(int(rng.integers(2, 6))):
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        ax = (int(rng.integers(2, max(3, w // 3))), int(rng.integers(2, max(3, h // 3))))
        cv2.ellipse(img, c, ax, float(rng.uniform(0, 180)), 0, 360,
                    tuple(float(v) for v in rng.integers(0, 256, 3)), -1)  # fmt: skip
    img = np.asarray(cv2.GaussianBlur(img, (0, 0), max(0.8, w / 40)), np.float32)
    img += rng.normal(0, 6, img.shape)
    out: np.ndarray = np.clip(img, 0, 255).astype(np.uint8)
    return out


def _chart(p: Page, box: Tuple[int, int, int, int]) -> None:
    x0, y0, x1, y1 = box
    rng, d = p.rng, p.draw
    d.rectangle([x0, y0, x1, y1], outline=p.ink)
    kind = int(rng.integers(4))
    n = int(rng.integers(4, 14))
    col = tuple(int(c) for c in rng.integers(0, 200, 3))
    if kind == 0:  # bars
        vals = rng.uniform(0.1, 0.95, n)
        bw = (x1 - x0) / (n * 1.4)
        for i, v in enumerate(vals):
            bx = x0 + (i + 0.3) * (x1 - x0) / n
            d.rectangle([bx, y1 - v * (y1 - y0), bx + bw, y1], fill=col)
    elif kind == 1:  # line plot(s)
        for _ in range(int(rng.integers(1, 4))):
            ys = np.cumsum(rng.normal(0, 1, 30))
            ys = (ys - ys.min()) / (np.ptp(ys) + 1e-6)
            pts = [(x0 + i * (x1 - x0) / 29, y1 - 4 - v * (y1 - y0 - 8)) for i, v in enumerate(ys)]
            d.line(pts, fill=tuple(int(c) for c in rng.integers(0, 200, 3)), width=1)
    elif kind == 2:  # pie
        vals = rng.uniform(0.2, 1, int(rng.integers(3, 7)))
        a = 0.0
        r = min(x1 - x0, y1 - y0) // 2 - 3
        cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
        for v in vals / vals.sum():
            d.pieslice([cx - r, cy - r, cx + r, cy + r], a, a + 360 * v,
                       fill=tuple(int(c) for c in rng.integers(40, 240, 3)), outline=p.ink)
            a += 360 * v
    else:  # diagram: boxes and arrows
        k = int(rng.integers(3, 7))
        cs = []
        for _ in range(k):
            bx, by = int(rng.integers(x0 + 2, max(x0 + 3, x1 - 30))), int(
                rng.integers(y0 + 2, max(y0 + 3, y1 - 14)))
            d.rectangle([bx, by, bx + (x1 - x0) // 5, by + (y1 - y0) // 6], outline=p.ink)
            cs.append((bx + (x1 - x0) // 10, by + (y1 - y0) // 12))
        for a_, b_ in zip(cs, cs[1:]):
            d.line([a_, b_], fill=p.ink, width=1)
    # grid ticks / caption
    if box[3] + p.lead < p.bottom:
        p.text((x0, y1 + 2), "Figure " + number(rng, 1) + ": " + sentence(rng, 6), max(4, int(p.size * 0.85)))


def _table(p: Page, x0: int, x1: int, y: int, rows: int, cols: int, style: int) -> int:
    rng = p.rng
    rh = int(p.lead * float(rng.uniform(1.0, 1.6)))
    widths = rng.uniform(0.5, 2.0, cols)
    xs = [x0, *list(x0 + np.cumsum(widths / widths.sum() * (x1 - x0)).astype(int))]
    size = max(4, int(p.size * 0.9))
    header_fill = tuple(int(c) for c in rng.integers(150, 240, 3))
    for r in range(rows):
        yy = y + r * rh
        if yy + rh > p.bottom:
            rows = r
            break
        if r == 0 and style != 2:
            p.draw.rectangle([x0, yy, x1, yy + rh], fill=header_fill)
        elif style == 2 and r % 2 == 1:
            p.draw.rectangle([x0, yy, x1, yy + rh], fill=(235, 235, 235))
        for c in range(cols):
            if rng.random() < 0.85:
                if c == 0 or rng.random() < 0.4:
                    s = " ".join(words(rng, int(rng.integers(1, 3))))
                else:
                    s = f"{number(rng, int(rng.integers(1, 5)))}.{number(rng, 2)}"
                p.text((xs[c] + 2, yy + (rh - size) // 2), s, size,
                       "bold" if r == 0 else "body")  # fmt: skip
    yb = y + rows * rh
    if style in (0, 1):
        for r in range(rows + 1):
            if style == 0 or r in (0, 1, rows):
                p.rule(y + r * rh, x0, x1)
    if style == 0:
        for x in xs:
            p.draw.line([(x, y), (x, yb)], fill=p.ink)
    return yb + p.lead


def _stamp(p: Page, cx: int, cy: int, r: int) -> None:
    from PIL import Image, ImageDraw

    rng = p.rng
    col = ((200, 30, 40), (30, 50, 170), (40, 120, 60), (120, 40, 150))[int(rng.integers(4))]
    size = 2 * r + 4
    layer = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(layer)
    if rng.random() < 0.6:
        d.ellipse([2, 2, size - 3, size - 3], outline=255, width=max(1, r // 12))
        d.ellipse([r // 4, r // 4, size - r // 4, size - r // 4], outline=255, width=1)
    else:
        d.rectangle([2, size // 4, size - 3, 3 * size // 4], outline=255, width=max(1, r // 12))
    f = load_font(p.bold, max(5, r // 3))
    d.text((size // 2, size // 2), " ".join(words(rng, 1)).upper()[:8], font=f, fill=255,
           anchor="mm")  # fmt: skip
    layer = layer.rotate(float(rng.uniform(-30, 30)))
    a = np.asarray(layer, np.float32) / 255 * float(rng.uniform(0.5, 0.9))
    base = np.asarray(p.img).astype(np.float32)
    x0, y0 = cx - size // 2, cy - size // 2
    xa, ya, xb, yb = max(0, x0), max(0, y0), min(p.W, x0 + size), min(p.H, y0 + size)
    if xb <= xa or yb <= ya:
        return
    sub = a[ya - y0 : yb - y0, xa - x0 : xb - x0, None]
    base[ya:yb, xa:xb] = base[ya:yb, xa:xb] * (1 - sub) + np.array(col, np.float32) * sub
    from PIL import Image as _I

    p.img.paste(_I.fromarray(base.astype(np.uint8)))


def _signature(p: Page, x0: int, y0: int, w: int, h: int) -> None:
    rng = p.rng
    t = np.linspace(0, 1, 120)
    n = int(rng.integers(3, 8))
    xs = x0 + w * t + rng.normal(0, w * 0.02, t.size).cumsum() * 0.2
    ys = y0 + h * 0.5 + h * 0.4 * np.sin(2 * np.pi * n * t + rng.uniform(0, 6)) * rng.uniform(0.4, 1)
    col = ((20, 20, 120), (10, 10, 10), (30, 30, 90))[int(rng.integers(3))]
    p.draw.line(list(zip(xs.tolist(), ys.tolist())), fill=col, width=max(1, h // 12))


def _header(p: Page) -> None:
    rng = p.rng
    if rng.random() < 0.5:  # running head
        p.text((p.left, int(p.top * 0.5)), " ".join(words(rng, 4)).title(), max(4, int(p.size * 0.8)))
        p.rule(int(p.top * 0.5) + p.size + 2)
    if rng.random() < 0.7:  # page number
        s = str(int(rng.integers(1, 400)))
        pos = int(rng.integers(3))
        x = (p.left, (p.left + p.right) // 2, p.right - 12)[pos]
        p.text((x, int(p.H * 0.955)), s, max(4, int(p.size * 0.85)))


def _logo(p: Page, x: int, y: int, s: int) -> None:
    rng = p.rng
    col: Color = tuple(int(c) for c in rng.integers(0, 200, 3))  # type: ignore[assignment]
    k = int(rng.integers(3))
    if k == 0:
        p.draw.ellipse([x, y, x + s, y + s], fill=col)
    elif k == 1:
        p.draw.rectangle([x, y, x + s, y + s], fill=col)
    else:
        p.draw.polygon([(x, y + s), (x + s // 2, y), (x + s, y + s)], fill=col)
    p.text((x + s + 4, y + s // 4), " ".join(words(rng, 2)).upper(), max(5, s // 2), "bold", col)


# ----- layouts ---------------------------------------------------------------------------


def _flow(p: Page, cols: int, figs: float, tables: float) -> None:
    rng = p.rng
    gap = int(p.W * 0.04)
    colw = (p.right - p.left - gap * (cols - 1)) // cols
    if rng.random() < 0.6:  # title block across columns
        p.y = p.heading(p.left, p.y, float(rng.uniform(1.8, 3.0)), int(rng.integers(2, 8)))
        if rng.random() < 0.5:
            p.y = p.paragraph(p.left + p.W // 8, p.right - p.W // 8, p.y, int(rng.integers(5, 15)),
                              int(p.size * 0.9))  # fmt: skip
        p.y += p.lead
    ytop = p.y
    for c in range(cols):
        x0 = p.left + c * (colw + gap)
        x1 = x0 + colw
        y = ytop
        while y < p.bottom - 2 * p.lead:
            u = rng.random()
            if u < 0.15:
                y = p.heading(x0, y + p.lead // 2, float(rng.uniform(1.1, 1.6)))
            elif u < 0.15 + figs:
                h = int(colw * float(rng.uniform(0.4, 0.8)))
                if y + h + 2 * p.lead > p.bottom:
                    break
                if rng.random() < 0.5:
                    _chart(p, (x0, y, x1, y + h))
                else:
                    from PIL import Image

                    ph = _photo(rng, x1 - x0, h)
                    p.img.paste(Image.fromarray(ph), (x0, y))
                y += h + 2 * p.lead
            elif u < 0.15 + figs + tables:
                y = _table(p, x0, x1, y, int(rng.integers(3, 12)), int(rng.integers(2, 6)),
                           int(rng.integers(3)))  # fmt: skip
            elif u < 0.25 + figs + tables and cols == 1:  # indented code / quote
                y = p.paragraph(x0 + p.W // 15, x1, y, int(rng.integers(8, 40)),
                                kind="mono" if rng.random() < 0.5 else "body")  # fmt: skip
                y += p.lead // 2
            else:
                y = p.paragraph(x0, x1, y, int(rng.integers(20, 120)))
                y += int(p.lead * float(rng.uniform(0, 0.8)))
    if cols == 2 and rng.random() < 0.5:
        xm = p.left + colw + gap // 2
        p.draw.line([(xm, ytop), (xm, p.bottom)], fill=(150, 150, 150))


def _form(p: Page) -> None:
    rng = p.rng
    _logo(p, p.left, p.y, int(p.size * 2.5))
    p.y += int(p.size * 3.5)
    p.y = p.heading(p.left, p.y, float(rng.uniform(1.5, 2.4)), int(rng.integers(2, 5)))
    box_h = int(p.lead * float(rng.uniform(1.4, 2.2)))
    small = max(4, int(p.size * 0.8))
    while p.y < p.bottom - 3 * box_h:
        u = rng.random()
        if u < 0.6:  # a row of labelled boxes
            n = int(rng.integers(1, 4))
            ws = rng.uniform(0.5, 1.5, n)
            xs = p.left + np.concatenate([[0], np.cumsum(ws / ws.sum())]) * (p.right - p.left)
            for i in range(n):
                a, b = int(xs[i]) + 2, int(xs[i + 1]) - 2
                p.text((a, p.y), " ".join(words(rng, int(rng.integers(1, 4)))).title(), small)
                p.draw.rectangle([a, p.y + small + 2, b, p.y + small + 2 + box_h], outline=p.ink)
                if rng.random() < 0.5:  # filled in
                    p.text((a + 3, p.y + small + 4), " ".join(words(rng, int(rng.integers(1, 4)))),
                           p.size, "mono" if rng.random() < 0.3 else "body", (20, 20, 110))
            p.y += small + box_h + p.lead
        elif u < 0.75:  # checkboxes
            for _ in range(int(rng.integers(2, 5))):
                x = p.left + int(rng.integers(0, (p.right - p.left) // 2))
                s = p.size
                p.draw.rectangle([x, p.y, x + s, p.y + s], outline=p.ink)
                if rng.random() < 0.4:
                    p.draw.line([(x, p.y), (x + s, p.y + s)], fill=p.ink)
                p.text((x + s + 4, p.y), " ".join(words(rng, int(rng.integers(1, 5)))), small)
                p.y += p.lead
        elif u < 0.85:
            p.y = _table(p, p.left, p.right, p.y, int(rng.integers(3, 8)), int(rng.integers(2, 6)), 0)
        else:
            p.y = p.paragraph(p.left, p.right, p.y, int(rng.integers(10, 50)), small)
            p.y += p.lead // 2
    if rng.random() < 0.7:
        _signature(p, p.right - p.W // 3, p.bottom - 3 * p.lead, p.W // 4, 2 * p.lead)


def _letter(p: Page, invoice: bool) -> None:
    rng = p.rng
    _logo(p, p.left, p.y, int(p.size * float(rng.uniform(2, 4))))
    for k in range(int(rng.integers(2, 5))):  # sender address, right
        s = " ".join(words(rng, int(rng.integers(2, 5)))).title()
        p.text((p.right - int(p.width_of(s)) - 2, p.y + k * p.lead), s, max(4, int(p.size * 0.85)))
    p.y += 5 * p.lead
    for _ in range(int(rng.integers(3, 5))):  # recipient
        p.text((p.left, p.y), " ".join(words(rng, int(rng.integers(2, 4)))).title())
        p.y += p.lead
    p.y += p.lead
    p.text((p.right - p.W // 4, p.y), f"{number(rng, 2)}.{number(rng, 2)}.20{number(rng, 2)}")
    p.y += 2 * p.lead
    p.y = p.heading(p.left, p.y, 1.2, int(rng.integers(2, 6)))
    if invoice:
        p.y = _table(p, p.left, p.right, p.y, int(rng.integers(4, 14)), int(rng.integers(3, 6)),
                     int(rng.integers(3)))  # fmt: skip
        for k in range(3):
            s = f"{' '.join(words(rng, 1)).title()}: {number(rng, 3)}.{number(rng, 2)}"
            p.text((p.right - p.W // 3, p.y), s, kind="bold" if k == 2 else "body")
            p.y += p.lead
        p.y += p.lead
    for _ in range(int(rng.integers(1, 5))):
        p.y = p.paragraph(p.left, p.right, p.y, int(rng.integers(15, 80))) + p.lead // 2
    if p.y < p.bottom - 4 * p.lead:
        p.text((p.left, p.y), " ".join(words(rng, 2)).capitalize() + ",")
        _signature(p, p.left, p.y + p.lead, p.W // 4, 2 * p.lead)
        p.text((p.left, p.y + 3 * p.lead), " ".join(words(rng, 2)).title())
    if rng.random() < 0.4:
        _stamp(p, int(p.W * rng.uniform(0.5, 0.85)), int(p.H * rng.uniform(0.6, 0.9)),
               int(p.W * rng.uniform(0.06, 0.12)))  # fmt: skip
    if rng.random() < 0.5:  # footer band
        p.rule(int(p.H * 0.93), w=1, fill=p.accent)
        p.text((p.left, int(p.H * 0.94)), " ".join(words(rng, 10)), max(4, int(p.size * 0.7)))


def _list(p: Page) -> None:
    rng = p.rng
    p.y = p.heading(p.left, p.y, float(rng.uniform(1.5, 2.5)))
    bullet = ("\u2022", "-", "\u25aa", "1.")[int(rng.integers(4))]
    k = 1
    while p.y < p.bottom - 2 * p.lead:
        if rng.random() < 0.15:
            p.y = p.heading(p.left, p.y + p.lead // 2, 1.2)
            continue
        depth = int(rng.integers(0, 3)) if rng.random() < 0.3 else 0
        x = p.left + depth * p.size * 2
        mark = f"{k}." if bullet == "1." else bullet
        p.text((x, p.y), mark)
        p.y = p.paragraph(x + p.size * 2, p.right, p.y, int(rng.integers(3, 30)))
        k += 1
        if rng.random() < 0.3:
            p.y += p.lead // 2


def _slide(p: Page) -> None:
    rng = p.rng
    band = tuple(int(c) for c in rng.integers(0, 200, 3))
    p.draw.rectangle([0, 0, p.W, int(p.H * 0.15)], fill=band)
    p.text((p.left, int(p.H * 0.04)), " ".join(words(rng, int(rng.integers(2, 6)))).title(),
           int(p.H * 0.06), "bold", (255, 255, 255))  # fmt: skip
    p.y = int(p.H * 0.22)
    big = int(p.size * float(rng.uniform(1.4, 2.2)))
    half = rng.random() < 0.5
    x1 = (p.left + p.right) // 2 if half else p.right
    while p.y < p.bottom - 2 * big:
        p.text((p.left, p.y), "\u2022", big)
        p.y = p.paragraph(p.left + big, x1, p.y, int(rng.integers(3, 14)), big) + big // 2
    if half:
        _chart(p, ((p.left + p.right) // 2 + 8, int(p.H * 0.25), p.right, int(p.H * 0.75)))


def render_page(page_id: int, seed: int = 0, long_side: int = 320,
                kind: Optional[str] = None, supersample: Optional[int] = None
                ) -> np.ndarray:  # fmt: skip
    """Render text page ``page_id`` (BGR uint8, long side ``long_side``). Pure function of the
    arguments (given the same font files). ``kind`` forces a layout (one of :data:`KINDS`).
    ``supersample``: draw at this many times the size, then downscale (default 2 below a long
    side of 480 px, where 4-6 px fonts hint badly, else 1)."""
    if page_id < 0 or seed < 0:
        raise ValueError(f"page ids and seeds are >= 0, got {page_id}, {seed}")
    if long_side < 64:
        raise ValueError(f"long_side must be >= 64 px, got {long_side}")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown page kind {kind!r}; known: {KINDS}")
    rng = np.random.default_rng([page_id, seed, 4242])
    k = kind or KINDS[int(rng.choice(len(KINDS), p=[0.2, 0.16, 0.12, 0.12, 0.1, 0.08, 0.08, 0.08, 0.06]))]
    if k == "slide":
        aspect = float(rng.choice([4 / 3, 16 / 9]))
    else:
        aspect = float(rng.choice([1 / math.sqrt(2), 8.5 / 11, 0.75, 0.66])) * float(rng.uniform(0.97, 1.03))
    if aspect >= 1:
        W, H = long_side, round(long_side / aspect)
    else:
        H, W = long_side, round(long_side * aspect)
    # render at 2x and downscale: fonts hint badly at 4-6 px, printed text is sharp
    scale = supersample or (2 if long_side < 480 else 1)
    tone = int(rng.integers(225, 256))
    tint = rng.integers(-8, 4, 3)
    paper: Color = tuple(int(np.clip(tone + t, 0, 255)) for t in tint)  # type: ignore
    p = Page(rng, W * scale, H * scale, paper)
    _header(p)
    layouts: Dict[str, Callable[[], None]] = {
        "article": lambda: _flow(p, 1, 0.08, 0.06),
        "two_column": lambda: _flow(p, 2, 0.1, 0.05),
        "report": lambda: _flow(p, 1, 0.12, 0.25),
        "figures": lambda: _flow(p, int(rng.integers(1, 3)), 0.45, 0.05),
        "form": lambda: _form(p),
        "letter": lambda: _letter(p, False),
        "invoice": lambda: _letter(p, True),
        "list": lambda: _list(p),
        "slide": lambda: _slide(p),
    }
    layouts[k]()
    if k not in ("letter", "invoice") and rng.random() < 0.08:
        _stamp(p, int(p.W * rng.uniform(0.2, 0.85)), int(p.H * rng.uniform(0.2, 0.9)),
               int(p.W * rng.uniform(0.05, 0.1)))  # fmt: skip
    img = p.to_bgr()
    return cv2.resize(img, (W, H), interpolation=cv2.INTER_AREA)


def page_kind(page_id: int, seed: int = 0) -> str:
    """The layout kind ``render_page(page_id, seed)`` draws."""
    rng = np.random.default_rng([page_id, seed, 4242])
    return KINDS[int(rng.choice(len(KINDS), p=[0.2, 0.16, 0.12, 0.12, 0.1, 0.08, 0.08, 0.08, 0.06]))]


def page_ids(count: int, first: int = 0) -> Sequence[int]:
    return range(first, first + count)
