"""Shared pieces of the artifact tests: a render with fixed inputs and checks of the stamp."""

from __future__ import annotations

import io
import re
from contextlib import closing
from xml.etree import ElementTree

import pikepdf
import pypdfium2 as pdfium
from PIL import Image, ImageChops, ImageDraw

from service.artifacts import Artifacts, codes, render_artifacts
from tests import samples

REFERENCE_ID = "VEC-IC-2025ABCDEF0123456"
VERIFY_URL = f"https://vault.example.test/verify/{REFERENCE_ID}"
INSTITUTION = "Universität Zürich - Faculty of Science"
PDF, PNG, JPEG = "application/pdf", "image/png", "image/jpeg"
SVG_NS = "{http://www.w3.org/2000/svg}"


def render(original: bytes, mime_type: str = PDF, **overrides: str) -> Artifacts:
    arguments = {
        "reference_id": REFERENCE_ID,
        "verify_url": VERIFY_URL,
        "institution_name": INSTITUTION,
        **overrides,
    }
    return render_artifacts(original, mime_type, **arguments)


def page_count(pdf: bytes) -> int:
    with pikepdf.open(io.BytesIO(pdf)) as document:
        count = len(document.pages)
    with closing(pdfium.PdfDocument(pdf)) as document:
        assert len(document) == count
    return count


def assert_stamp(image: Image.Image) -> None:
    """Both codes decode, upright, and sit in the bottom-right quadrant of the image."""
    codes_found = samples.read_codes(image)
    assert codes_found["QRCode"].text == VERIFY_URL
    assert codes_found["Code128"].text == REFERENCE_ID
    for result in codes_found.values():
        assert result.orientation == 0
        position = result.position
        for point in (position.top_left, position.bottom_right):
            assert point.x > image.width / 2
            assert point.y > image.height / 2


def assert_centre_unchanged(original: bytes, stamped: bytes) -> None:
    before, after = samples.render_page(original), samples.render_page(stamped)
    assert before.size == after.size
    width, height = before.size
    centre = (width // 4, height // 4, width * 3 // 4, height * 3 // 4)
    difference = ImageChops.difference(before.crop(centre), after.crop(centre))
    assert difference.getbbox() is None


def rasterize_qr_svg(svg: bytes) -> Image.Image:
    """Draw segno's SVG (horizontal stroked lines, ``M``/``m``/``h``) with Pillow."""
    root = ElementTree.fromstring(svg)
    line = next(path for path in root.iter(f"{SVG_NS}path") if path.get("class") == "qrline")
    size = int(root.get("width", "0")) // codes.QR_SVG_SCALE
    image = Image.new("L", (size * 8, size * 8), 255)
    draw = ImageDraw.Draw(image)
    x = y = 0.0
    for command, numbers in re.findall(r"([Mmh])([-\d. ]+)", line.get("d", "")):
        values = [float(value) for value in numbers.split()]
        if command == "M":
            x, y = values
        elif command == "m":
            x, y = x + values[0], y + values[1]
        else:
            draw.rectangle((x * 8, (y - 0.5) * 8, (x + values[0]) * 8 - 1, (y + 0.5) * 8 - 1), 0)
            x += values[0]
    return image
