"""Just enough of git's pkt-line format to refuse a push in git's own words.

An HTTP error status reaches the pusher only as "RPC failed; HTTP 413"; a receive-pack answer with a sideband
message and report-status shows them `remote: error: ...` and `! [remote rejected] main -> main (...)`.
"""

import re

FLUSH = b"0000"
HEX4 = re.compile(rb"[0-9a-f]{4}")
SIDEBAND_64K_DATA = 65520 - 5


def pkt(data: bytes) -> bytes:
    return f"{len(data) + 4:04x}".encode() + data


def read_commands(head: bytes) -> tuple[list[str], set[str]] | None:
    """The refs and capabilities of a receive-pack request, from the start of its body; None if not whole."""
    refs: list[str] = []
    capabilities: set[str] = set()
    position = 0
    while True:
        length_field = head[position : position + 4]
        if not HEX4.fullmatch(length_field):
            return None
        length = int(length_field, 16)
        if length == 0:
            return (refs, capabilities) if refs else None
        if length < 4 or position + length > len(head):
            return None
        line = head[position + 4 : position + length].rstrip(b"\n")
        position += length
        command, _, caps = line.partition(b"\0")
        if not refs:
            capabilities = set(caps.decode("ascii", "replace").split())
        parts = command.decode("utf-8", "replace").split(" ")
        if len(parts) != 3:
            return None
        refs.append(parts[2])


def refusal(*, refs: list[str], capabilities: set[str], message: str, reason: str) -> bytes | None:
    """A receive-pack result refusing every ref; None when the client asked for no report we can answer in."""
    if not capabilities & {"report-status", "report-status-v2"}:
        return None
    report = pkt(f"unpack {reason}\n".encode()) + b"".join(
        pkt(f"ng {ref} {reason}\n".encode()) for ref in refs
    )
    report += FLUSH
    if "side-band-64k" not in capabilities and "side-band" not in capabilities:
        return report
    size = SIDEBAND_64K_DATA if "side-band-64k" in capabilities else 995
    out = pkt(b"\x02" + f"error: {message}\n".encode())
    out += b"".join(pkt(b"\x01" + report[i : i + size]) for i in range(0, len(report), size))
    return out + FLUSH
