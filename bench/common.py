"""Small helpers the benchmarks share: a plain-text table, percentiles, process-tree memory, and the figures
each benchmark hands to bench/run_all.py."""

import json
import math
import re
import statistics
from collections.abc import Sequence
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns padded to their widest cell; text left-aligned, numbers right-aligned."""
    cells = [[str(h) for h in headers]] + [[_cell(value) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [all(_is_number(row[i]) or row[i] == "" for row in rows) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(width) if is_number else cell.ljust(width)
            for cell, width, is_number in zip(row, widths, numeric, strict=True)
        ).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    print(f"{title}\n{table(headers, rows)}\n", flush=True)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (fraction 0.5 = median, 0.99 = p99)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float)


def push_timings(output: str) -> dict:
    """What a `git push`'s output says of its build and roll-out: the builder's seconds ("-----> Built … in Ns")
    and the roll-out's until the new release was ready ("-----> Ready in Ns"); None for a line it lacks."""
    built = re.search(r"-----> Built \S+ \(\S+\) in ([0-9.]+)s", output)
    ready = re.search(r"-----> Ready in ([0-9.]+)s", output)
    return {
        "builder_s": float(built.group(1)) if built else None,
        "rollout_ready_s": float(ready.group(1)) if ready else None,
    }


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (gunicorn's workers, Celery's pool children and whatever they run now)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def tree_memory_mb(pid: int) -> dict:
    """RSS and PSS summed over `pid`'s process tree, in MB, and the RSS by command name. RSS counts pages the forked
    workers share once per process (what `ps` shows added up); PSS divides each shared page among its sharers (what
    the tree really costs)."""
    rss = pss = 0
    by_command: dict[str, float] = {}
    for member in process_tree(pid):
        try:
            command = Path(f"/proc/{member}/comm").read_text().strip()
            member_rss = 0
            for line in Path(f"/proc/{member}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    member_rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            continue  # ended meanwhile
        rss += member_rss
        by_command[command] = by_command.get(command, 0) + member_rss / 1024
    return {"rss_mb": rss / 1024, "pss_mb": pss / 1024, "by_command_mb": by_command}


def figure(
    name: str,
    samples: Sequence[float],
    unit: str,
    *,
    goal: str = "",
    note: str = "",
    limit: float | None = None,
) -> dict:
    """One row of `make bench`'s table: the median of `samples` and their spread. With `limit`, the goal is met
    when the median is at most that."""
    values = [float(v) for v in samples if v is not None]
    median = statistics.median(values) if values else None
    return {
        "name": name,
        "unit": unit,
        "runs": len(values),
        "median": median,
        "min": min(values) if values else None,
        "max": max(values) if values else None,
        "samples": values,
        "goal": goal,
        "met": None if limit is None or median is None else median <= limit,
        "note": note,
    }


def save_figures(bench: str, figures: list[dict]) -> None:
    """bench/results/<bench>.figures.json, which bench/run_all.py gathers into the one table."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{bench}.figures.json").write_text(json.dumps(figures, indent=2) + "\n")


# The app the deploy benchmarks push: a stdlib HTTP/1.1 server answering MESSAGE on every path, in one write.
APP_PY = """\
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MESSAGE = {message!r}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = (MESSAGE + "\\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"""
