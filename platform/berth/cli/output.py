"""How the CLI prints: aligned tables and titled fields, as the Heroku CLI does."""

from collections.abc import Callable
from typing import Any


def table(rows: list[dict], headers: list[str], cells: Callable[[dict], list], *, empty: str) -> str:
    """Aligned columns under an underlined header, like `heroku apps`; `-` for a missing value."""
    if not rows:
        return empty
    lines = [headers] + [["-" if c in (None, "") else str(c) for c in cells(row)] for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    lines.insert(1, ["-" * width for width in widths])
    return "\n".join(
        "  ".join(t.ljust(w) for t, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def fields(title: str, items: dict[str, Any]) -> str:
    """A titled block of `Key: value` lines, like `heroku apps:info`."""
    width = max(len(key) for key in items) + 1
    lines = [f"{key + ':':<{width}}  {'-' if value in (None, '') else value}" for key, value in items.items()]
    return "\n".join([f"=== {title}", *lines])
