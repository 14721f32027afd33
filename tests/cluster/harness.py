"""A real multi-node Swarm on this one machine: each node is a network namespace with its own dockerd + containerd.

Why its own swarm and not workers joined to the host's: the host's engine is the one-node swarm colleagues' tests
use right now (advertising 127.0.0.1, which no namespace could reach anyway); a cluster of its own can lose nodes,
be drained and torn down without touching it. The code under test talks to this cluster's manager through
settings.DOCKER_HOST.

Layout (all names start with "berthc" so a killed run's leftovers are found by name):
- bridge berthc0 10.213.0.1/24 in the host; namespace berthcN with veth berthcNh <-> eth0 at 10.213.0.(10+N);
- in each namespace (see node.sh) a distinct hostname, the cgroup hierarchy mounted again, a containerd and a
  dockerd with their own data root, exec root, pidfile and socket under /var/tmp/berth-cluster/nodeN, every
  process of the node in the pids cgroup berthc-nodeN (killing the node = killing that tree);
- node 1 is the manager (swarm init, overlay address pool 10.214.0.0/16), nodes 2..N join it as workers;
- the only image, berth/stack:bookworm, is copied into every node (docker save once, cached; docker load).
"""

import concurrent.futures
import fcntl
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker

BASE = Path("/var/tmp/berth-cluster")
CACHE = Path("/var/tmp/berth-cluster-cache")
LOCK = Path("/var/tmp/berth-cluster.lock")
PREFIX = "berthc"
BRIDGE = f"{PREFIX}0"
NETWORK = "10.213.0"
OVERLAY_POOL = "10.214.0.0/16"
CGROUP_ROOT = Path("/sys/fs/cgroup")
PIDS = CGROUP_ROOT / "pids"
STACK_IMAGE = "berth/stack:bookworm"
# this machine's engine as docker.from_env() finds it: the images the nodes load come from it, so the code under
# test makes them there (override_settings(DOCKER_HOST=...)) even while on_cluster points it at the manager
HOST_DOCKER_HOST = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
NODE_SCRIPT = Path(__file__).with_name("node.sh")
FORWARD_RULE = [
    "FORWARD",
    "-i",
    BRIDGE,
    "-o",
    BRIDGE,
    "-m",
    "comment",
    "--comment",
    "berth-cluster",
    "-j",
    "ACCEPT",
]


def run(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=timeout)


def cgroup_controllers() -> list[str]:
    """The host's cgroup v1 hierarchies as mount options ("cpu", "name=systemd"), for node.sh to mount again."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields = right.split()
        if fields and fields[0] == "cgroup" and left.split()[4].startswith(str(CGROUP_ROOT) + "/"):
            options = [
                o for o in fields[2].split(",") if o not in ("rw", "ro") and not o.startswith("relatime")
            ]
            found.append(",".join(options))
    return found


def _tree(group: Path) -> list[int]:
    pids = []
    for procs in group.rglob("cgroup.procs"):
        try:
            pids += [int(p) for p in procs.read_text().split()]
        except (FileNotFoundError, ProcessLookupError, OSError):
            pass
    return pids


def kill_group(name: str, timeout: float = 15) -> int:
    """SIGKILL every process in pids cgroup `name` (a node's dockerd, containerd, shims and containers), then
    remove its cgroups in every hierarchy. These are exactly the processes the harness started. Returns how many."""
    group = PIDS / name
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    while group.exists() and time.monotonic() < deadline:
        pids = _tree(group)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    for hierarchy in CGROUP_ROOT.iterdir():
        top = hierarchy / name
        if top.is_dir():
            for directory in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                _rmdir(directory)
            _rmdir(top)
    return len(killed)


def _rmdir(path: Path) -> None:
    for _attempt in range(20):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)  # the last process of a cgroup is gone a moment after SIGKILL


@dataclass
class Node:
    index: int
    directory: Path
    process: subprocess.Popen | None = None
    node_id: str = ""
    _client: docker.DockerClient | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return f"{PREFIX}-node{self.index}"

    @property
    def netns(self) -> str:
        return f"{PREFIX}{self.index}"

    @property
    def address(self) -> str:
        return f"{NETWORK}.{10 + self.index}"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.directory}/docker.sock"

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = docker.DockerClient(base_url=self.docker_host, version="auto", timeout=60)
        return self._client

    def start(self) -> None:
        """Start the node's containerd and dockerd (again, after kill(): its state is kept, so it rejoins)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        # the test registry (tests/cluster/test_registry.py) listens on the bridge without TLS
        (self.directory / "daemon.json").write_text(f'{{"insecure-registries": ["{NETWORK}.0/24"]}}\n')
        (self.directory / "containerd.toml").write_text(
            "\n".join(
                [
                    "version = 2",
                    f'root = "{self.directory}/containerd-root"',
                    f'state = "{self.directory}/containerd-state"',
                    'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
                    "[grpc]",
                    f'  address = "{self.directory}/containerd.sock"',
                    "[ttrpc]",
                    f'  address = "{self.directory}/containerd.sock.ttrpc"',
                    "",
                ]
            )
        )
        self._client = None
        for stale in ("docker.sock", "containerd.sock", "containerd.sock.ttrpc", "docker.pid"):
            (self.directory / stale).unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.netns,
                "unshare",
                "--uts",
                "--",
                "sh",
                str(NODE_SCRIPT),
                self.name,
                str(self.directory),
                self.name,
                *cgroup_controllers(),
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(self.directory / "node.log", "ab"),  # noqa: SIM115  the child keeps it
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_tail()}")
            try:
                self.client.ping()
                return
            except Exception:
                time.sleep(0.2)
        raise RuntimeError(f"{self.name}: dockerd did not answer within {timeout}s: {self.log_tail()}")

    @property
    def cable(self) -> str:
        return f"{PREFIX}{self.index}h"  # the host end of the node's veth: down = the network cable pulled

    def kill(self, *, cable: bool = True) -> float:
        """Lose the machine: pull its cable (by default: a dead machine answers nothing, not even a reset) and
        SIGKILL its dockerd, containerd, shims and containers at once. Returns the monotonic time of the kill."""
        killed_at = time.monotonic()
        if cable:
            run("ip", "link", "set", self.cable, "down")
        kill_group(self.name)
        if self.process:
            self.process.wait(timeout=10)
        self._client = None
        return killed_at

    def log_tail(self, lines: int = 15) -> str:
        parts = []
        for log in ("node.log", "containerd.log", "dockerd.log"):
            path = self.directory / log
            if path.exists():
                parts += [
                    f"[{log}] {line}" for line in path.read_text(errors="replace").splitlines()[-lines:]
                ]
        return "\n".join(parts)


