"""What the routing tests read of HAProxy's own counters (its admin socket), to wait for traffic instead of sleeping."""

import json

from berth.routing.haproxy import admin_command


def sessions(router, app: str = "demo") -> int:
    """Requests in flight to `app`'s servers now (`show stat`'s scur over its backend's servers)."""
    backend = json.loads(router.paths.slots.read_text())["apps"][app]["backend"]
    lines = admin_command(f"show stat {backend} 4 -1").splitlines()
    header = lines[0].lstrip("# ").split(",")
    return sum(
        int(dict(zip(header, line.split(","), strict=False))["scur"] or 0) for line in lines[1:] if line
    )
