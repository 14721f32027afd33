"""`berth nodes…`: the swarm's machines (platform administrators only; the API answers 403 to anyone else).

Registered by berth.cli.main from NODE_COMMANDS: (name, summary, arguments, function, needs_app) each.
`ps:place` (an app's placement, member+) lives here too: it is about which nodes run the app.
"""

from __future__ import annotations

import argparse
from typing import Any

from berth.cli.client import Client, UsageError, current_credentials, segment
from berth.cli.output import table

Output = tuple[Any, str]
NODE = (("node",), {"metavar": "NODE", "help": "hostname, id or id prefix"})


def _api() -> Client:
    credentials = current_credentials()
    return Client(credentials.url, credentials.token, ca_bundle=credentials.ca_bundle)


def _labels(labels: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _summary(node: dict) -> str:
    return (
        f"{node['hostname']} ({node['role']}, {node['address']}): {node['state']}, {node['availability']},"
        f" {node['tasks']} tasks" + (f", labels {_labels(node['labels'])}" if node["labels"] else "")
    )


def nodes(args: argparse.Namespace) -> Output:

    rows = _api().get("/api/v1/nodes")
    return rows, table(
        rows,
        ["HOSTNAME", "ROLE", "STATE", "AVAILABILITY", "ADDRESS", "CPUS", "MEMORY", "TASKS", "LABELS"],
        lambda n: [
            n["hostname"] + (" *" if n["leader"] else ""),
            n["role"],
            n["state"],
            n["availability"],
            n["address"],
            n["cpus"],
            f"{n['memory_mb']} MB",
            n["tasks"],
            _labels(n["labels"]),
        ],
        empty="no nodes",
    )


def nodes_add(args: argparse.Namespace) -> Output:
    join = _api().get("/api/v1/nodes/join")
    text = "\n".join(
        [
            "On the new machine (Debian, as root, with this repository's deploy/join-node.sh), run:",
            "",
            f"  {join['command']}",
            "",
            f"It installs Docker if missing and joins the swarm at {join['manager']} as a worker;",
            "the machine must reach that address on TCP 2377 and 7946, UDP 7946 and 4789, and the registry's port"
            " (see deploy/FIREWALL.md).",
            *([f"warning: {join['warning']}"] if join.get("warning") else []),
        ]
    )
    return join, text


def nodes_drain(args: argparse.Namespace) -> Output:
    node = _api().patch(f"/api/v1/nodes/{segment(args.node)}", {"availability": "drain"})
    return node, f"Draining {_summary(node)}\nIts tasks move to the other nodes; the router follows."


def nodes_activate(args: argparse.Namespace) -> Output:
    node = _api().patch(f"/api/v1/nodes/{segment(args.node)}", {"availability": "active"})
    return node, f"Activated {_summary(node)}"


def nodes_label(args: argparse.Namespace) -> Output:
    labels: dict[str, str | None] = {}
    for word in args.labels:
        if word.endswith("-") and "=" not in word:
            labels[word[:-1]] = None
        else:
            key, sep, value = word.partition("=")
            if not sep or not key:
                raise UsageError(f"{word!r} is not key=value (set) or key- (remove)")
            labels[key] = value or None
    node = _api().patch(f"/api/v1/nodes/{segment(args.node)}", {"labels": labels})
    return node, f"Labelled {_summary(node)}"


def nodes_remove(args: argparse.Namespace) -> Output:
    _api().delete(f"/api/v1/nodes/{segment(args.node)}")
    return {"removed": args.node}, (
        f"Removed {args.node} from the swarm. On that machine, `docker swarm leave` stops it acting as a node."
    )


def ps_place(args: argparse.Namespace) -> Output:
    placed = _api().request(
        "PUT",
        f"/api/v1/apps/{segment(args.app)}/placement",
        {"process": args.process, "constraints": list(args.constraints)},
    )
    where = " ".join(placed["constraints"]) or "any node"
    return (
        placed,
        f"{args.app} {placed['process']} runs on {where} from its next deploy or `berth ps:restart`",
    )


NODE_COMMANDS = [
    ("nodes", "list the swarm's nodes (platform admins)", [], nodes, False),
    ("nodes:add", "print the command that joins a new machine to the swarm", [], nodes_add, False),
    ("nodes:drain", "move a node's tasks elsewhere and stop scheduling there", [NODE], nodes_drain, False),
    ("nodes:activate", "schedule tasks on a drained node again", [NODE], nodes_activate, False),
    (
        "nodes:label",
        "set (k=v) or remove (k-) node labels, matched by `berth ps:place`",
        [NODE, (("labels",), {"nargs": "+", "metavar": "KEY=VALUE"})],
        nodes_label,
        False,
    ),
    ("nodes:remove", "take a drained (or down) worker out of the swarm", [NODE], nodes_remove, False),
    (
        "ps:place",
        "keep a process on nodes with these labels (zone=a, zone!=b; none: anywhere)",
        [
            (("process",), {"metavar": "PROCESS"}),
            (("constraints",), {"nargs": "*", "metavar": "LABEL=VALUE"}),
        ],
        ps_place,
        True,
    ),
]
