"""The verified PDF of a JPEG or PNG original: the image on a page of its own, the stamp below.

JPEG data goes in unchanged (DCT passthrough); PNG pixels stay lossless, also unchanged when
the PNG allows it (see ``png``), else decoded and Flate-compressed with alpha as a soft mask.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pikepdf
from PIL import ExifTags, Image, ImageMath

from service.artifacts import overlay, png, stamp, verified
from service.artifacts.errors import ArtifactError

MAX_PIXELS = 50_000_000
PAGE_LONG_SIDE = 842.0  # the image's longer side on the page: A4's long side, in points
FLATE_LEVEL = 1  # decoded pixels only: level 6 is 2-3x slower for a few percent
JPEG_COLOURSPACES = {"L": "/DeviceGray", "RGB": "/DeviceRGB", "CMYK": "/DeviceCMYK"}
# EXIF orientation -> matrix from the stored image's unit square to the displayed one.
ORIENTATIONS = {
    2: (-1, 0, 0, 1, 1, 0),
    3: (-1, 0, 0, -1, 1, 1),
    4: (1, 0, 0, -1, 0, 1),
    5: (0, -1, -1, 0, 1, 1),
    6: (0, -1, 1, 0, 0, 1),
    7: (0, 1, 1, 0, 0, 0),
    8: (0, 1, -1, 0, 1, 0),
}

MIN_STAMP_SCALE = 0.75  # of its A4 size: the codes still scan from a phone


@dataclass(frozen=True, slots=True)
class PlacedImage:
    xobject: pikepdf.Stream
    width: int  # pixels as displayed, after the EXIF orientation
    height: int
    orientation: pikepdf.Matrix


def image_pdf(original: bytes, mime_type: str, stamp_stream: bytes) -> bytes:
    """A one-page PDF: the image at its aspect ratio, a band below it carrying the stamp."""
    pdf = pikepdf.new()
    image = jpeg_image(pdf, original) if mime_type == "image/jpeg" else png_image(pdf, original)
    factor = PAGE_LONG_SIDE / max(image.width, image.height)
    image_w, image_h = image.width * factor, image.height * factor
    # a very narrow image gets a wider page (image centred) rather than an unscannable stamp
    stamp_w = stamp.STAMP_W + 2 * overlay.STAMP_MARGIN
    page_w = max(image_w, stamp_w * MIN_STAMP_SCALE)
    scale = min(1.0, page_w / stamp_w)
    band_h = (stamp.STAMP_H + 2 * overlay.STAMP_MARGIN) * scale
    page = pdf.add_blank_page(page_size=(page_w, image_h + band_h))
    name = page.add_resource(image.xobject, pikepdf.Name.XObject, pikepdf.Name("/VecImage"))
    left = (page_w - image_w) / 2
    placement = image.orientation @ pikepdf.Matrix(image_w, 0, 0, image_h, left, band_h)
    page.contents_add(b"q " + placement.encode() + b" cm " + str(name).encode() + b" Do Q\n")
    corner = overlay.corner_matrix((0.0, 0.0, page_w, band_h), 0, scale)
    overlay.apply_stamp(pdf, page, stamp_stream, corner)
    # PDF 1.5 for 16-bit PNG samples.
    return verified.save_pdf(pdf, min_version="1.5")


@contextmanager
def _opened(data: bytes, image_format: str) -> Iterator[Image.Image]:
    """Pillow, limited to one format and to ``MAX_PIXELS``; its errors become ArtifactError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[image_format]) as image:
                if image.width * image.height > MAX_PIXELS:
                    raise ArtifactError(
                        f"The {image_format} image is too large (over 50 megapixels)."
                    )
                yield image
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ArtifactError(f"The {image_format} image is too large (over 50 megapixels).") from exc
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        raise ArtifactError(f"The {image_format} image could not be read: {exc}") from exc


