#!/usr/bin/env bash
# Usage: deploy/upgrade.sh   (from the checkout of the new version, e.g. after `git pull`)
#
# Upgrades a running Berth in place: the migration check (a downgrade or a migration unsafe while the old version
# still serves is refused, nothing changed), a control-plane backup, the migrations, then the platform's processes
# replaced one by one; the router and the apps' tasks are never restarted. `make up` on a new checkout does the same
# and then follows the logs in the foreground; this script returns once the upgrade is done.
#
# Under systemd (deploy/systemd) the units are restarted one by one instead, berth-router.service excepted.
source "$(dirname "$0")/lib.sh"

if [ -d /run/systemd/system ] && systemctl is-active --quiet berth-web.service 2>/dev/null; then
  cd "$REPO_DIR"
  set -a
  # shellcheck disable=SC1091
  [ -f /etc/berth.env ] && source /etc/berth.env
  set +a
  ensure_venv
  manage() { .venv/bin/python manage.py "$@"; }
  manage migrations_check || die "not upgraded: nothing was changed (see the line above)"
  backup="${BERTH_HOME:-/var/lib/berth}/upgrade-backups/before-$(date -u +%Y%m%dT%H%M%SZ).tar.gz"
  mkdir -p "$(dirname "$backup")"
  say "backing up the control plane first: $backup"
  manage backup --output "$backup" >/dev/null || die "not upgraded: the control plane's backup failed"
  manage migrate --noinput -v0
  manage collectstatic --noinput -v0
  manage stack_build base trixie
  manage addon_images_build
  systemd_units_update /etc/systemd/system
  # the worker's unit stops it with SIGTERM: Celery's warm shutdown finishes the running builds first
  for unit in worker daemons registry web; do
    if systemctl is-enabled --quiet "berth-$unit.service" 2>/dev/null; then
      say "restarting berth-$unit"
      systemctl restart "berth-$unit.service"
    fi
  done
  say "upgraded; berth-router.service was not restarted"
  exit 0
fi

BERTH_UP_DETACH=1 BERTH_UP_REQUIRE_RUNNING=1 exec "$REPO_DIR/deploy/up.sh"
