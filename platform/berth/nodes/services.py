"""Changes to the swarm's machines: drain, activate, label, remove. Each refuses what would hurt running apps.

Swarm does the moving: a drained node's tasks are started elsewhere (spread by the scheduler's placement
preference) while the old ones get SIGTERM; the router follows through the watcher's reconcile and its own checks.
"""

import re

from berth.apps.models import Formation
from berth.audit.services import audit_record
from berth.nodes.selectors import NodeError, NodeInfo, node_find, node_list
from berth.observe.services import event_record
from berth.runtime.nodes import SwarmNodes

# Used with fullmatch: `$` would also match before a trailing newline ("zone=a\n").
LABEL_KEY = re.compile(r"[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?")
LABEL_VALUE = re.compile(r"[A-Za-z0-9._-]{0,63}")
# `zone=a` or `zone!=a`: a node label, as `berth ps:place` and `berth nodes:label` take them
CONSTRAINT = re.compile(r"(?P<key>[a-z0-9][a-z0-9._-]*)(?P<op>!=|=)(?P<value>[A-Za-z0-9._-]*)")
SWARM_CONSTRAINT = re.compile(r"node\.labels\.([^=!]+)(==|!=)(.*)")


def _audit(action: str, node: NodeInfo, actor, data: dict | None = None) -> None:
    audit_record(
        action=action, actor=actor, team=None, target=node.hostname, data={"id": node.id, **(data or {})}
    )


def node_drain(*, node: str, actor=None, swarm: SwarmNodes | None = None) -> NodeInfo:
    """Stop scheduling on the node and move its tasks to the other active nodes.

    Refused when no other node is ready and active: the node's tasks would have nowhere to go.
    """
    swarm = swarm or SwarmNodes()
    target = node_find(node=node, swarm=swarm)
    if target.availability == "drain":
        return target
    others = [n for n in node_list(swarm=swarm) if n.id != target.id and n.schedulable]
    if not others:
        raise NodeError(
            f"{target.hostname} is the last active node: draining it would leave its {target.tasks} tasks "
            "nowhere to run. Add a node first (berth nodes:add) or activate a drained one."
        )
    swarm.update(target.id, availability="drain")
    _audit("node.drain", target, actor)
    return node_find(node=target.id, swarm=swarm)


def node_activate(*, node: str, actor=None, swarm: SwarmNodes | None = None) -> NodeInfo:
    """Let the scheduler place tasks on the node again (running tasks are not moved back; new ones spread)."""
    swarm = swarm or SwarmNodes()
    target = node_find(node=node, swarm=swarm)
    if target.availability != "active":
        swarm.update(target.id, availability="active")
        _audit("node.activate", target, actor)
    return node_find(node=target.id, swarm=swarm)


def labels_parse(*, expressions: list[str]) -> dict[str, str | None]:
    """`k=v` sets, `k-` (or `k=` with nothing) removes. Raises ValueError naming the bad one."""
    labels: dict[str, str | None] = {}
    for expression in expressions:
        if expression.endswith("-") and "=" not in expression:
            key, value = expression[:-1], None
        else:
            key, sep, value = expression.partition("=")
            if not sep:
                raise ValueError(f"{expression!r}: use key=value to set a label or key- to remove it")
            value = value or None
        if not LABEL_KEY.fullmatch(key):
            raise ValueError(f"{key!r}: a label key is lowercase letters, digits, '.', '_' or '-' (max 63)")
        if value is not None and not LABEL_VALUE.fullmatch(value):
            raise ValueError(f"{value!r}: a label value is letters, digits, '.', '_' or '-' (max 63)")
        labels[key] = value
    return labels


def node_label(
    *, node: str, labels: dict[str, str | None], actor=None, swarm: SwarmNodes | None = None
) -> NodeInfo:
    """Set (value) or remove (None) labels on the node; placement constraints (`berth ps:place`) match them."""
    swarm = swarm or SwarmNodes()
    target = node_find(node=node, swarm=swarm)
    merged = dict(target.labels)
    for key, value in labels.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    swarm.update(target.id, labels=merged)
    _audit("node.label", target, actor, {"labels": labels})
    return node_find(node=target.id, swarm=swarm)


def node_remove(*, node: str, actor=None, swarm: SwarmNodes | None = None) -> NodeInfo:
    """Take the node out of the swarm. Refused for a manager, and for a node still running tasks unless it is
    drained (drain first: its tasks move without dropping requests; a drained node's last tasks are stopping)."""
    swarm = swarm or SwarmNodes()
    target = node_find(node=node, swarm=swarm)
    if target.role == "manager":
        raise NodeError(
            f"{target.hostname} is a manager: Berth runs there; demote it first (docker node demote)"
        )
    if target.availability != "drain" and target.tasks and target.state == "ready":
        raise NodeError(
            f"{target.hostname} runs {target.tasks} tasks: drain it first (berth nodes:drain {target.hostname}),"
            " so they move without dropping requests, then remove it"
        )
    try:
        # a node that is still up must be forced out; it keeps running Docker until `docker swarm leave` on it
        swarm.remove(target.id, force=target.state != "down")
    except NodeError as exc:
        raise NodeError(f"could not remove {target.hostname}: {exc}") from exc
    _audit("node.remove", target, actor)
    return target


