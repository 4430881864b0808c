"""Draw the integration's brand images into custom_components/esphome_remote_build/brand/.

Home Assistant (2026.10) serves a custom integration's own brand images from its
``brand/`` folder at ``/api/brands/integration/<domain>/<image>``.  The names it serves are
``icon.png``, ``icon@2x.png``, ``logo.png``, ``logo@2x.png`` and their ``dark_`` variants;
a missing one falls back (``icon@2x.png`` and ``logo.png`` to ``icon.png``, dark ones to the
light ones).  This script writes:

* ``icon.png`` (256 x 256) and ``icon@2x.png`` (512 x 512): a rounded tile in ESPHome blue with
  a chip carrying an upload arrow, and a small gear — firmware built elsewhere, uploaded;
* ``logo.png`` (256 high) and ``logo@2x.png`` (512 high): the icon with the name beside it;
* ``dark_logo.png`` and ``dark_logo@2x.png``: the same with light lettering for dark
  themes (the icon reads well on both, so it has no dark variant).

Everything is drawn at four times the output size and scaled down with a Lanczos filter,
so edges stay crisp at both sizes.  The background is transparent.  Needs Pillow, which is
in the Home Assistant venv::

    .venv/bin/python scripts/make_brand.py [--out DIR]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

REPO_ROOT = Path(__file__).resolve().parents[1]
BRAND_DIR = REPO_ROOT / "custom_components" / "esphome_remote_build" / "brand"

#: Drawing happens at this multiple of the output size.
SUPERSAMPLE = 4
#: The icon is designed on a grid of this many units per side.
GRID = 1024

type Color = tuple[int, int, int]
type Box = tuple[float, float, float, float]

BLUE_TOP: Color = (38, 198, 246)
BLUE_BOTTOM: Color = (3, 118, 196)
WHITE: Color = (255, 255, 255)
NAVY: Color = (12, 45, 72)
TEXT: dict[bool, tuple[Color, Color]] = {
    False: ((22, 38, 52), (3, 136, 209)),  # light themes: dark name, blue subtitle
    True: ((236, 244, 250), (79, 200, 245)),  # dark themes: light name, light blue subtitle
}

# A bold sans-serif if the machine has one; Pillow's own font otherwise.
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/TTF/DejaVuSans-Bold.ttf",
    "/Library/Fonts/Arial Bold.ttf",
    "C:/Windows/Fonts/arialbd.ttf",
)

# Layout on the design grid.
TILE: Box = (32, 32, 992, 992)
TILE_RADIUS = 210
CHIP: Box = (236, 226, 646, 636)
CHIP_RADIUS = 62
PINS_PER_SIDE = 4
PIN_WIDTH, PIN_LENGTH, PIN_RADIUS = 48, 88, 14
ARROW_TOP, ARROW_BASE, ARROW_HALF_WIDTH = 298, 452, 120
SHAFT_HALF_WIDTH, SHAFT_BOTTOM = 46, 540
TRAY: tuple[float, float, float] = (128, 558, 604)  # half width, top, bottom
GEAR_CENTER, GEAR_RADIUS, GEAR_HOLE, GEAR_GAP = (770.0, 770.0), 152, 58, 34
GEAR_TEETH = 8


def _gradient(size: int) -> Image.Image:
    """The tile's vertical blue gradient, opaque, ``size`` pixels square."""
    column = Image.new("RGB", (1, size))
    for y in range(size):
        t = y / max(size - 1, 1)
        column.putpixel(
            (0, y),
            (
                round(BLUE_TOP[0] + (BLUE_BOTTOM[0] - BLUE_TOP[0]) * t),
                round(BLUE_TOP[1] + (BLUE_BOTTOM[1] - BLUE_TOP[1]) * t),
                round(BLUE_TOP[2] + (BLUE_BOTTOM[2] - BLUE_TOP[2]) * t),
            ),
        )
    return column.resize((size, size))


