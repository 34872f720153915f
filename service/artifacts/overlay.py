"""Placing the stamp on a page: where (upright, bottom-right) and how (safe from the content).

The stamp is a form XObject drawn after the page's content, outside of any graphics state the
content may leave behind, so that no original (sloppy or hostile) can move or hide it.
"""

from __future__ import annotations

import pikepdf

from service.artifacts import stamp

STAMP_MARGIN = 12.0  # distance from the page edges, in stamp units
A4_SHORT_SIDE = 595.0


def page_scale(width: float, height: float) -> float:
    """How big the stamp is on a page: in proportion to its short side, A4 = 1.

    The stamp then covers at most ~37% of the width and ~18% of the height from the
    bottom-right corner, whatever the page's shape: never the centre.
    """
    return min(width, height) / A4_SHORT_SIDE


def corner_matrix(
    box: tuple[float, float, float, float], rotation: int, scale: float
) -> pikepdf.Matrix:
    """Stamp units -> user space: upright, in the visual bottom-right corner of ``box``.

    ``box`` is the visible (crop) box in user space; ``rotation`` the page's /Rotate, which
    viewers apply clockwise, so the stamp is counter-rotated to look upright.
    """
    x0, y0, x1, y1 = box
    turned = rotation in (90, 270)
    display_w = (y1 - y0) if turned else (x1 - x0)
    margin = STAMP_MARGIN * scale
    place = pikepdf.Matrix(scale, 0, 0, scale, display_w - margin - stamp.STAMP_W * scale, margin)
    # Display space (origin at the visual bottom-left, y up) -> user space, per rotation.
    to_user = {
        0: pikepdf.Matrix(1, 0, 0, 1, x0, y0),
        90: pikepdf.Matrix(0, 1, -1, 0, x1, y0),
        180: pikepdf.Matrix(-1, 0, 0, -1, x1, y1),
        270: pikepdf.Matrix(0, -1, 1, 0, x0, y1),
    }[rotation]
    return place @ to_user


def apply_stamp(
    pdf: pikepdf.Pdf, page: pikepdf.Page, stamp_stream: bytes, matrix: pikepdf.Matrix
) -> None:
    """Draw the stamp (``stamp.render_stamp``'s stream) over ``page``'s content via ``matrix``."""
    depths = _save_depths(pdf, page)
    if depths is None:
        # Content that does not parse cleanly may end inside a string or an array and swallow
        # whatever follows it; inside a form XObject of its own it cannot reach the stamp.
        _isolate_content(pdf, page)
    saves, restores = depths or (0, 0)
    form = pdf.make_stream(
        stamp_stream,
        Type=pikepdf.Name.XObject,
        Subtype=pikepdf.Name.Form,
        BBox=[0, 0, stamp.STAMP_W, stamp.STAMP_H],
        Resources=pikepdf.Dictionary(Font=_fonts()),
    )
    name = page.add_resource(form, pikepdf.Name.XObject, _free_name(page), replace_existing=False)
    if saves:
        page.contents_add(b"q\n" * saves, prepend=True)
    # The leading newline ends a comment the content may finish with.
    draw = b"q " + matrix.encode() + b" cm " + str(name).encode() + b" Do Q\n"
    page.contents_add(b"\n" + b"Q\n" * restores + draw)


def _save_depths(pdf: pikepdf.Pdf, page: pikepdf.Page) -> tuple[int, int] | None:
    """How many q before the content and Q after it bring the graphics state back to the start.

    One pair for well-formed content; more when it restores more than it saves (each extra Q
    would otherwise pop our q) or leaves states saved. None if the content does not parse
    cleanly (qpdf raises, or recovers with a warning).
    """
    pdf.get_warnings()  # empties qpdf's list, so only this parse's warnings count below
    depth = lowest = 0
    try:
        for instruction in pikepdf.parse_content_stream(page, "q Q"):
            depth += 1 if str(instruction.operator) == "q" else -1
            lowest = min(lowest, depth)
    except pikepdf.PdfError:
        return None
    if pdf.get_warnings():
        return None
    return 1 - lowest, 1 - lowest + depth


