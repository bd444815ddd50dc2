"""Base64 media (images, audio, data URLs) replaced by a short placeholder before export.

A screenshot sent to a model is megabytes of base64 that nobody reads in a trace:
the placeholder keeps what it was (media type, decoded size) and drops the bytes.
"""

from __future__ import annotations

import base64
import binascii
import re

# A string shorter than this is never taken for base64 media on its own (data URLs aside).
MEDIA_MIN_LENGTH = 1024
# A data URL whose payload is shorter than this is left as it is (an icon costs nothing).
_DATA_URL_MIN = 64
_SAMPLE = 4096

_BASE64_CHARS = re.compile(r"[A-Za-z0-9+/]*")
_BASE64_END = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_DATA_URL_HEAD = re.compile(r"data:([a-zA-Z]+/[\w.+-]+)?(?:;[\w.+-]+=[\w.+\-\"]+)*;base64,")
_DATA_URL = re.compile(
    r"data:(?P<type>[a-zA-Z]+/[\w.+-]+)?(?:;[\w.+-]+=[\w.+-]+)*;base64,"
    r"(?P<data>[A-Za-z0-9+/]*={0,2})"
)
# A long run of base64 inside text. The look-behind makes the scan linear: a run is
# tried from its first character only, never again from each character inside it.
_RUN = re.compile(rf"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{{{MEDIA_MIN_LENGTH},}}={{0,2}}")

# Leading bytes of common media files: what the placeholder calls them.
_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF8", 0, "image/gif"),
    (b"WEBP", 8, "image/webp"),
    (b"WAVE", 8, "audio/wav"),
    (b"%PDF", 0, "application/pdf"),
    (b"ID3", 0, "audio/mpeg"),
    (b"\xff\xfb", 0, "audio/mpeg"),
    (b"\xff\xf3", 0, "audio/mpeg"),
    (b"OggS", 0, "audio/ogg"),
    (b"fLaC", 0, "audio/flac"),
    (b"ftyp", 4, "video/mp4"),
    (b"\x1aE\xdf\xa3", 0, "video/webm"),
)


def placeholder(media_type: str | None, size: int) -> str:
    """What stands in for the media: its type and decoded size, never any of its bytes."""
    return f"[media {media_type or 'base64'}, {size} bytes]"


def _decoded_size(length: int, padding: int) -> int:
    return max(0, length * 3 // 4 - padding)


def _sniff(data: str) -> str | None:
    try:
        head = base64.b64decode(data[:24] + "=" * (-len(data[:24]) % 4))
    except (binascii.Error, ValueError):
        return None
    for magic, offset, media_type in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return media_type
    return None


def _looks_binary(sample: str) -> bool:
    """Base64 of binary data mixes cases and digits; a long word or hex string does not."""
    return (
        any(c.isupper() for c in sample)
        and any(c.islower() for c in sample)
        and any(c.isdigit() for c in sample)
    )


def media_placeholder(value: str) -> str | None:
    """The placeholder when the whole of `value` is base64 media, else None.

    Reads a sample (the start and the end), not the whole string: this runs on the
    calling thread, and a megabyte of base64 must not cost a megabyte of scanning.
    """
    head = _DATA_URL_HEAD.match(value) if value.startswith("data:") else None
    start = head.end() if head else 0
    data = value[start:]
    if len(data) < (_DATA_URL_MIN if head else MEDIA_MIN_LENGTH):
        return None
    # The padding ends the data: a sample that reaches the end leaves it to the tail's check.
    sample = data[:_SAMPLE] if len(data) > _SAMPLE else data.rstrip("=")
    tail = data[-256:]
    if _BASE64_CHARS.fullmatch(sample) is None or _BASE64_END.fullmatch(tail) is None:
        return None
    if head is None and not _looks_binary(sample):
        return None
    media_type = (head.group(1) if head else None) or _sniff(data)
    return placeholder(media_type, _decoded_size(len(data), len(data) - len(data.rstrip("="))))


def _data_url(match: re.Match[str]) -> str:
    data = match.group("data")
    if len(data) < _DATA_URL_MIN:
        return match.group(0)
    media_type = match.group("type") or _sniff(data)
    return placeholder(media_type, _decoded_size(len(data), len(data) - len(data.rstrip("="))))


def _run(match: re.Match[str]) -> str:
    data = match.group(0)
    if not _looks_binary(data[:_SAMPLE]):
        return data
    return placeholder(_sniff(data), _decoded_size(len(data), len(data) - len(data.rstrip("="))))


def replace_media(text: str) -> str:
    """`text` with every base64 data URL and long base64 run replaced by a placeholder."""
    if len(text) < _DATA_URL_MIN:
        return text
    if "base64," in text:
        text = _DATA_URL.sub(_data_url, text)
    if len(text) >= MEDIA_MIN_LENGTH:
        text = _RUN.sub(_run, text)
    return text