class _Canvas:
    """A supersampled square canvas addressed in design-grid units."""

    def __init__(self, pixels: int) -> None:
        self.pixels = pixels
        self.scale = pixels / GRID
        self.image = Image.new("RGBA", (pixels, pixels), (0, 0, 0, 0))
        self.blue = _gradient(pixels)

    def box(self, box: Box) -> Box:
        return (box[0] * self.scale, box[1] * self.scale, box[2] * self.scale, box[3] * self.scale)

    def mask(self) -> tuple[Image.Image, ImageDraw.ImageDraw]:
        mask = Image.new("L", (self.pixels, self.pixels), 0)
        return mask, ImageDraw.Draw(mask)

    def paint_blue(self, mask: Image.Image) -> None:
        """Fill the shape of ``mask`` with the tile's gradient (a cut-out look)."""
        self.image.paste(self.blue, (0, 0), mask)


def _chip(canvas: _Canvas) -> None:
    """White pins on four sides, then the white body over their inner ends."""
    draw = ImageDraw.Draw(canvas.image)
    s = canvas.scale
    left, top, right, bottom = CHIP
    overlap = 10
    for index in range(PINS_PER_SIDE):
        along_x = left + (right - left) * (index + 0.5) / PINS_PER_SIDE
        along_y = top + (bottom - top) * (index + 0.5) / PINS_PER_SIDE
        half = PIN_WIDTH / 2
        for pin in (
            (along_x - half, top - PIN_LENGTH, along_x + half, top + overlap),
            (along_x - half, bottom - overlap, along_x + half, bottom + PIN_LENGTH),
            (left - PIN_LENGTH, along_y - half, left + overlap, along_y + half),
            (right - overlap, along_y - half, right + PIN_LENGTH, along_y + half),
        ):
            draw.rounded_rectangle(canvas.box(pin), radius=PIN_RADIUS * s, fill=WHITE)
    draw.rounded_rectangle(canvas.box(CHIP), radius=CHIP_RADIUS * s, fill=WHITE)


def _upload_arrow(canvas: _Canvas) -> None:
    """An arrow pointing up over a tray, cut out of the chip in the tile's blue."""
    s = canvas.scale
    mask, draw = canvas.mask()
    cx = (CHIP[0] + CHIP[2]) / 2
    draw.polygon(
        [
            (cx * s, ARROW_TOP * s),
            ((cx + ARROW_HALF_WIDTH) * s, ARROW_BASE * s),
            ((cx - ARROW_HALF_WIDTH) * s, ARROW_BASE * s),
        ],
        fill=255,
    )
    shaft = (cx - SHAFT_HALF_WIDTH, ARROW_BASE - 20, cx + SHAFT_HALF_WIDTH, SHAFT_BOTTOM)
    draw.rounded_rectangle(canvas.box(shaft), radius=14 * s, fill=255)
    half, tray_top, tray_bottom = TRAY
    tray = (cx - half, tray_top, cx + half, tray_bottom)
    draw.rounded_rectangle(canvas.box(tray), radius=(tray_bottom - tray_top) / 2 * s, fill=255)
    canvas.paint_blue(mask)


def _gear(canvas: _Canvas) -> None:
    """A navy gear in the bottom right, set apart from the chip by a ring of tile blue."""
    s = canvas.scale
    cx, cy = GEAR_CENTER
    ring, draw = canvas.mask()
    outer = GEAR_RADIUS + GEAR_GAP
    draw.ellipse(canvas.box((cx - outer, cy - outer, cx + outer, cy + outer)), fill=255)
    canvas.paint_blue(ring)

    gear, draw = canvas.mask()
    body = GEAR_RADIUS * 0.74
    draw.ellipse(canvas.box((cx - body, cy - body, cx + body, cy + body)), fill=255)
    root, tip = GEAR_RADIUS * 0.25, GEAR_RADIUS * 0.17
    tooth = ((-root, -body * 0.92), (root, -body * 0.92), (tip, -GEAR_RADIUS), (-tip, -GEAR_RADIUS))
    for index in range(GEAR_TEETH):
        angle = 2 * math.pi * (index + 0.5) / GEAR_TEETH
        cos, sin = math.cos(angle), math.sin(angle)
        draw.polygon(
            [((cx + x * cos - y * sin) * s, (cy + x * sin + y * cos) * s) for x, y in tooth],
            fill=255,
        )
    draw.ellipse(
        canvas.box((cx - GEAR_HOLE, cy - GEAR_HOLE, cx + GEAR_HOLE, cy + GEAR_HOLE)), fill=0
    )
    canvas.image.paste(Image.new("RGBA", gear.size, (*NAVY, 255)), (0, 0), gear)


