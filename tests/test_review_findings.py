"""Cases found by reviews: file-opening actions, deep action chains, odd public hosts."""

from __future__ import annotations

import io
from collections.abc import Callable

import pikepdf
import pytest
from PIL import Image

from service.artifacts import ArtifactError
from service.artifacts.verified import page_rotation
from service.pipeline import mail_domain
from tests import samples
from tests.artifact_helpers import assert_stamp
from tests.artifact_helpers import render as artifacts_render


def edited(original: bytes, edit: Callable[[pikepdf.Pdf], None]) -> bytes:
    with pikepdf.open(io.BytesIO(original)) as pdf:
        edit(pdf)
        buffer = io.BytesIO()
        pdf.save(buffer)
    return buffer.getvalue()


def with_open_action(action: pikepdf.Dictionary) -> bytes:
    def set_action(pdf: pikepdf.Pdf) -> None:
        pdf.Root.OpenAction = action

    return edited(samples.make_pdf(), set_action)


@pytest.mark.parametrize("kind", ["GoToR", "Thread", "Sound", "Movie"])
def test_actions_that_open_other_files_are_removed(kind: str) -> None:
    smb = pikepdf.String("\\\\attacker\\share\\x.pdf")
    action = pikepdf.Dictionary(S=pikepdf.Name("/" + kind), F=smb)
    stamped = artifacts_render(with_open_action(action)).verified_pdf
    assert f"/{kind}".encode() not in stamped and b"attacker" not in stamped


def test_an_action_chain_too_deep_to_check_is_refused() -> None:
    action = pikepdf.Dictionary(S=pikepdf.Name.JavaScript, JS=pikepdf.String("app.alert(1)"))
    for _ in range(40):  # /Next chains of direct dictionaries, as a viewer follows them
        action = pikepdf.Dictionary(S=pikepdf.Name.URI, URI="https://x.test", Next=action)
    with pytest.raises(ArtifactError, match="too deeply"):
        artifacts_render(with_open_action(action))


@pytest.mark.parametrize(
    ("base_url", "domain"),
    [
        ("https://vault.example.org", "vault.example.org"),
        ("https://bücher.example", "xn--bcher-kva.example"),
        ("http://vault_app:8000", "vault.localhost"),  # a container name: no DNS name
        ("http://[::1]:8000", "vault.localhost"),
        ("http://10.0.0.5:8080", "vault.localhost"),
    ],
)
def test_message_ids_get_a_domain_whatever_the_public_host(base_url: str, domain: str) -> None:
    assert mail_domain(base_url) == domain


def test_a_real_number_rotation_places_the_stamp_like_an_integer_one() -> None:
    def rotate(pdf: pikepdf.Pdf) -> None:
        pdf.pages[0].obj.Rotate = pikepdf.Object.parse(b"90.0")

    stamped = artifacts_render(edited(samples.make_pdf(), rotate)).verified_pdf
    assert_stamp(samples.render_page(stamped))


def test_an_annotation_over_the_stamp_corner_is_hidden() -> None:
    """An opaque square over the bottom-right corner, drawn by viewers above the content."""

    def cover(pdf: pikepdf.Pdf) -> None:
        appearance = pdf.make_stream(
            b"1 1 1 rg 0 0 400 220 re f",
            Type=pikepdf.Name.XObject,
            Subtype=pikepdf.Name.Form,
            BBox=[0, 0, 400, 220],
        )
        square = pikepdf.Dictionary(
            Type=pikepdf.Name.Annot,
            Subtype=pikepdf.Name.Square,
            Rect=[195, 0, 595, 220],
            AP=pikepdf.Dictionary(N=appearance),
            F=4,
        )
        pdf.pages[0].obj.Annots = pdf.make_indirect(pikepdf.Array([square]))

    covered = edited(samples.make_pdf(), cover)
    stamped = artifacts_render(covered).verified_pdf
    assert_stamp(samples.render_page(stamped))
    with pikepdf.open(io.BytesIO(stamped)) as pdf:
        [annotation] = pdf.pages[0].obj.Annots
        assert int(annotation.F) & 2  # hidden, still there


def test_a_16_bit_grey_png_keeps_its_transparent_level() -> None:
    """Left half at the tRNS level 200 (transparent), right half 51400 (200 once scaled to
    8 bits, yet opaque)."""
    image = Image.new("I;16", (100, 50))
    for x in range(100):
        for y in range(50):
            image.putpixel((x, y), 200 if x < 50 else 51400)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", transparency=200)
    stamped = artifacts_render(buffer.getvalue(), "image/png").verified_pdf
    with pikepdf.open(io.BytesIO(stamped)) as pdf:
        masks = [
            obj.SMask.read_bytes()
            for obj in pdf.objects
            if isinstance(obj, pikepdf.Stream) and obj.get("/Width") == 100 and "/SMask" in obj
        ]
    [alpha] = masks
    rows = [alpha[row * 100 : (row + 1) * 100] for row in range(50)]
    assert all(row == bytes(50) + b"\xff" * 50 for row in rows)


def test_a_very_narrow_image_gets_a_page_wide_enough_for_a_scannable_stamp() -> None:
    narrow = Image.new("RGB", (50, 4000), "navy")
    buffer = io.BytesIO()
    narrow.save(buffer, "PNG")
    stamped = artifacts_render(buffer.getvalue(), "image/png").verified_pdf
    with pikepdf.open(io.BytesIO(stamped)) as pdf:
        width = float(pdf.pages[0].mediabox[2])
    assert width >= 0.75 * 234  # the stamp and its margins at three quarters of A4 size
    codes = samples.read_codes(samples.render_page(stamped))
    assert codes["QRCode"].text.endswith("/verify/VEC-IC-2025ABCDEF0123456")
    assert codes["Code128"].text == "VEC-IC-2025ABCDEF0123456"


@pytest.mark.parametrize(
    ("rotate", "expected"),
    [("90", 90), ("90.0", 90), ("-90", 270), ("-45", 0), ("-135", 270), ("135", 90), ("450", 90)],
)
def test_page_rotation_reads_like_pdfium(rotate: str, expected: int) -> None:
    def edit(pdf: pikepdf.Pdf) -> None:
        pdf.pages[0].obj.Rotate = pikepdf.Object.parse(rotate.encode())

    with pikepdf.open(io.BytesIO(edited(samples.make_pdf(), edit))) as pdf:
        assert page_rotation(pdf.pages[0]) == expected


def test_a_form_field_over_the_stamp_corner_stays_visible() -> None:
    def add_widget(pdf: pikepdf.Pdf) -> None:
        widget = pikepdf.Dictionary(
            Type=pikepdf.Name.Annot,
            Subtype=pikepdf.Name.Widget,
            FT=pikepdf.Name.Sig,
            Rect=[20, 20, 575, 110],
            F=4,
            T="signature",
        )
        widget = pdf.make_indirect(widget)
        pdf.pages[0].obj.Annots = pdf.make_indirect(pikepdf.Array([widget]))
        pdf.Root.AcroForm = pikepdf.Dictionary(Fields=[widget])

    stamped = artifacts_render(edited(samples.make_pdf(), add_widget)).verified_pdf
    with pikepdf.open(io.BytesIO(stamped)) as pdf:
        [widget] = pdf.pages[0].obj.Annots
        assert int(widget.F) == 4
