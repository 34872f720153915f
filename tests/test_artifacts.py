"""The certificate artifacts, read back the way a recipient or a verifier would.

PDFs are opened with pikepdf and pypdfium2, rendered with pypdfium2, and the codes on the
rendered page are decoded with zxing-cpp; no database and no network.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import re
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from xml.etree import ElementTree

import pikepdf
import pytest
import zxingcpp
from PIL import Image, ImageDraw

from service.artifacts import (
    REFERENCE_ID_RE,
    ArtifactError,
    new_reference_id,
    render_artifacts,
)
from tests import samples
from tests.artifact_helpers import (
    INSTITUTION,
    PNG,
    REFERENCE_ID,
    SVG_NS,
    VERIFY_URL,
    assert_centre_unchanged,
    assert_stamp,
    page_count,
    rasterize_qr_svg,
    render,
)

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
