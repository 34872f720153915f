"""Sample originals for tests and benchmarks, and helpers to read verified PDFs back.

PDFs are drawn with reportlab, PNG/JPEG with Pillow; every generator is deterministic (same
arguments, same bytes) and needs no files or network. Reading back uses pypdfium2 and zxing-cpp.
"""

from __future__ import annotations

import io
from contextlib import closing

import pikepdf
import pypdfium2 as pdfium
import zxingcpp
from PIL import Image, ImageDraw
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen.canvas import Canvas

SAMPLE_TEXT = "Certificate of Completion awarded to Jane Example"
# Quadrant colours of sample images: top-left, top-right, bottom-left, bottom-right.
QUADRANT_COLOURS = ((220, 30, 30), (30, 160, 60), (30, 60, 220), (240, 200, 20))


def make_pdf(
    pages: int = 1,
    text: str = SAMPLE_TEXT,
    rotate: int = 0,
    size: tuple[float, float] = A4,
    origin: tuple[float, float] = (0.0, 0.0),
    cropbox: tuple[float, float, float, float] | None = None,
) -> bytes:
    """A text PDF; page N shows ``text`` and ``Page N of M`` in the middle, a frame around.

    ``rotate`` sets /Rotate on every page; ``origin`` moves the MediaBox (and the drawing)
    away from 0,0; ``cropbox`` is absolute, in the moved coordinates.
    """
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=size, invariant=1)
    for number in range(1, pages + 1):
        _draw_page(canvas, size, text, f"Page {number} of {pages}")
        canvas.setPageRotation(rotate)
        canvas.showPage()
    canvas.save()
    data = buffer.getvalue()
    if origin != (0.0, 0.0) or cropbox is not None:
        data = _move_boxes(data, size, origin, cropbox)
    return data


def _draw_page(canvas: Canvas, size: tuple[float, float], text: str, footer: str) -> None:
    width, height = size
    font_size = max(4.0, min(18.0, width / (0.6 * max(len(text), 1))))
    canvas.setLineWidth(max(0.5, width / 300))
    canvas.rect(width * 0.05, height * 0.05, width * 0.9, height * 0.9)
    canvas.setFont("Helvetica-Bold", font_size)
    canvas.drawCentredString(width / 2, height / 2, text)
    canvas.setFont("Helvetica", font_size * 0.7)
    canvas.drawCentredString(width / 2, height / 2 - font_size * 1.5, footer)
    canvas.setFillColorRGB(0.8, 0.1, 0.1)
    canvas.circle(width / 2, height / 2 + font_size * 2, font_size * 0.8, stroke=0, fill=1)


def _move_boxes(
    data: bytes,
    size: tuple[float, float],
    origin: tuple[float, float],
    cropbox: tuple[float, float, float, float] | None,
) -> bytes:
    ox, oy = origin
    with pikepdf.open(io.BytesIO(data)) as pdf:
        for page in pdf.pages:
            page.mediabox = pikepdf.Array([ox, oy, ox + size[0], oy + size[1]])
            if cropbox is not None:
                page.cropbox = pikepdf.Array(list(cropbox))
            page.contents_add(f"1 0 0 1 {ox} {oy} cm\n".encode(), prepend=True)
        out = io.BytesIO()
        pdf.save(out, deterministic_id=True)
    return out.getvalue()


def make_image(width: int, height: int, mode: str = "RGB", *, noise: bool = False) -> Image.Image:
    """Four coloured quadrants, a gradient band and a circle; ``noise`` makes it photo-like."""
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    half_w, half_h = width // 2, height // 2
    boxes = ((0, 0), (half_w, 0), (0, half_h), (half_w, half_h))
    for (x, y), colour in zip(boxes, QUADRANT_COLOURS, strict=True):
        draw.rectangle((x, y, x + half_w, y + half_h), fill=colour)
    for x in range(0, width, max(1, width // 64)):
        shade = 255 * x // max(1, width - 1)
        draw.rectangle((x, half_h - height // 20, x + width // 64, half_h), fill=(shade,) * 3)
    radius = min(width, height) // 6
    draw.ellipse((half_w - radius, half_h - radius, half_w + radius, half_h + radius), fill="white")
    if noise:
        grain = Image.effect_noise((width, height), 40).convert("RGB")
        image = Image.blend(image, grain, 0.25)
    return _to_mode(image, mode)


def _to_mode(image: Image.Image, mode: str) -> Image.Image:
    if mode in ("RGBA", "LA"):
        # Transparent at the top, opaque at the bottom.
        converted = image.convert(mode)
        converted.putalpha(Image.linear_gradient("L").resize(image.size))
        return converted
    if mode == "P":
        return image.quantize(colors=64)
    if mode == "I;16":
        return image.convert("L").point(lambda value: value * 257, "I").convert("I;16")
    return image.convert(mode)


def make_png(width: int, height: int, mode: str = "RGB", *, noise: bool = False) -> bytes:
    """A PNG of ``make_image``; mode is one of RGB, RGBA, P, L, LA, 1, I;16."""
    buffer = io.BytesIO()
    make_image(width, height, mode, noise=noise).save(buffer, "PNG")
    return buffer.getvalue()


def make_jpeg(
    width: int,
    height: int,
    mode: str = "RGB",
    *,
    orientation: int | None = None,
    noise: bool = False,
    quality: int = 90,
) -> bytes:
    """A JPEG of ``make_image``; ``orientation`` writes that EXIF Orientation tag (1-8)."""
    buffer = io.BytesIO()
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    image = make_image(width, height, mode, noise=noise)
    image.save(buffer, "JPEG", quality=quality, exif=exif.tobytes())
    return buffer.getvalue()


def render_page(pdf: bytes, index: int = 0, scale: float | None = None) -> Image.Image:
    """Page ``index`` as RGB; by default scaled so the page's short side is ~1800 px.

    At that size the stamp's QR code and Code 128 bars decode with ``read_codes``.
    """
    with closing(pdfium.PdfDocument(pdf)) as document:
        page = document[index]
        if scale is None:
            scale = 3 * 595 / min(page.get_size())
        return page.render(scale=scale).to_pil().convert("RGB")


def page_text(pdf: bytes, index: int = 0) -> str:
    with closing(pdfium.PdfDocument(pdf)) as document:
        return str(document[index].get_textpage().get_text_range())


def read_codes(image: Image.Image) -> dict[str, zxingcpp.Barcode]:
    """Every barcode zxing-cpp finds, by format name (``QRCode``, ``Code128``)."""
    return {result.format.name: result for result in zxingcpp.read_barcodes(image)}