def render_icon(pixels: int) -> Image.Image:
    """Draw the icon at exactly ``pixels`` square (no downscaling)."""
    canvas = _Canvas(pixels)
    tile, draw = canvas.mask()
    draw.rounded_rectangle(canvas.box(TILE), radius=TILE_RADIUS * canvas.scale, fill=255)
    canvas.paint_blue(tile)
    _chip(canvas)
    _upload_arrow(canvas)
    _gear(canvas)
    # Nothing outside the tile: the ring and pins must not leave it.
    alpha = Image.composite(canvas.image.getchannel("A"), tile, tile)
    canvas.image.putalpha(alpha)
    return canvas.image


def draw_icon(size: int) -> Image.Image:
    """The icon, ``size`` pixels square: drawn supersampled, then scaled down."""
    big = render_icon(size * SUPERSAMPLE)
    return big.resize((size, size), Image.Resampling.LANCZOS)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for candidate in FONT_CANDIDATES:
        if Path(candidate).is_file():
            return ImageFont.truetype(candidate, size)
    return ImageFont.load_default(size)


def draw_logo(height: int, *, dark: bool, factor: int = 1) -> Image.Image:
    """The icon with the name to its right, ``height`` pixels high, as wide as it needs.

    ``factor`` 2 gives the ``@2x`` image: exactly twice the size of the ``factor`` 1 one.
    """
    title, subtitle = "ESPHome", "Remote Build"
    base = height * SUPERSAMPLE  # the layout is measured once, at the 1x size
    title_size, subtitle_size = round(base * 0.34), round(base * 0.25)
    gap, right_margin = round(base * 0.10), round(base * 0.04)
    measure = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
    text_width = max(
        measure.textbbox((0, 0), title, font=_font(title_size))[2],
        measure.textbbox((0, 0), subtitle, font=_font(subtitle_size))[2],
    )
    width = math.ceil((base + gap + text_width + right_margin) / SUPERSAMPLE)
    big = base * factor
    image = Image.new("RGBA", (width * SUPERSAMPLE * factor, big), (0, 0, 0, 0))
    image.alpha_composite(render_icon(big))
    draw = ImageDraw.Draw(image)
    name_color, accent_color = TEXT[dark]
    x = (base + gap) * factor
    title_font, subtitle_font = _font(title_size * factor), _font(subtitle_size * factor)
    draw.text((x, big * 0.47), title, font=title_font, fill=name_color, anchor="ls")
    draw.text((x, big * 0.81), subtitle, font=subtitle_font, fill=accent_color, anchor="ls")
    return image.resize((width * factor, height * factor), Image.Resampling.LANCZOS)


def main() -> None:
    """Write every brand image."""
    parser = argparse.ArgumentParser(description="Draw the integration's brand images.")
    parser.add_argument("--out", type=Path, default=BRAND_DIR, help="target folder")
    out: Path = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    images = {
        "icon.png": draw_icon(256),
        "icon@2x.png": draw_icon(512),
        "logo.png": draw_logo(256, dark=False),
        "logo@2x.png": draw_logo(256, dark=False, factor=2),
        "dark_logo.png": draw_logo(256, dark=True),
        "dark_logo@2x.png": draw_logo(256, dark=True, factor=2),
    }
    for name, image in images.items():
        image.save(out / name, optimize=True)
        print(f"{name}: {image.width}x{image.height}")


if __name__ == "__main__":
    main()