@dataclass
class Cluster:
    nodes: list[Node]
    setup_seconds: float = 0.0

    @property
    def manager(self) -> Node:
        return self.nodes[0]

    @property
    def workers(self) -> list[Node]:
        return self.nodes[1:]

    @property
    def docker_host(self) -> str:
        return self.manager.docker_host

    def node_by_id(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.node_id == node_id)

    def ip_netns_exec(self, node: Node, *command: str) -> list[str]:
        return ["ip", "netns", "exec", node.netns, *command]


def cleanup() -> None:
    """Remove everything a run of the harness makes, including a killed earlier run's leftovers."""
    if PIDS.is_dir():
        for group in PIDS.glob(f"{PREFIX}-node*"):
            kill_group(group.name)
    # delete the veths first: a namespace's devices otherwise go away only when the kernel gets round to
    # destroying it, seconds later, and the next run's `ip link add` would find them still there
    for line in run("ip", "-o", "link", "show", check=False).stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        if name.startswith(PREFIX) and name.endswith("h"):
            run("ip", "link", "del", name, check=False)
    netns = run("ip", "netns", "list", check=False).stdout.split()
    for name in netns:
        if name.startswith(PREFIX) and name[len(PREFIX) :].isdigit():
            run("ip", "netns", "del", name, check=False)
    run("ip", "link", "del", BRIDGE, check=False)
    while run("iptables", "-D", *FORWARD_RULE, check=False).returncode == 0:
        pass
    if BASE.exists():
        shutil.rmtree(BASE, ignore_errors=True)


def image_tar(ref: str, stem: str) -> Path:
    """An image of the host's engine saved once per image id as CACHE/<stem>-<id>.tar (the nodes start with no
    images); the tars of its earlier ids are removed."""
    image = docker.from_env().images.get(ref)
    tar = CACHE / f"{stem}-{image.id.split(':')[-1][:16]}.tar"
    if not tar.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        for old in CACHE.glob(f"{stem}-*.tar"):
            old.unlink()
        partial = tar.with_suffix(".partial")
        with open(partial, "wb") as handle:
            for chunk in image.save(named=True):
                handle.write(chunk)
        partial.rename(tar)
    return tar


def load_image(ref: str, stem: str, nodes: list[Node]) -> None:
    """An image of the host's engine into those nodes' engines that lack it, side by side. Only the nodes a test
    places work on: every load unpacks the whole image again."""
    image_id = docker.from_env().images.get(ref).id
    missing = []
    for node in nodes:
        try:
            if node.client.images.get(ref).id == image_id:
                continue  # loaded by an earlier test of this session (the nodes live as long as it)
        except docker.errors.ImageNotFound:
            pass
        missing.append(node)
    if not missing:
        return
    tar = image_tar(ref, stem)

    def load(node: Node) -> None:
        run("docker", "-H", node.docker_host, "load", "-q", "-i", str(tar), timeout=300)

    with concurrent.futures.ThreadPoolExecutor(len(missing)) as pool:
        for job in [pool.submit(load, node) for node in missing]:
            job.result()