def constraints_parse(*, expressions: list[str]) -> list[str]:
    """`zone=a` / `zone!=a` → Swarm's `node.labels.zone==a` / `node.labels.zone!=a`."""
    constraints = []
    for expression in expressions:
        match = CONSTRAINT.fullmatch(expression)
        if not match:
            raise ValueError(f"{expression!r}: a placement constraint is label=value or label!=value")
        op = "==" if match["op"] == "=" else "!="
        constraints.append(f"node.labels.{match['key']}{op}{match['value']}")
    return constraints


def constraints_satisfiable(*, constraints: list[str], swarm: SwarmNodes | None = None) -> bool:
    """Whether at least one active, ready node matches every constraint (checked before a deploy asks Swarm)."""
    for candidate in node_list(swarm=swarm):
        if candidate.schedulable and all(_matches(candidate, c) for c in constraints):
            return True
    return False


def _matches(node: NodeInfo, constraint: str) -> bool:
    key, op, value = SWARM_CONSTRAINT.fullmatch(constraint).groups()
    return (node.labels.get(key) == value) == (op == "==")


def constraints_display(constraints: list[str]) -> list[str]:
    """Swarm's `node.labels.zone==a` back to the `zone=a` people type."""
    shown = []
    for constraint in constraints:
        match = SWARM_CONSTRAINT.fullmatch(constraint)
        shown.append(f"{match[1]}{'=' if match[2] == '==' else '!='}{match[3]}" if match else constraint)
    return shown


def formation_place(
    *,
    app,
    process: str,
    expressions: list[str],
    actor,
    remote_addr: str | None = None,
    swarm: SwarmNodes | None = None,
) -> Formation:
    """Keep `process` of `app` on nodes whose labels match every expression (`zone=a`, `zone!=b`; none: anywhere).

    Refused when no active node matches them now: the deploy would wait for a node that is not there. Stored on
    the app's Formation row; it takes effect when the process's services are next created (a deploy or a
    `berth ps:restart`). Returns the Formation row.
    """
    constraints = constraints_parse(expressions=expressions)
    row = Formation.objects.filter(app=app, process=process).first()
    if row is None:
        known = ", ".join(Formation.objects.filter(app=app).values_list("process", flat=True)) or "none yet"
        raise ValueError(f"{app.name} has no process type {process!r} (its processes: {known})")
    if constraints and not constraints_satisfiable(constraints=constraints, swarm=swarm):
        raise NodeError(
            f"no active node has labels {' '.join(expressions)}: label one first "
            "(berth nodes:label NODE key=value) so the process has somewhere to run"
        )
    Formation.objects.filter(pk=row.pk).update(constraints=constraints)
    row.refresh_from_db()
    audit_record(
        action="formation.place",
        actor=actor,
        team=app.team,
        target=f"{app.name} {process}",
        remote_addr=remote_addr,
        data={"constraints": constraints},
    )
    return row


def node_states_follow(
    *, previous: dict[str, str] | None = None, swarm: SwarmNodes | None = None
) -> dict[str, str]:
    """Compare every node's state with `previous` (id -> state, from the last call) and record an app event
    `node.down` (or `node.up` when it is back) for each app with tasks on a node that changed. Returns the
    states to pass next time. Meant to be called by the watcher on each loop; the first call only looks.
    """
    swarm = swarm or SwarmNodes()
    nodes = {n.id: n for n in swarm.states()}
    states = {node_id: n.state for node_id, n in nodes.items()}
    if previous is None:
        return states
    changed = {
        node_id: state
        for node_id, state in states.items()
        if node_id in previous and (state == "down") != (previous[node_id] == "down")
    }
    for node_id, state in changed.items():
        hostname, address = nodes[node_id].hostname, nodes[node_id].address
        for app in swarm.apps_on(node_id):
            if state == "down":
                message = (
                    f"node {hostname} ({address}) is down: its replicas are being started on other nodes;"
                    " the router stopped sending it requests when its checks failed"
                )
                event_record(app=app, kind="node.down", message=message)
            else:
                event_record(app=app, kind="node.up", message=f"node {hostname} ({address}) is back")
    return states


def node_update(
    *,
    node: str,
    availability: str | None = None,
    labels: dict[str, str | None] | None = None,
    actor=None,
    swarm: SwarmNodes | None = None,
) -> NodeInfo:
    """One change of a node as `PATCH /nodes/<node>` asks it: its labels first (node_label), then its
    availability ("drain": node_drain, "active": node_activate). Returns the node as it is after."""
    swarm = swarm or SwarmNodes()
    info = node_find(node=node, swarm=swarm)
    if labels is not None:
        info = node_label(node=info.id, labels=labels, actor=actor, swarm=swarm)
    if availability == "drain":
        info = node_drain(node=info.id, actor=actor, swarm=swarm)
    elif availability == "active":
        info = node_activate(node=info.id, actor=actor, swarm=swarm)
    return info
