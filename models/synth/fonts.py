"""Fonts for synthetic plates and container codes, from Debian packages that install offline."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import ImageFont

# (path, Debian package). Latin fonts render digits and letters; CJK fonts render province characters.
LATIN_FONTS: tuple[tuple[str, str], ...] = (
    ("/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed-Bold.ttf", "fonts-dejavu-core"),
    ("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf", "fonts-dejavu-core"),
    ("/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf", "fonts-dejavu-core"),
    ("/usr/share/fonts/truetype/liberation2/LiberationSans-Bold.ttf", "fonts-liberation2"),
    ("/usr/share/fonts/truetype/liberation2/LiberationMono-Bold.ttf", "fonts-liberation2"),
    ("/usr/share/fonts/truetype/freefont/FreeSansBold.ttf", "fonts-freefont-ttf"),
    ("/usr/share/fonts/truetype/freefont/FreeMonoBold.ttf", "fonts-freefont-ttf"),
)
CJK_FONTS: tuple[tuple[str, str], ...] = (
    ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", "fonts-wqy-microhei"),
    ("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", "fonts-wqy-zenhei"),
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc", "fonts-noto-cjk"),
)
APT_PACKAGES = sorted({pkg for _, pkg in LATIN_FONTS + CJK_FONTS})


class MissingFonts(RuntimeError):
    """No usable font of a kind is installed."""


@dataclass(frozen=True)
class FontSet:
    """The installed Latin and CJK font files."""

    latin: tuple[str, ...]
    cjk: tuple[str, ...]


@lru_cache(maxsize=1)
def installed_fonts() -> FontSet:
    """Every font above; raises MissingFonts naming the apt packages to install.

    All of them are required, not just some: a seed picks fonts by index, so the same seed gives
    the same images only with the same fonts.
    """
    missing = sorted({pkg for path, pkg in LATIN_FONTS + CJK_FONTS if not Path(path).is_file()})
    if missing:
        raise MissingFonts("synthetic plates and container codes need fonts from Debian packages; install them "
                           f"with: apt-get install {' '.join(missing)}")
    return FontSet(tuple(path for path, _ in LATIN_FONTS), tuple(path for path, _ in CJK_FONTS))


@lru_cache(maxsize=256)
def load_font(path: str, size: int) -> ImageFont.FreeTypeFont:
    """A cached FreeType font at a pixel size."""
    return ImageFont.truetype(path, size)