def _network(count: int) -> None:
    run("ip", "link", "add", BRIDGE, "type", "bridge")
    run("ip", "addr", "add", f"{NETWORK}.1/24", "dev", BRIDGE)
    run("ip", "link", "set", BRIDGE, "up")
    # the host's Docker set FORWARD to DROP and bridged frames pass through iptables (br_netfilter)
    run("iptables", "-I", *FORWARD_RULE)
    for index in range(1, count + 1):
        _node_network(index)


def _node_network(index: int) -> None:
    netns, veth = f"{PREFIX}{index}", f"{PREFIX}{index}h"
    run("ip", "netns", "add", netns)
    run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
    run("ip", "link", "set", veth, "master", BRIDGE, "up")
    run("ip", "netns", "exec", netns, "ip", "addr", "add", f"{NETWORK}.{10 + index}/24", "dev", "eth0")
    run("ip", "netns", "exec", netns, "ip", "link", "set", "eth0", "up")
    run("ip", "netns", "exec", netns, "ip", "link", "set", "lo", "up")
    run("ip", "netns", "exec", netns, "ip", "route", "add", "default", "via", f"{NETWORK}.1")


def spare_node(index: int) -> Node:
    """A machine on the cluster's network with Docker running but in no swarm (for join-node.sh)."""
    _node_network(index)
    node = Node(index=index, directory=BASE / f"node{index}")
    node.start()
    node.wait_ready()
    return node


def wait_nodes_ready(cluster: Cluster, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        nodes = cluster.manager.client.api.nodes()
        if sum(1 for n in nodes if n["Status"]["State"] == "ready") >= count:
            return
        time.sleep(0.2)
    raise RuntimeError(f"fewer than {count} nodes ready after {timeout}s")


_lock_handle = None


def _lock() -> None:
    """One cluster on this machine at a time: the names, addresses and directories are fixed."""
    global _lock_handle
    handle = open(LOCK, "a")  # noqa: SIM115  held until destroy()
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise RuntimeError(f"another test cluster is running on this machine ({LOCK} is locked)") from None
    _lock_handle = handle


def _unlock() -> None:
    global _lock_handle
    if _lock_handle:
        _lock_handle.close()
        _lock_handle = None


def create(count: int = 3, heartbeat_s: float | None = None) -> Cluster:
    """Build a `count`-node swarm (node 1 manager, the others workers), each node with the stack image."""
    started = time.monotonic()
    _lock()
    cleanup()
    tar_future = concurrent.futures.ThreadPoolExecutor(1).submit(image_tar, STACK_IMAGE, "stack")
    _network(count)
    cluster = Cluster(nodes=[Node(index=i, directory=BASE / f"node{i}") for i in range(1, count + 1)])
    for node in cluster.nodes:
        node.start()
    for node in cluster.nodes:
        node.wait_ready()
    manager = cluster.manager
    spec = {}
    if heartbeat_s:
        spec["dispatcher_heartbeat_period"] = int(heartbeat_s * 1_000_000_000)
    manager.client.swarm.init(
        advertise_addr=manager.address,
        listen_addr="0.0.0.0:2377",
        default_addr_pool=[OVERLAY_POOL],
        subnet_size=24,
        **spec,
    )
    token = manager.client.swarm.attrs["JoinTokens"]["Worker"]

    def join(node: Node) -> None:
        node.client.swarm.join(
            remote_addrs=[f"{manager.address}:2377"],
            join_token=token,
            listen_addr="0.0.0.0:2377",
            advertise_addr=node.address,
        )

    def load(node: Node) -> None:
        with open(tar_future.result(), "rb") as handle:
            node.client.images.load(handle)

    with concurrent.futures.ThreadPoolExecutor(len(cluster.nodes) * 2) as pool:
        jobs = [pool.submit(join, n) for n in cluster.workers] + [pool.submit(load, n) for n in cluster.nodes]
        for job in jobs:
            job.result()
    wait_nodes_ready(cluster, count)
    for node in cluster.nodes:
        node.node_id = node.client.info()["Swarm"]["NodeID"]
    cluster.setup_seconds = time.monotonic() - started
    return cluster


def destroy(cluster: Cluster | None) -> None:
    if cluster:
        for node in cluster.nodes:
            if node._client:
                node._client.close()
    try:
        cleanup()
    finally:
        _unlock()
