"""Run by the pre-receive hook as a plain script (no Django): holds the inherited push lock until the refs moved.

Arguments: the repository, then `<ref>=<new object>` (empty for a deletion). Exits when every ref shows its new
value, or after a few seconds (receive-pack refused the update for its own reasons), releasing the lock.
"""

import subprocess
import sys
import time

LIMIT_SECONDS = 10.0


def current(repo: str, ref: str) -> str:
    result = subprocess.run(
        ["git", "--git-dir", repo, "rev-parse", "--verify", "--quiet", ref],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip()


def main() -> None:
    repo, *pairs = sys.argv[1:]
    wanted = [pair.rsplit("=", 1) for pair in pairs]
    deadline = time.monotonic() + LIMIT_SECONDS
    while time.monotonic() < deadline:
        if all(current(repo, ref) == new for ref, new in wanted):
            return
        time.sleep(0.05)


if __name__ == "__main__":
    main()
