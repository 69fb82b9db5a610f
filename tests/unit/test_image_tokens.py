"""Prompt tokens of images for the limiter: OpenAI's tile rule, from the image's header."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchboard.domain import AudioPart, FilePart, ImagePart
from switchboard.providers.image_tokens import (
    UPPER_BOUND_TOKENS,
    image_size,
    image_tokens,
    part_tokens,
)


def png(width: int, height: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + struct.pack(">II", width, height)


def gif(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height)


def jpeg(width: int, height: int) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + b"\x00" * 9
    sof = b"\xff\xc0" + struct.pack(">HBHH", 17, 8, height, width) + b"\x00" * 10
    return b"\xff\xd8" + app0 + sof


def webp(width: int, height: int) -> bytes:
    vp8x = b"VP8X" + b"\x0a\x00\x00\x00" + b"\x00\x00\x00\x00"
    return (
        b"RIFF\x00\x00\x00\x00WEBP"
        + vp8x
        + (width - 1).to_bytes(3, "little")
        + (height - 1).to_bytes(3, "little")
    )


@pytest.mark.parametrize("make", [png, gif, jpeg, webp])
def test_sizes_are_read_from_headers(make: object) -> None:
    assert callable(make)
    assert image_size(make(640, 480)) == (640, 480)


@pytest.mark.parametrize(
    ("size", "tokens"),
    [
        ((512, 512), 85 + 170 * 1),
        ((1024, 1024), 85 + 170 * 4),  # short side 768: 2 x 2 tiles
        ((4096, 2048), 85 + 170 * 6),  # 2048 x 1024, then 1536 x 768: 3 x 2
        ((100, 100), 85 + 170 * 1),
    ],
)
def test_openai_tile_rule(size: tuple[int, int], tokens: int) -> None:
    assert image_tokens(ImagePart(data=png(*size), media_type="image/png")) == tokens


def test_low_detail_urls_and_unreadable_images() -> None:
    assert image_tokens(ImagePart(url="https://x/y.png", detail="low")) == 85
    assert image_tokens(ImagePart(url="https://x/y.png")) == UPPER_BOUND_TOKENS == 1445
    assert image_tokens(ImagePart(data=b"not an image", media_type="image/png")) == 1445
    assert image_tokens(ImagePart(data=png(0, 0), media_type="image/png")) == 1445


def test_audio_and_files_are_estimated_by_size() -> None:
    assert part_tokens(AudioPart(b"x" * 32_000, "wav")) == 33
    assert part_tokens(FilePart(b"x" * 400, "application/pdf")) == 101


@given(st.binary(max_size=64))
def test_any_bytes_give_a_bounded_estimate(data: bytes) -> None:
    assert 85 <= image_tokens(ImagePart(data=data, media_type="image/png")) <= 1445
