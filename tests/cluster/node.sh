#!/bin/sh
# One node of the test cluster: run by the harness as
#   ip netns exec <netns> unshare --uts -- sh node.sh <hostname> <node dir> <cgroup name> <controllers...>
# `ip netns exec` gives us a mount namespace of our own with /sys mounted again (for the namespace's
# /sys/class/net), which hides the host's cgroup mounts: runc needs them, so they are mounted again here.
set -eu
name=$1 dir=$2 group=$3
shift 3
hostname "$name"
mount -t tmpfs -o mode=755 cgroup_root /sys/fs/cgroup
for controller in "$@"; do
    target=/sys/fs/cgroup/${controller#name=}
    mkdir -p "$target"
    mount -t cgroup -o "$controller" cgroup "$target"
done
mkdir -p /sys/fs/cgroup/unified
mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified
# Every process of this node (containerd, dockerd, shims, proxies) and every container (--cgroup-parent) lives
# under one pids cgroup: the harness kills "the machine" by killing that tree, and finds a killed run's leftovers.
mkdir -p "/sys/fs/cgroup/pids/$group"
echo $$ > "/sys/fs/cgroup/pids/$group/cgroup.procs"
# The engine keeps a few things at fixed paths (/etc/docker/key.json is its identity): give each node its own.
mkdir -p "$dir/etc-docker" "$dir/run-containerd" "$dir/run-docker"
# the mount points too: the host's engine makes /run/containerd only when its first container starts (a fresh
# machine whose first test is this one has none yet)
mkdir -p /etc/docker /run/containerd
mount --bind "$dir/etc-docker" /etc/docker
# The nodes reach nothing beyond the bridge: a name lookup must fail at once, not time out. Swarm's agent tries
# to pull a service's image before every task start (even one it has), and a 20 s DNS timeout per start
# was most of the time a rescheduled replica took to serve. The registry of the tests is addressed by IP.
echo "nameserver 127.0.0.1" > "$dir/resolv.conf"
mount --bind "$dir/resolv.conf" /etc/resolv.conf
mount --bind "$dir/run-containerd" /run/containerd
[ -d /run/docker ] && mount --bind "$dir/run-docker" /run/docker
ip link set lo up
containerd --config "$dir/containerd.toml" >"$dir/containerd.log" 2>&1 &
for _ in $(seq 100); do
    [ -S "$dir/containerd.sock" ] && break
    sleep 0.1
done
exec dockerd \
    --config-file "$dir/daemon.json" \
    --data-root "$dir/data" \
    --exec-root "$dir/exec" \
    --pidfile "$dir/docker.pid" \
    -H "unix://$dir/docker.sock" \
    --containerd "$dir/containerd.sock" \
    --cgroup-parent "/$group" \
    --storage-driver overlay2 \
    >"$dir/dockerd.log" 2>&1
