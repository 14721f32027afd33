#!/bin/sh
# Join this machine to a Berth swarm as a worker. `berth nodes:add` prints the exact line:
#
#   sh deploy/join-node.sh <manager address:2377> <worker join token> [<registry host:port>]
#
# Lists Berth's private registry (it speaks plain HTTP) in /etc/docker/daemon.json's insecure-registries, installs
# Debian's Docker engine (docker.io) if it is missing, then `docker swarm join`s. Run as root on a fresh Debian
# machine that reaches the manager on TCP 2377/7946, UDP 7946/4789 and the registry's port (deploy/FIREWALL.md).
set -eu

die() {
    echo "join-node.sh: $*" >&2
    exit 1
}

[ $# -eq 2 ] || [ $# -eq 3 ] ||
    die "usage: sh deploy/join-node.sh <manager address:2377> <worker token> [<registry host:port>] (berth nodes:add prints it)"
manager=$1
token=$2
registry=${3:-}
case "$token" in
SWMTKN-1-*) ;;
*) die "'$token' is not a swarm join token (they start with SWMTKN-1-); copy the line \`berth nodes:add\` prints" ;;
esac
case "$manager" in
*:*) ;;
*) manager="$manager:2377" ;;
esac

case "$registry" in
"" | *[!A-Za-z0-9.:-]*) [ -z "$registry" ] || die "'$registry' is not a registry address (host:port)" ;;
esac

# overridable only for the tests, whose nodes keep their engine's files elsewhere
daemon_config=${BERTH_DOCKER_DAEMON_CONFIG:-/etc/docker/daemon.json}
docker_pidfile=${BERTH_DOCKER_PIDFILE:-/var/run/docker.pid}
registry_listed=yes
if [ -n "$registry" ] && ! grep -q "\"$registry\"" "$daemon_config" 2>/dev/null; then
    registry_listed=no
    # written before Docker starts (the docker.io package starts it on install), so its first start trusts it
    echo "-----> Listing the registry $registry in $daemon_config (it speaks plain HTTP)"
    mkdir -p "$(dirname "$daemon_config")"
    if [ ! -s "$daemon_config" ]; then
        printf '{\n  "insecure-registries": ["%s"]\n}\n' "$registry" >"$daemon_config"
    elif command -v python3 >/dev/null 2>&1; then
        python3 -c 'import json, sys
path, registry = sys.argv[1], sys.argv[2]
config = json.load(open(path))
config["insecure-registries"] = sorted(set(config.get("insecure-registries", [])) | {registry})
open(path, "w").write(json.dumps(config, indent=2) + "\n")' "$daemon_config" "$registry"
    else
        die "$daemon_config exists and python3 is missing to edit it: add \"$registry\" to its insecure-registries"
    fi
fi

if ! command -v docker >/dev/null 2>&1; then
    [ "$(id -u)" -eq 0 ] || die "Docker is not installed; run this as root to install it (apt-get install docker.io)"
    echo "-----> Installing the Docker engine (Debian's docker.io)"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io
    systemctl enable --now docker >/dev/null 2>&1 || service docker start
fi

if [ "$registry_listed" = no ] && [ -f "$docker_pidfile" ] && docker info >/dev/null 2>&1; then
    kill -HUP "$(cat "$docker_pidfile")" # a running engine reloads insecure-registries on SIGHUP
fi

state=$(docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null) ||
    die "the Docker engine does not answer (is it running? \`systemctl status docker\`)"
if [ "$state" = "active" ]; then
    die "this machine is already in a swarm; \`docker swarm leave\` first if it should join this one"
fi

echo "-----> Joining the swarm at $manager as a worker"
# a manager that cannot be reached would keep `docker swarm join` waiting: give up after a minute
if ! output=$(timeout 60 docker swarm join --token "$token" "$manager" 2>&1); then
    case "$output" in
    *"join token"* | *"token"*)
        die "the manager at $manager refused the token ($output). Tokens change when rotated: get the current one with \`berth nodes:add\`"
        ;;
    *)
        die "could not join the swarm at $manager: ${output:-timed out after 60 s} (does this machine reach TCP 2377 there? see deploy/FIREWALL.md)"
        ;;
    esac
fi
echo "$output"
echo "-----> Joined. \`berth nodes\` on the manager lists this machine as $(hostname)."
