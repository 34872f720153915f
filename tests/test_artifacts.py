"""The certificate artifacts, read back the way a recipient or a verifier would.

PDFs are opened with pikepdf and pypdfium2, rendered with pypdfium2, and the codes on the
rendered page are decoded with zxing-cpp; no database and no network.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import re
import struct
import zlib
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from xml.etree import ElementTree

import pikepdf
import pypdfium2 as pdfium
import pytest
import zxingcpp
from PIL import Image, ImageChops, ImageDraw, ImageOps

from service.artifacts import (
    REFERENCE_ID_RE,
    ArtifactError,
    Artifacts,
    codes,
    new_reference_id,
    render_artifacts,
)
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


# -- reference ids, QR and barcode SVGs ------------------------------------------------------


def test_reference_ids_have_the_contract_format_and_do_not_repeat() -> None:
    ids = [new_reference_id() for _ in range(1000)]
    year = datetime.now(UTC).year
    assert all(REFERENCE_ID_RE.fullmatch(value) for value in ids)
    assert all(value.startswith(f"VEC-IC-{year}") for value in ids)
    assert len(set(ids)) == 1000
    # Random, not sequential: the leading random digit takes (almost) all 16 values.
    assert len({value[11] for value in ids}) >= 14
    assert new_reference_id(2031).startswith("VEC-IC-2031")
    with pytest.raises(ValueError, match="4 digits"):
        new_reference_id(99)


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


def test_qr_svg_is_svg_and_decodes_to_the_verification_url() -> None:
    artifacts = render(samples.make_pdf())
    root = ElementTree.fromstring(artifacts.qr_svg)
    assert root.tag == f"{SVG_NS}svg"
    assert [
        result.text for result in zxingcpp.read_barcodes(rasterize_qr_svg(artifacts.qr_svg))
    ] == [VERIFY_URL]


def test_barcode_svg_is_svg_and_decodes_to_the_reference_id() -> None:
    svg = render(samples.make_pdf()).barcode_svg
    root = ElementTree.fromstring(svg)
    assert root.tag == f"{SVG_NS}svg"
    width, height = int(root.get("width", "0")), int(root.get("height", "0"))
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    path = root.find(f"{SVG_NS}path")
    assert path is not None
    for x, bar_width in re.findall(r"M(\d+) 0h(\d+)", path.get("d", "")):
        draw.rectangle((int(x), 2, int(x) + int(bar_width) - 1, 60), 0)
    assert [result.text for result in zxingcpp.read_barcodes(image)] == [REFERENCE_ID]
    text = root.find(f"{SVG_NS}text")
    assert text is not None and text.text == REFERENCE_ID


# -- PDF originals ---------------------------------------------------------------------------

GEOMETRIES = {
    "a4": {},
    "rotated-90": {"rotate": 90},
    "rotated-180": {"rotate": 180},
    "rotated-270": {"rotate": 270},
    "landscape": {"size": (842.0, 595.0)},
    "tiny": {"size": (200.0, 200.0)},
    "huge": {"size": (14400.0, 9000.0)},
    "moved-origin": {"origin": (-300.0, 500.0), "rotate": 90},
    "cropped": {"origin": (100.0, 100.0), "cropbox": (150.0, 180.0, 600.0, 800.0)},
}


@pytest.mark.parametrize("geometry", GEOMETRIES.values(), ids=GEOMETRIES.keys())
def test_pdf_first_page_is_stamped_and_keeps_its_content(geometry: dict[str, object]) -> None:
    original = samples.make_pdf(**geometry)  # type: ignore[arg-type]
    artifacts = render(original)

    assert page_count(artifacts.verified_pdf) == 1
    text = samples.page_text(artifacts.verified_pdf)
    assert samples.SAMPLE_TEXT in text
    assert REFERENCE_ID in text
    assert_stamp(samples.render_page(artifacts.verified_pdf))
    assert_centre_unchanged(original, artifacts.verified_pdf)


def test_pdf_of_twenty_pages_stamps_page_one_only() -> None:
    original = samples.make_pdf(pages=20)
    stamped = render(original).verified_pdf

    assert page_count(stamped) == 20
    assert_stamp(samples.render_page(stamped))
    with pikepdf.open(io.BytesIO(original)) as before, pikepdf.open(io.BytesIO(stamped)) as after:
        for index in range(1, 20):
            old, new = before.pages[index], after.pages[index]
            assert new.obj.Contents.read_bytes() == old.obj.Contents.read_bytes()
            assert list(new.mediabox) == list(old.mediabox)
    for index in range(20):
        assert f"Page {index + 1} of 20" in samples.page_text(stamped, index)
    assert REFERENCE_ID not in samples.page_text(stamped, 1)


def test_inherited_rotation_and_resources_are_honoured() -> None:
    """/Rotate and /Resources set on the page tree, not on the page."""
    with pikepdf.open(io.BytesIO(samples.make_pdf())) as pdf:
        page = pdf.pages[0].obj
        pdf.Root.Pages.Resources = page.Resources
        pdf.Root.Pages.Rotate = 90
        del page.Resources
        del page.Rotate
        buffer = io.BytesIO()
        pdf.save(buffer)
    original = buffer.getvalue()
    stamped = render(original).verified_pdf
    assert samples.SAMPLE_TEXT in samples.page_text(stamped)
    assert_stamp(samples.render_page(stamped))
    assert_centre_unchanged(original, stamped)


UNBALANCED_CONTENT = {
    "extra-restores": b"Q Q Q 5 0 0 5 0 0 cm",
    "unclosed-save": b"3 0 0 3 0 0 cm q 0.5 0 0 0.5 0 0 cm",
    "trailing-comment": b"5 0 0 5 0 0 cm % no newline after this",
    "unterminated-string": b"Q Q 4 0 0 4 0 0 cm (never closed",
    "unterminated-array": b"Q 4 0 0 4 0 0 cm [1 2",
}


@pytest.mark.parametrize("content", UNBALANCED_CONTENT.values(), ids=UNBALANCED_CONTENT.keys())
def test_unbalanced_page_content_cannot_move_the_stamp(content: bytes) -> None:
    with pikepdf.open(io.BytesIO(samples.make_pdf())) as pdf:
        pdf.pages[0].contents_add(content)
        buffer = io.BytesIO()
        pdf.save(buffer)
    assert_stamp(samples.render_page(render(buffer.getvalue()).verified_pdf))


def _pdf_with_active_content() -> bytes:
    """Scripts and attachments in every place a viewer looks for them."""
    with pikepdf.open(io.BytesIO(samples.make_pdf(pages=2))) as pdf:

        def script(code: str) -> pikepdf.Dictionary:
            return pikepdf.Dictionary(S=pikepdf.Name.JavaScript, JS=pikepdf.String(code))

        launch = pikepdf.Dictionary(S=pikepdf.Name.Launch, F=pikepdf.String("calc.exe"))
        link = pikepdf.Dictionary(
            Type=pikepdf.Name.Annot, Subtype=pikepdf.Name.Link, Rect=[0, 0, 50, 50], A=launch
        )
        payload = pikepdf.Dictionary(
            Type=pikepdf.Name.Filespec,
            F=pikepdf.String("payload.exe"),
            EF=pikepdf.Dictionary(F=pdf.make_stream(b"MZ-payload")),
        )
        pdf.Root.OpenAction = script("app.alert('open')")
        pdf.Root.Names = pikepdf.Dictionary(
            JavaScript=pikepdf.Dictionary(Names=["startup", script("app.alert('names')")]),
            EmbeddedFiles=pikepdf.Dictionary(Names=["payload.exe", payload]),
        )
        field = pdf.make_indirect(
            pikepdf.Dictionary(FT=pikepdf.Name.Tx, T="f", AA={"/K": script("app.alert('key')")})
        )
        pdf.Root.AcroForm = pikepdf.Dictionary(Fields=[field])
        outline = pdf.make_indirect(pikepdf.Dictionary(Title="x", A=script("app.alert('toc')")))
        pdf.Root.Outlines = pikepdf.Dictionary(First=outline, Last=outline, Count=1)
        pdf.pages[1].obj.Annots = pdf.make_indirect(pikepdf.Array([link]))
        pdf.pages[0].obj.AA = pikepdf.Dictionary(O=script("app.alert('page')"))
        buffer = io.BytesIO()
        pdf.save(buffer)
    return buffer.getvalue()


def test_active_content_is_removed() -> None:
    stamped = render(_pdf_with_active_content()).verified_pdf
    for marker in (b"/JavaScript", b"/Launch", b"app.alert", b"calc.exe", b"/EmbeddedFiles"):
        assert marker not in stamped
    with pikepdf.open(io.BytesIO(stamped)) as pdf:
        for obj in pdf.objects:
            assert not isinstance(obj, pikepdf.Stream) or b"MZ-payload" not in obj.read_bytes()
    assert page_count(stamped) == 2
    assert_stamp(samples.render_page(stamped))


def test_output_is_byte_identical_across_runs() -> None:
    original = samples.make_pdf(pages=3, rotate=90)
    first, second = render(original), render(original)
    assert first == second
    png = samples.make_png(300, 200, "RGBA")
    assert render(png, PNG).verified_pdf == render(png, PNG).verified_pdf


def test_sha256_and_pickling() -> None:
    artifacts = render(samples.make_pdf())
    assert artifacts.verified_pdf_sha256 == hashlib.sha256(artifacts.verified_pdf).hexdigest()
    assert pickle.loads(pickle.dumps(artifacts)) == artifacts
    error = pickle.loads(pickle.dumps(ArtifactError("The PDF is password-protected.")))
    assert str(error) == error.message == "The PDF is password-protected."


def test_runs_in_a_process_pool() -> None:
    original = samples.make_png(120, 80)
    with ProcessPoolExecutor(max_workers=1) as pool:
        result = pool.submit(
            render_artifacts,
            original,
            PNG,
            reference_id=REFERENCE_ID,
            verify_url=VERIFY_URL,
            institution_name=INSTITUTION,
        ).result(timeout=60)
        with pytest.raises(ArtifactError, match="could not be read"):
            pool.submit(
                render_artifacts,
                b"\x89PNG\r\n\x1a\nnot really",
                PNG,
                reference_id=REFERENCE_ID,
                verify_url=VERIFY_URL,
                institution_name=INSTITUTION,
            ).result(timeout=60)
    assert result == render(original, PNG)


def test_stamp_text_copes_with_any_institution_name_and_long_urls() -> None:
    long_url = "https://certificates.example-university.test/some/deep/path/verify/" + REFERENCE_ID
    stamped = render(
        samples.make_pdf(),
        institution_name="東京大学 (Tokyo) \\ Ünïcødé \u202e\x00 " + "very long name " * 10,
        verify_url=long_url,
    ).verified_pdf
    text = samples.page_text(stamped)
    assert "(Tokyo) \\ Ünïcødé" in text
    assert samples.read_codes(samples.render_page(stamped))["QRCode"].text == long_url


# -- image originals -------------------------------------------------------------------------


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


# -- originals that cannot be processed ------------------------------------------------------


def _encrypted_pdf() -> bytes:
    with pikepdf.open(io.BytesIO(samples.make_pdf())) as pdf:
        buffer = io.BytesIO()
        pdf.save(buffer, encryption=pikepdf.Encryption(user="secret", owner="secret"))
    return buffer.getvalue()


def _blank_pdf(pages: int) -> bytes:
    with pikepdf.new() as pdf:
        for _ in range(pages):
            pdf.add_blank_page(page_size=(100, 100))
        buffer = io.BytesIO()
        pdf.save(buffer)
    return buffer.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    data = bytearray(samples.make_png(8, 8))
    header = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + header))
    return bytes(data)


BAD_ORIGINALS = {
    "not-a-pdf": (b"hello, I am plain text", PDF, "could not be read"),
    "pdf-header-only": (b"%PDF-1.7\n", PDF, "could not be read"),
    "pdf-password": (_encrypted_pdf(), PDF, "password"),
    "pdf-too-many-pages": (_blank_pdf(1001), PDF, "more than 1000 pages"),
    "png-garbage": (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, PNG, "could not be read"),
    "png-truncated": (samples.make_png(300, 300, noise=True)[:5000], PNG, "could not be read"),
    "png-bomb": (_png_claiming(60_000, 60_000), PNG, "too large"),
    "jpeg-truncated": (samples.make_jpeg(300, 300, noise=True)[:3000], JPEG, "could not be read"),
    "jpeg-is-png": (samples.make_png(30, 30), JPEG, "could not be read"),
    "gif": (b"GIF89a" + b"\x00" * 20, "image/gif", "Unsupported file type"),
}


@pytest.mark.parametrize(
    ("data", "mime_type", "message"), BAD_ORIGINALS.values(), ids=BAD_ORIGINALS.keys()
)
def test_unprocessable_originals_raise_artifact_error(
    data: bytes, mime_type: str, message: str
) -> None:
    with pytest.raises(ArtifactError, match=message):
        render(data, mime_type)