def jpeg_image(pdf: pikepdf.Pdf, data: bytes) -> PlacedImage:
    """The JPEG bytes as they are, in a DCTDecode image XObject."""
    with _opened(data, "JPEG") as image:
        mode, (width, height), icc = image.mode, image.size, _icc(image)
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
        adobe = "adobe" in image.info
        if mode not in JPEG_COLOURSPACES:
            raise ArtifactError(f"JPEG images in {mode} mode are not supported.")
        # Decode at 1/8 scale: every coefficient is still read, so truncation shows, cheaply.
        image.draft(mode, (width // 8, height // 8))
        image.load()
    xobject = _image_stream(pdf, data, width, height, Filter=pikepdf.Name.DCTDecode)
    xobject.BitsPerComponent = 8
    xobject.ColorSpace = _colourspace(pdf, JPEG_COLOURSPACES[mode], icc)
    if mode == "CMYK" and adobe:
        xobject.Decode = pikepdf.Array([1, 0] * 4)  # Adobe writes CMYK JPEGs inverted
    return _oriented(xobject, width, height, orientation)


def _oriented(xobject: pikepdf.Stream, width: int, height: int, tag: object) -> PlacedImage:
    values = ORIENTATIONS.get(tag if isinstance(tag, int) else 1, (1, 0, 0, 1, 0, 0))
    turned = values[0] == 0  # orientations 5-8 swap width and height
    shown = (height, width) if turned else (width, height)
    return PlacedImage(xobject, *shown, pikepdf.Matrix(*values))


def png_image(pdf: pikepdf.Pdf, data: bytes) -> PlacedImage:
    with _opened(data, "PNG") as image:
        icc = _icc(image)
        image.verify()  # chunk CRCs and completeness, without decoding
    layout = png.read_png(data)
    if layout.passthrough:
        xobject = _png_passthrough(pdf, layout, icc)
    else:
        with _opened(data, "PNG") as image:
            xobject = _png_decoded(pdf, image, icc)
    return PlacedImage(xobject, layout.width, layout.height, pikepdf.Matrix())


def _png_passthrough(pdf: pikepdf.Pdf, layout: png.PngData, icc: bytes | None) -> pikepdf.Stream:
    colours = png.COMPONENTS[layout.colour_type]
    xobject = _image_stream(
        pdf, layout.idat, layout.width, layout.height, Filter=pikepdf.Name.FlateDecode
    )
    xobject.BitsPerComponent = layout.bit_depth
    xobject.DecodeParms = pikepdf.Dictionary(
        Predictor=15, Colors=colours, BitsPerComponent=layout.bit_depth, Columns=layout.width
    )
    if layout.colour_type == png.PALETTE:
        xobject.ColorSpace = _indexed(layout.palette, layout.bit_depth)
    else:
        device = "/DeviceGray" if colours == 1 else "/DeviceRGB"
        xobject.ColorSpace = _colourspace(pdf, device, icc)
    return xobject


def _indexed(palette: bytes, bit_depth: int) -> pikepdf.Array:
    entries = len(palette) // 3
    if entries == 0 or entries > 1 << bit_depth:
        raise ArtifactError("The PNG image could not be read: bad palette.")
    hival = entries - 1
    return pikepdf.Array(
        [
            pikepdf.Name.Indexed,
            pikepdf.Name.DeviceRGB,
            hival,
            pikepdf.String(palette[: entries * 3]),
        ]
    )


def _png_decoded(pdf: pikepdf.Pdf, image: Image.Image, icc: bytes | None) -> pikepdf.Stream:
    """Interlaced, transparent or alpha PNGs: raw pixels, alpha as a soft mask (still lossless)."""
    if image.mode.startswith("I"):
        # Only interlaced or transparent 16-bit grey ends up here; 8 bits keep the picture.
        image = _grey_16_to_8(image)
    grey = image.mode in ("1", "L", "LA")
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    base_mode = "L" if grey else "RGB"
    if has_alpha:
        if image.mode != base_mode + "A":
            image = image.convert(base_mode + "A")
        colour, alpha = _split_alpha(image)
        xobject = _flate_image(pdf, colour, image.size)
        xobject.SMask = _flate_image(pdf, alpha, image.size)
        xobject.SMask.ColorSpace = pikepdf.Name.DeviceGray
    else:
        xobject = _flate_image(pdf, image.convert(base_mode).tobytes(), image.size)
    xobject.ColorSpace = _colourspace(pdf, "/DeviceGray" if grey else "/DeviceRGB", icc)
    return xobject


def _grey_16_to_8(image: Image.Image) -> Image.Image:
    """16-bit grey as 8-bit grey, its tRNS grey level (a 16-bit value) turned into alpha first:
    after scaling, other levels could equal it, or it could match none."""
    wide = image.convert("I")
    narrow = wide.point(lambda value: value * (1 / 257) + 0.5).convert("L")
    transparent = image.info.get("transparency")
    if not isinstance(transparent, int):
        return narrow
    alpha = ImageMath.lambda_eval(
        lambda env: env["convert"]((env["a"] != transparent) * 255, "L"), a=wide
    )
    narrow.putalpha(alpha)
    return narrow


def _split_alpha(image: Image.Image) -> tuple[bytes, bytes]:
    if image.mode == "RGBA":
        # Packing straight from RGBA is ~10x faster than convert("RGB") + getchannel("A").
        return image.tobytes("raw", "RGB"), image.tobytes("raw", "A")
    return image.getchannel("L").tobytes(), image.getchannel("A").tobytes()


def _flate_image(pdf: pikepdf.Pdf, samples: bytes, size: tuple[int, int]) -> pikepdf.Stream:
    data = zlib.compress(samples, FLATE_LEVEL)
    xobject = _image_stream(pdf, data, *size, Filter=pikepdf.Name.FlateDecode)
    xobject.BitsPerComponent = 8
    return xobject


def _image_stream(
    pdf: pikepdf.Pdf, data: bytes, width: int, height: int, **keys: object
) -> pikepdf.Stream:
    return pdf.make_stream(
        data,
        Type=pikepdf.Name.XObject,
        Subtype=pikepdf.Name.Image,
        Width=width,
        Height=height,
        **keys,
    )


def _colourspace(pdf: pikepdf.Pdf, device: str, icc: bytes | None) -> pikepdf.Object:
    """The embedded ICC profile when there is one (true colours), else the device space."""
    if not icc:
        return pikepdf.Name(device)
    components = {"/DeviceGray": 1, "/DeviceRGB": 3, "/DeviceCMYK": 4}[device]
    stream = pdf.make_stream(icc, N=components, Alternate=pikepdf.Name(device))
    return pikepdf.Array([pikepdf.Name.ICCBased, stream])


def _icc(image: Image.Image) -> bytes | None:
    profile = image.info.get("icc_profile")
    return profile if isinstance(profile, bytes) else None
