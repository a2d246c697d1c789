"""Animated GIF (GIF89a) written frame by frame, for multi-frame rendered responses."""

from __future__ import annotations

import io
import struct

from PIL import Image

__all__ = ["AnimatedGif"]


class AnimatedGif:
    """A GIF89a animation written one frame at a time, so that no more than one frame is ever
    held, decoded or encoded (Pillow's ``save_all`` keeps every frame until the end).

    Each frame is encoded alone by Pillow (grayscale as is, colour through an adaptive palette)
    and its blocks are re-framed (GIF89a, W3C/CompuServe 1990): the first frame's color table
    becomes the Global Color Table, later frames carry theirs as a Local Color Table (section
    21); every frame gets a Graphic Control Extension with its delay (section 23) and the
    Netscape 2.0 application extension makes the animation loop. :meth:`add` returns the bytes
    of each frame (the first with the file header), :meth:`end` the trailer.
    """

    def __init__(self, frame_ms: int) -> None:
        # Delay Time in hundredths of a second; browsers slow down anything under 20 ms.
        self._delay = int(max(frame_ms, 20) / 10)
        self._started = False

    def add(self, image: Image.Image) -> bytes:
        still = io.BytesIO()
        image.save(still, format="GIF")
        table, table_bits, descriptor, interlaced, data = _still_gif_blocks(still.getvalue())
        del still
        control = b"!\xf9\x04\x00" + struct.pack("<H", self._delay) + b"\x00\x00"
        if self._started:
            flags = interlaced | (0x80 | table_bits if table else 0)
            return control + b"," + descriptor + bytes([flags]) + table + data
        self._started = True
        width, height = struct.unpack("<HH", descriptor[4:8])
        screen = struct.pack("<HHBBB", width, height, (0x80 | table_bits) if table else 0, 0, 0)
        loop = b"!\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
        return (
            b"GIF89a"
            + screen
            + table
            + loop
            + control
            + b","
            + descriptor
            + bytes([interlaced])
            + data
        )

    def end(self) -> bytes:
        """The trailer (section 27); an animation of no frames is not a GIF."""
        if not self._started:
            raise ValueError("an animated GIF needs at least one frame")
        return b";"


def _still_gif_blocks(gif: bytes) -> tuple[bytes, int, bytes, int, bytes]:
    """(color table, its size field, image position and size, interlace flag, table-based
    image data) of a one-frame GIF as Pillow writes it (GIF89a sections 18-22)."""
    flags = gif[10]
    table, bits = b"", 0
    position = 13
    if flags & 0x80:  # Global Color Table
        bits = flags & 0x07
        table = gif[position : position + (3 << (bits + 1))]
        position += len(table)
    while gif[position] == 0x21:  # extensions before the image: skipped
        position += 2
        while gif[position]:
            position += gif[position] + 1
        position += 1
    if gif[position] != 0x2C:
        raise ValueError("no image descriptor in the encoded GIF frame")
    descriptor = gif[position + 1 : position + 9]
    image_flags = gif[position + 9]
    position += 10
    if image_flags & 0x80:  # Local Color Table
        bits = image_flags & 0x07
        table = gif[position : position + (3 << (bits + 1))]
        position += len(table)
    start = position
    position += 1  # LZW minimum code size
    while gif[position]:  # data sub-blocks up to the block terminator
        position += gif[position] + 1
    position += 1
    return table, bits, descriptor, image_flags & 0x40, gif[start:position]