def _isolate_content(pdf: pikepdf.Pdf, page: pikepdf.Page) -> None:
    """Move the page's content into a form XObject that the page then draws."""
    contents = page.obj.get(pikepdf.Name.Contents)
    streams = contents if isinstance(contents, pikepdf.Array) else [contents]
    data = b"\n".join(
        stream.read_bytes() for stream in streams if isinstance(stream, pikepdf.Stream)
    )
    resources = page.obj.get(pikepdf.Name.Resources, pikepdf.Dictionary())
    original = pdf.make_stream(
        data,
        Type=pikepdf.Name.XObject,
        Subtype=pikepdf.Name.Form,
        BBox=page.mediabox,
        Resources=resources,
    )
    page.obj.Resources = pikepdf.Dictionary(XObject=pikepdf.Dictionary(VecPage=original))
    page.obj.Contents = pdf.make_stream(b"/VecPage Do\n")


def _fonts() -> pikepdf.Dictionary:
    # Standard 14 fonts: every viewer has them, nothing is embedded.
    return pikepdf.Dictionary(
        {
            f"/{resource}": pikepdf.Dictionary(
                Type=pikepdf.Name.Font,
                Subtype=pikepdf.Name.Type1,
                BaseFont=pikepdf.Name(f"/{font}"),
                Encoding=pikepdf.Name.WinAnsiEncoding,
            )
            for font, resource in stamp.FONT_RESOURCES.items()
        }
    )


def _free_name(page: pikepdf.Page) -> pikepdf.Name:
    # A fixed name (not pikepdf's random one) keeps the output reproducible.
    resources = page.obj.get(pikepdf.Name.Resources)
    xobjects = resources.get(pikepdf.Name.XObject) if resources is not None else None
    taken = set(xobjects.keys()) if isinstance(xobjects, pikepdf.Dictionary) else set()
    candidate, index = "/VecStamp", 0
    while candidate in taken:
        index += 1
        candidate = f"/VecStamp{index}"
    return pikepdf.Name(candidate)


HIDDEN_FLAG = 2  # an annotation's /F bit 2: neither shown nor printed


def hide_annotations_under(page: pikepdf.Page, matrix: pikepdf.Matrix) -> None:
    """Annotations are drawn over the page content, so one over the stamp's corner would hide
    its codes: those are hidden (flagged, not removed, so links stay whole). Form fields
    (widgets) are left as they are: a filled-in value or a signature must stay visible."""
    annotations = page.obj.get(pikepdf.Name.Annots)
    if not isinstance(annotations, pikepdf.Array):
        return
    corners = [matrix.transform((x, y)) for x in (0.0, stamp.STAMP_W) for y in (0.0, stamp.STAMP_H)]
    xs, ys = [c[0] for c in corners], [c[1] for c in corners]
    area = (min(xs), min(ys), max(xs), max(ys))
    for annotation in annotations:
        if (
            isinstance(annotation, pikepdf.Dictionary)
            and annotation.get(pikepdf.Name.Subtype) != pikepdf.Name.Widget
            and _overlaps(annotation, area)
        ):
            annotation.F = _flags(annotation) | HIDDEN_FLAG


def _flags(annotation: pikepdf.Dictionary) -> int:
    try:
        return int(annotation.get(pikepdf.Name.F, 0))
    except (TypeError, ValueError):
        return 0


def _overlaps(annotation: pikepdf.Dictionary, area: tuple[float, float, float, float]) -> bool:
    rect = annotation.get(pikepdf.Name.Rect)
    try:
        x0, y0, x1, y1 = (float(value) for value in rect)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return False
    left, right, bottom, top = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
    return left < area[2] and right > area[0] and bottom < area[3] and top > area[1]
