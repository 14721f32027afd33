#!/bin/sh
# Join this machine to a Berth swarm as a worker. `berth nodes:add` prints the exact line:
#
#   sh deploy/join-node.sh <manager address:2377> <worker join token>
#
# Installs Debian's Docker engine (docker.io) if it is missing, then `docker swarm join`s. Run as root on a fresh
# Debian machine that reaches the manager on TCP 2377/7946, UDP 7946/4789 (see deploy/FIREWALL.md).
set -eu

die() {
    echo "join-node.sh: $*" >&2
    exit 1
}

[ $# -eq 2 ] || die "usage: sh deploy/join-node.sh <manager address:2377> <worker token> (berth nodes:add prints it)"
manager=$1
token=$2
case "$token" in
SWMTKN-1-*) ;;
*) die "'$token' is not a swarm join token (they start with SWMTKN-1-); copy the line \`berth nodes:add\` prints" ;;
esac
case "$manager" in
*:*) ;;
*) manager="$manager:2377" ;;
esac

if ! command -v docker >/dev/null 2>&1; then
    [ "$(id -u)" -eq 0 ] || die "Docker is not installed; run this as root to install it (apt-get install docker.io)"
    echo "-----> Installing the Docker engine (Debian's docker.io)"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io
    systemctl enable --now docker >/dev/null 2>&1 || service docker start
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
