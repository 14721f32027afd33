"""Long lines cut into pieces that fit: what every log and build line goes through before it is stored.

A tenant's program decides how long its lines are; the platform decides how big one stored entry may be
(BERTH_LOG_LINE_MAX_BYTES). A longer line becomes several entries, in order, each but the last marked `more`
("the next entry continues this line"), so nothing is lost or cut and a reader can join them. Pieces end on a
UTF-8 character boundary, so each piece decodes on its own.
"""

from django.conf import settings

MORE = "more"  # the field marking a piece that the next entry continues


def line_max_bytes() -> int:
    return settings.BERTH_LOG_LINE_MAX_BYTES


def utf8_incomplete_tail(data: bytes) -> int:
    """How many bytes at the end of `data` start a UTF-8 character that is not complete yet (0 to 3)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:
            continue  # a continuation byte: look further back for the lead byte
        if byte & 0x80 == 0:
            return 0
        needed = 2 if byte & 0xE0 == 0xC0 else 3 if byte & 0xF0 == 0xE0 else 4
        return back if back < needed else 0
    return 0


def byte_pieces(data: bytes, max_bytes: int) -> list[bytes]:
    """`data` cut into pieces of at most `max_bytes`, never inside a UTF-8 character; [data] when it fits."""
    if len(data) <= max_bytes:
        return [data]
    pieces, start = [], 0
    while len(data) - start > max_bytes:
        cut = start + max_bytes
        while cut > start + 1 and data[cut] & 0xC0 == 0x80:
            cut -= 1  # data[cut] continues a character: cut before its lead byte
        pieces.append(data[start:cut])
        start = cut
    pieces.append(data[start:])
    return pieces


def text_pieces(text: str, max_bytes: int | None = None) -> list[str]:
    """`text` cut into pieces of at most `max_bytes` UTF-8 bytes (BERTH_LOG_LINE_MAX_BYTES by default)."""
    limit = max_bytes or line_max_bytes()
    if len(text) * 4 <= limit:  # fits whatever its characters are: the common case costs no encoding
        return [text]
    return [piece.decode("utf-8") for piece in byte_pieces(text.encode("utf-8", errors="replace"), limit)]
