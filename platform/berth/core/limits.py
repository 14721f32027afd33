"""Size limits of what a client may send, read from the environment once at import.

They live apart from settings.py because the gunicorn worker class configures uvicorn with them before Django's
settings load; settings.py exposes the same values to Django (settings.BERTH_MAX_REQUEST_BYTES and friends).
"""

from berth.core.env import env_int

# API, dashboard, admin: every body that is not a git request. The largest real one is a config change.
MAX_REQUEST_BYTES = env_int("BERTH_MAX_REQUEST_BYTES", 1024 * 1024, minimum=1024, maximum=2**30)
# git fetch and clone requests (info/refs, upload-pack negotiation): want/have lines, gzipped by git past 1 KiB.
GIT_MAX_FETCH_BYTES = env_int("BERTH_GIT_MAX_FETCH_BYTES", 4 * 1024 * 1024, minimum=1024, maximum=2**30)
# One WebSocket message (the sockets only stream out: a client sends little more than pings).
MAX_WS_MESSAGE_BYTES = env_int(
    "BERTH_MAX_WS_MESSAGE_BYTES", 64 * 1024, minimum=1024, maximum=16 * 1024 * 1024
)
# A request's line and headers together (uvicorn with httptools sets no limit of its own).
MAX_HEADER_BYTES = env_int("BERTH_MAX_HEADER_BYTES", 64 * 1024, minimum=8 * 1024, maximum=16 * 1024 * 1024)
