"""Real fonts for synthetic pages: find TrueType/OpenType files on the system, load them cached.

Debian ships free fonts as packages (``fonts-dejavu``, ``fonts-liberation``,
``fonts-freefont-ttf``, ``fonts-noto-core``); their files land under ``/usr/share/fonts``.
``find_fonts()`` lists the usable ones in a fixed (sorted) order so that a seeded generator
picks the same font on every machine that has the same font packages; when none is found,
:class:`FontsNotFoundError` says which packages to install.

    fonts = find_fonts()                   # sorted list of Paths
    f = load_font(fonts[0], 14)            # PIL ImageFont.FreeTypeFont (cached)
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from docedge.runtime.errors import DocedgeError

logger = logging.getLogger(__name__)

#: Where fonts are searched (``DOCEDGE_FONT_DIRS``, ``os.pathsep``-separated, overrides).
FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts")
#: Debian packages that provide the fonts the generator was built with.
FONT_PACKAGES = ("fonts-dejavu", "fonts-liberation", "fonts-freefont-ttf", "fonts-noto-core")
#: Families preferred when present (the rest of the Noto set is large; these cover Latin text).
PREFERRED = (
    "DejaVu", "Liberation", "Free", "NotoSans-", "NotoSerif-", "NotoSansMono-",
    "NotoSansDisplay-", "NotoSerifDisplay-",
)  # fmt: skip
_SKIP = ("Emoji", "Symbols", "Math", "Music", "CJK", "Braille", "Sign")


class FontsNotFoundError(DocedgeError):
    """No usable font file was found."""


def font_dirs() -> Tuple[Path, ...]:
    env = os.environ.get("DOCEDGE_FONT_DIRS")
    dirs = env.split(os.pathsep) if env else FONT_DIRS
    return tuple(Path(d) for d in dirs if d)


def _usable(p: Path) -> bool:
    name = p.name
    if p.suffix.lower() not in (".ttf", ".otf"):
        return False
    if any(s in name for s in _SKIP):
        return False
    return any(name.startswith(k) for k in PREFERRED)


def find_fonts(dirs: Optional[Iterable[Path]] = None, require: bool = True) -> List[Path]:
    """Usable Latin text fonts under ``dirs`` (default :func:`font_dirs`), sorted by file name
    (then path), so the list order, and so a seeded choice, is the same on every machine with the
    same font packages. ``require`` raises :class:`FontsNotFoundError` when none is found."""
    found: Dict[str, Path] = {}
    for d in dirs if dirs is not None else font_dirs():
        d = Path(d)
        if not d.is_dir():
            continue
        for p in d.rglob("*"):
            if p.is_file() and _usable(p):
                found.setdefault(p.name, p)  # one file per name (same font in two dirs)
    fonts = [found[k] for k in sorted(found)]
    if not fonts and require:
        where = ", ".join(str(d) for d in (dirs if dirs is not None else font_dirs()))
        raise FontsNotFoundError(
            f"no usable .ttf/.otf fonts under {where}; install the Debian packages "
            f"{' '.join(FONT_PACKAGES)} (apt-get install -y ...) or point DOCEDGE_FONT_DIRS "
            "at a folder of fonts"
        )
    logger.debug("found %d fonts", len(fonts))
    return fonts


@lru_cache(maxsize=1)
def system_fonts() -> Tuple[Path, ...]:
    """:func:`find_fonts` of the default folders, computed once per process."""
    return tuple(find_fonts())


def split_styles(fonts: Sequence[Path]) -> Tuple[List[Path], List[Path], List[Path]]:
    """(regular, bold, mono) subsets of ``fonts`` by file name (each falls back to ``fonts``)."""
    bold = [p for p in fonts if "Bold" in p.name and "Italic" not in p.name]
    mono = [p for p in fonts if "Mono" in p.name]
    regular = [p for p in fonts if "Bold" not in p.name and "Mono" not in p.name]
    return regular or list(fonts), bold or list(fonts), mono or list(fonts)


@lru_cache(maxsize=4096)
def load_font(path: Path, size: int):  # type: ignore[no-untyped-def]
    """PIL FreeType font of ``path`` at ``size`` px (cached)."""
    from PIL import ImageFont

    return ImageFont.truetype(str(path), max(4, int(size)))
