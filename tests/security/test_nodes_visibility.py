"""Who may see the nodes (the machines every team's apps share), their addresses and their load is one rule
(berth.nodes.selectors.can_see_nodes): platform admins (superusers) do; no tenant does, whatever their team role.

The same users are asked at the three edges: the API, the dashboard and the WebSocket. An app's processes still
name their node by its opaque Swarm id, but carry its address only for a platform admin.
"""

import json
from types import SimpleNamespace

import pytest
from asgiref.sync import async_to_sync
from berth.config.asgi import application

from tests.observe.communicator import WebsocketCommunicator
from tests.observe.conftest import run_service  # noqa: F401  (fixture)

pytestmark = [pytest.mark.django_db(transaction=True)]

TENANT_ROLES = ("owner", "admin", "member", "viewer")
TIMEOUT = 10


@pytest.fixture
def people(make_user, make_team):
    """One team with a user in each role, and a platform admin who is in no team at all."""
    from berth.accounts.services import membership_add, token_create

    users = {role: make_user() for role in TENANT_ROLES}
    team = make_team(owner=users["owner"])
    for role in ("admin", "member", "viewer"):
        membership_add(team=team, user=users[role], role=role, actor=users["owner"])
    users["platform-admin"] = make_user(is_superuser=True, is_staff=True)
    tokens = {role: token_create(user=user, name="t")[1] for role, user in users.items()}
    return SimpleNamespace(users=users, team=team, tokens=tokens)


@pytest.fixture
def nodes_snapshot():
    """A nodes snapshot in Redis, as the metrics sampler writes it (the socket shows the newest)."""
    from berth.core.redis import redis_client
    from berth.observe.metrics import NODES_KEY

    node = {"id": "n1", "hostname": "h", "address": "10.9.8.7", "cpu_percent": 3.0, "tasks": 2}
    rds = redis_client()
    entry_id = rds.xadd(NODES_KEY, {"data": json.dumps({"ts": 0, "nodes": [node]})})
    yield node
    rds.xdel(NODES_KEY, entry_id)


def ws_nodes(token: str) -> dict:
    """What /ws/nodes sends first to this token: the nodes message, or the close with its code."""

    async def scenario():
        comm = WebsocketCommunicator(
            application, "/ws/nodes", headers=[(b"authorization", f"Bearer {token}".encode())]
        )
        connected, _ = await comm.connect(timeout=TIMEOUT)
        assert connected
        message = await comm.receive_output(timeout=TIMEOUT)
        await comm.disconnect()
        return message

    return async_to_sync(scenario)()


@pytest.mark.parametrize("role", TENANT_ROLES)
def test_a_tenant_sees_no_node_at_any_edge(people, role, token_client, client, nodes_snapshot):
    user = people.users[role]
    api = token_client(user)
    for path in ("/api/v1/nodes", "/api/v1/nodes/join", "/api/v1/nodes/any"):
        response = api.get(path)
        assert response.status_code == 403, (path, response.content)
        assert "10.9.8.7" not in response.content.decode()

    client.force_login(user)
    assert client.get("/nodes/").status_code == 403
    assert 'id="nav-nodes"' not in client.get("/apps/").content.decode()

    message = ws_nodes(people.tokens[role])
    assert message == {"type": "websocket.close", "code": 4403}, message


@pytest.mark.docker  # the local node's id comes from the engine
def test_a_platform_admin_sees_the_nodes_with_addresses_at_every_edge(
    people, token_client, client, nodes_snapshot
):
    from berth.runtime.client import docker_client

    admin = people.users["platform-admin"]
    response = token_client(admin).get("/api/v1/nodes")
    assert response.status_code == 200, response.content
    local = docker_client().info()["Swarm"]["NodeID"]
    assert any(node["id"] == local and "address" in node for node in response.json())

    client.force_login(admin)
    assert client.get("/nodes/").status_code == 200
    assert 'id="nav-nodes"' in client.get("/apps/").content.decode()

    message = ws_nodes(people.tokens["platform-admin"])
    assert message["type"] == "websocket.send", message
    assert json.loads(message["text"])["nodes"] == [nodes_snapshot]


def test_an_apps_processes_name_their_node_but_not_its_address_to_tenants(
    people,
    make_app,
    token_client,
    run_service,  # noqa: F811  (fixture)
):
    app = make_app(
        f"nv-{people.team.pk}-{people.users['owner'].pk}", team=people.team, actor=people.users["owner"]
    )
    run_service(app.name, "sleep 300")
    member_rows = token_client(people.users["member"]).get(f"/api/v1/apps/{app.name}/ps").json()
    assert member_rows and all(row["node"] for row in member_rows)
    assert all(row["address"] is None for row in member_rows), member_rows

    # a platform admin (in no team: superusers reach every app) sees where it runs
    admin = people.users["platform-admin"]
    admin_rows = token_client(admin).get(f"/api/v1/apps/{app.name}/ps").json()
    assert admin_rows and all(row["address"] for row in admin_rows), admin_rows
