"""What an image, an audio clip or a file costs in prompt tokens, for the limiter.

Images follow OpenAI's tile rule as litellm counts it (`litellm_core_utils.
token_counter.calculate_img_tokens`), read without importing litellm: `low`
detail is 85 tokens; otherwise the image is scaled to fit 2048x2048, then its
short side to 768, and each 512-pixel tile costs 170 on top of the 85. An
inline image's size is read from its header; a URL's is unknown (fetching it
is the provider's job, not the limiter's), so it is reserved at the rule's
upper bound (2048x768, eight tiles: 1445), as litellm's
`high_detail_image_token_upper_bound` does: a reservation may be corrected
down after the call, never up past a limit.

Audio and files have no such rule; their estimates are deliberately rough
(bytes / 1000 and bytes / 4).
"""

from __future__ import annotations

import math
import struct

from switchboard.domain import AudioPart, FilePart, ImagePart, Part, TextPart

BASE_TOKENS = 85
TILE_TOKENS = 170
TILE_PX = 512
MAX_LONG_SIDE_PX = 2048
MAX_SHORT_SIDE_PX = 768
# Eight tiles: the most any image can take after scaling.
UPPER_BOUND_TOKENS = BASE_TOKENS + TILE_TOKENS * 8
AUDIO_BYTES_PER_TOKEN = 1000
FILE_BYTES_PER_TOKEN = 4


def part_tokens(part: Part) -> int:
    """The prompt tokens of one non-text part (text parts are counted by the estimator)."""
    if isinstance(part, ImagePart):
        return image_tokens(part)
    if isinstance(part, AudioPart):
        return 1 + len(part.data) // AUDIO_BYTES_PER_TOKEN
    if isinstance(part, FilePart):
        return 1 + len(part.data) // FILE_BYTES_PER_TOKEN
    assert isinstance(part, TextPart)
    return 0


def image_tokens(image: ImagePart) -> int:
    if image.detail == "low":
        return BASE_TOKENS
    size = image_size(image.data) if image.data else None
    if size is None:
        return UPPER_BOUND_TOKENS
    width, height = _scaled(*size)
    tiles = math.ceil(width / TILE_PX) * math.ceil(height / TILE_PX)
    return BASE_TOKENS + TILE_TOKENS * tiles


def _scaled(width: int, height: int) -> tuple[int, int]:
    """Fit in 2048x2048, then bring the short side down to 768 (never up)."""
    if max(width, height) > MAX_LONG_SIDE_PX:
        ratio = MAX_LONG_SIDE_PX / max(width, height)
        width, height = max(1, int(width * ratio)), max(1, int(height * ratio))
    if min(width, height) > MAX_SHORT_SIDE_PX:
        ratio = MAX_SHORT_SIDE_PX / min(width, height)
        width, height = max(1, int(width * ratio)), max(1, int(height * ratio))
    return width, height


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, GIF, JPEG or WebP header; None when unreadable."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            width, height = struct.unpack(">II", data[16:24])
            return _sane(width, height)
        if data[:4] == b"GIF8":
            width, height = struct.unpack("<HH", data[6:10])
            return _sane(width, height)
        if data[:3] == b"\xff\xd8\xff":
            return _jpeg_size(data)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp_size(data)
    except struct.error:
        return None
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    at = 2
    while at + 9 < len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            at += 2
            continue
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        # Start of frame (baseline, progressive, ...), not DHT/JPG/DAC.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return _sane(width, height)
        at += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return _sane(width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return _sane((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return _sane(width, height)
    return None


def _sane(width: int, height: int) -> tuple[int, int] | None:
    """A header is the caller's bytes: a zero or absurd size is no size."""
    if 0 < width <= 1 << 16 and 0 < height <= 1 << 16:
        return width, height
    return None
