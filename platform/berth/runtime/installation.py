"""Another Berth installation's leftovers on this engine: what `manage.py doctor` reports.

Each installation labels what it makes with its id (org.berth.installation; berth.runtime.scheduler.is_ours).
Everything labelled with another id is never shown, followed, routed or removed by this one; this module only
counts it, per installation, and says how an operator removes it.
"""

from collections import defaultdict
from dataclasses import dataclass

import docker

from berth.runtime.client import docker_client
from berth.runtime.scheduler import LABEL_INSTALLATION, is_ours

KINDS = ("services", "containers", "networks", "volumes", "images")
# how an operator removes one kind of another installation's objects (the id goes in {label})
REMOVE_COMMANDS = {
    "services": "docker service rm $(docker service ls -q --filter label={label})",
    "containers": "docker rm -f $(docker ps -aq --filter label={label})",
    "networks": "docker network rm $(docker network ls -q --filter label={label})",
    "volumes": "docker volume rm $(docker volume ls -q --filter label={label})",
    "images": "docker image rm -f $(docker image ls -q --filter label={label})",
}


@dataclass
class ForeignInstallation:
    """What another installation left on this engine: counts by kind, and the commands that remove it."""

    installation: str
    counts: dict[str, int]

    @property
    def remove_commands(self) -> list[str]:
        label = f"{LABEL_INSTALLATION}={self.installation}"
        return [REMOVE_COMMANDS[kind].format(label=label) for kind in KINDS if self.counts.get(kind)]


def foreign_installations(*, client: docker.DockerClient | None = None) -> list[ForeignInstallation]:
    """Every other installation with something labelled on this engine (this manager's view: services and
    networks of the whole swarm, containers, volumes and images of this node), sorted by id."""
    api = (client or docker_client()).api
    listed = {
        "services": [
            s["Spec"].get("Labels") or {} for s in api.services(filters={"label": LABEL_INSTALLATION})
        ],
        "containers": [
            c.get("Labels") or {} for c in api.containers(all=True, filters={"label": LABEL_INSTALLATION})
        ],
        "networks": [n.get("Labels") or {} for n in api.networks(filters={"label": LABEL_INSTALLATION})],
        "volumes": [
            v.get("Labels") or {}
            for v in (api.volumes(filters={"label": LABEL_INSTALLATION}).get("Volumes") or [])
        ],
        "images": [i.get("Labels") or {} for i in api.images(filters={"label": LABEL_INSTALLATION})],
    }
    counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(KINDS, 0))
    for kind, labels_list in listed.items():
        for labels in labels_list:
            if not is_ours(labels):
                counts[labels[LABEL_INSTALLATION]][kind] += 1
    return [ForeignInstallation(installation=key, counts=counts[key]) for key in sorted(counts)]
