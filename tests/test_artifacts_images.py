"""Image originals: PNG and JPEG pages embedded without re-encoding, the stamp below the image."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager

import pikepdf
import pytest
from PIL import Image, ImageOps

from tests import samples
from tests.artifact_helpers import JPEG, PNG, REFERENCE_ID, VERIFY_URL, page_count, render


@contextmanager
def embedded_image(pdf: bytes) -> Iterator[pikepdf.Stream]:
    """The page's image XObject, while its document is open."""
    assert page_count(pdf) == 1
    with pikepdf.open(io.BytesIO(pdf)) as document:
        yield document.pages[0].resources.XObject.VecImage


def assert_image_page(pdf: bytes, source_size: tuple[int, int]) -> None:
    """The stamp decodes and lies in the band below the image, never on it."""
    scale = 3
    image = samples.render_page(pdf, scale=scale)
    width, height = source_size
    image_bottom = image.width * height / width  # the image spans the page's width, at the top
    codes_found = samples.read_codes(image)
    assert codes_found["QRCode"].text == VERIFY_URL
    assert codes_found["Code128"].text == REFERENCE_ID
    for result in codes_found.values():
        assert result.position.top_left.y > image_bottom


PNG_MODES = {
    "rgb": ("RGB", lambda image: image.tobytes()),
    "grey": ("L", lambda image: image.tobytes()),
    "bilevel": ("1", lambda image: image.tobytes()),
    "palette": ("P", lambda image: image.tobytes()),
    "grey-16bit": ("I;16", lambda image: image.tobytes("raw", "I;16B")),
}


@pytest.mark.parametrize(("mode", "samples_of"), PNG_MODES.values(), ids=PNG_MODES.keys())
def test_png_is_embedded_losslessly(mode: str, samples_of: object) -> None:
    original = samples.make_png(640, 480, mode)
    pdf = render(original, PNG).verified_pdf
    assert_image_page(pdf, (640, 480))
    with Image.open(io.BytesIO(original)) as source:
        expected = samples_of(source)  # type: ignore[operator]
        palette = source.getpalette() if mode == "P" else None
    with embedded_image(pdf) as xobject:
        # The PNG's own compressed data, read through PNG predictors: nothing re-encoded.
        assert xobject.DecodeParms.Predictor == 15
        assert xobject.read_bytes() == expected
        if palette is not None:
            lookup = bytes(xobject.ColorSpace[3])
            assert lookup == bytes(palette[: len(lookup)])


def _palette_with_transparency() -> bytes:
    buffer = io.BytesIO()
    samples.make_image(640, 480, "P").save(buffer, "PNG", transparency=0)
    return buffer.getvalue()


ALPHA_PNGS = {
    "rgba": (samples.make_png(640, 480, "RGBA"), "RGB"),
    "grey-alpha": (samples.make_png(640, 480, "LA"), "L"),
    "palette-trns": (_palette_with_transparency(), "RGB"),
}


@pytest.mark.parametrize(("original", "colour_mode"), ALPHA_PNGS.values(), ids=ALPHA_PNGS.keys())
def test_png_alpha_becomes_a_lossless_soft_mask(original: bytes, colour_mode: str) -> None:
    pdf = render(original, PNG).verified_pdf
    assert_image_page(pdf, (640, 480))
    with Image.open(io.BytesIO(original)) as source:
        with_alpha = source.convert(colour_mode + "A")
        colour = with_alpha.convert(colour_mode).tobytes()
        alpha = with_alpha.getchannel("A").tobytes()
        assert len(set(alpha)) > 1
    with embedded_image(pdf) as xobject:
        assert xobject.read_bytes() == colour
        assert xobject.SMask.read_bytes() == alpha


def test_jpeg_is_embedded_as_is() -> None:
    original = samples.make_jpeg(800, 600)
    pdf = render(original, JPEG).verified_pdf
    assert_image_page(pdf, (800, 600))
    with embedded_image(pdf) as xobject:
        assert xobject.Filter == pikepdf.Name.DCTDecode
        assert xobject.read_raw_bytes() == original


def test_cmyk_jpeg_keeps_its_colours() -> None:
    original = samples.make_jpeg(400, 300, "CMYK")
    pdf = render(original, JPEG).verified_pdf
    with embedded_image(pdf) as xobject:
        assert xobject.ColorSpace == pikepdf.Name.DeviceCMYK
        assert xobject.read_raw_bytes() == original
    image = samples.render_page(pdf, scale=1)
    width = image.width
    # Not inverted: the red and yellow quadrants stay red and yellow.
    red = image.getpixel((int(width * 0.2), int(width * 0.75 * 0.2)))
    yellow = image.getpixel((int(width * 0.8), int(width * 0.75 * 0.8)))
    assert red[0] > 150 and red[1] < 120 and red[2] < 120
    assert yellow[0] > 150 and yellow[1] > 150 and yellow[2] < 120


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_jpeg_exif_orientation_is_applied(orientation: int) -> None:
    original = samples.make_jpeg(400, 300, orientation=orientation)
    pdf = render(original, JPEG).verified_pdf
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(original))).convert("RGB")
    with pikepdf.open(io.BytesIO(pdf)) as document:
        width, height = (float(value) for value in document.pages[0].mediabox[2:])
    image = samples.render_page(pdf, scale=1)
    image_h = width * upright.height / upright.width
    assert abs(image.width - width) <= 1 and image.height == pytest.approx(height, abs=1)
    for fx, fy in ((0.2, 0.2), (0.8, 0.2), (0.2, 0.8), (0.8, 0.8)):
        expected = upright.getpixel((int(fx * upright.width), int(fy * upright.height)))
        actual = image.getpixel((int(fx * width), int(fy * image_h)))
        assert max(abs(a - b) for a, b in zip(actual, expected, strict=True)) < 40
