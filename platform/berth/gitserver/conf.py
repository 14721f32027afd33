"""Git server settings, read from the environment once at import (the web process and each hook process)."""

from berth.core.env import env_int

# A push bigger than this is refused with 413 (and by receive.maxInputSize inside git, as a backstop).
MAX_PUSH_BYTES = env_int("BERTH_GIT_MAX_PUSH_BYTES", 512 * 1024 * 1024, minimum=1024, maximum=2**40)
# How long a push waits for the previous push of the same app before giving up.
PUSH_WAIT_SECONDS = env_int("BERTH_GIT_PUSH_WAIT", 30 * 60, minimum=1, maximum=24 * 3600)
