"""Just enough PNG chunk parsing to hand the compressed pixels to a PDF unchanged.

A non-interlaced PNG's IDAT stream is exactly what a PDF ``/FlateDecode`` stream with PNG
predictors (``/Predictor 15``) decodes, so such images go into the PDF without re-encoding.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from service.artifacts.errors import ArtifactError

SIGNATURE = b"\x89PNG\r\n\x1a\n"
GRAY, RGB, PALETTE = 0, 2, 3
COMPONENTS = {GRAY: 1, RGB: 3, PALETTE: 1}


@dataclass(frozen=True, slots=True)
class PngData:
    width: int
    height: int
    bit_depth: int
    colour_type: int
    interlaced: bool
    palette: bytes
    transparency: bool
    idat: bytes

    @property
    def passthrough(self) -> bool:
        """True when the IDAT data can be embedded as it is (no alpha, no interlacing)."""
        return self.colour_type in COMPONENTS and not self.interlaced and not self.transparency


def read_png(data: bytes) -> PngData:
    """The header, palette and concatenated IDAT data; raises ArtifactError on a bad layout."""
    if not data.startswith(SIGNATURE):
        raise ArtifactError("The PNG image could not be read: not a PNG file.")
    chunks: dict[bytes, list[bytes]] = {}
    for kind, body in _chunks(data):
        chunks.setdefault(kind, []).append(body)
        if kind == b"IEND":
            break
    header = chunks.get(b"IHDR", [b""])[0]
    if len(header) != 13 or b"IDAT" not in chunks:
        raise ArtifactError("The PNG image could not be read: missing IHDR or IDAT.")
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    return PngData(
        width=width,
        height=height,
        bit_depth=depth,
        colour_type=colour,
        interlaced=interlace != 0,
        palette=chunks.get(b"PLTE", [b""])[0],
        transparency=b"tRNS" in chunks,
        idat=b"".join(chunks[b"IDAT"]),
    )


def _chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    position = len(SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        end = position + 8 + length
        if end + 4 > len(data):
            raise ArtifactError("The PNG image could not be read: it is truncated.")
        yield kind, data[position + 8 : end]
        position = end + 4  # the CRC was checked by Pillow's verify()
