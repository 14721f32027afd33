"""Benchmark: add-ons (issue 14). On a whole platform of its own (bench/deploy_platform, database
berth_bench_addons), through the API as `berth` calls it:

1. provisioning: `addons:create postgres` and `addons:create redis`, each `--runs` times (the API call: the Swarm
   service, its volume, the server answering its own client, then the attachment's config release); median and
   spread;
2. a tiny app (the deploy benchmarks' stdlib server, `git push`ed) under wrk's keep-alive load (127.0.0.1 only,
   bounded to MAX_WRK_SECONDS) while its DATABASE_URL changes: attached (create), the credentials rotated, a second
   add-on attached as ANALYTICS_URL, detached, destroyed; each change is a release the app rolls to. Failed requests
   (socket errors + non-2xx) must be 0. The app does not query the database: what is measured is that a config
   change of the URL rolls without a failed request; the seconds the database itself did not answer during the
   rotation (a stop-first restart) are reported beside it;
3. backups: a PostgreSQL add-on filled with about `--mb` MB by generate_series (md5 text, so the dump does not
   shrink to nothing), then `pg:backups:capture` and `pg:backups:restore` timed, throughput in MB/s of the
   database's size (pg_database_size) and of the backup's size.

    .venv/bin/python bench/addons.py [--runs 3] [--mb 1024]

Prints tables, saves bench/results/addons.figures.json and bench/results/addons.json. Everything it creates (the
add-ons, their volumes, the app) it removes; a leftover of a killed run is removed by the next start.
"""

import argparse
import json
import os
import statistics
import subprocess
import time

import deploy_platform
from common import RESULTS, figure, print_table, save_figures
from deploy_platform import Platform, wait_seconds
from deploy_under_load import start_wrk, stop_wrk

# a database of its own: `make bench` runs the deploy benchmarks on berth_bench_deploy one after the other, and a
# lead's run beside this one must not see its tables dropped
deploy_platform.DB_NAME = "berth_bench_addons"
deploy_platform.TEAM = TEAM = "addons-bench"  # its network is not another benchmark's berth-team-bench
# its app is not another benchmark's: each removes the services of its prefix when it starts and ends
deploy_platform.APP_PREFIX = "addons-bench-"
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:54329/{deploy_platform.DB_NAME}"

API_TIMEOUT_S = 1800  # a capture or restore of the big database is one long request
ROW_BYTES = 130  # about what one generated row takes on disk, to size --mb (the table reports the real size)


def _median_spread(samples: list[float]) -> str:
    return f"{statistics.median(samples):.2f} ({min(samples):.2f}–{max(samples):.2f})"


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120).stdout


def remove_leftovers() -> None:
    """Add-on services and volumes of an earlier killed run of this benchmark (its team)."""
    for name in _docker("service", "ls", "-q", "--filter", "label=org.berth.addon").split():
        labels = _docker("service", "inspect", "-f", '{{index .Spec.Labels "org.berth.addon"}}', name)
        if labels.strip().startswith(f"{TEAM}/"):
            _docker("service", "rm", name)
    for volume in _docker("volume", "ls", "-q", "--filter", f"name=berth-addon-{TEAM}-").split():
        for _ in range(60):  # the service's container lets go of its volume within its stop grace
            _docker("volume", "rm", volume)
            if volume not in _docker("volume", "ls", "-q").split():
                break
            time.sleep(1)


class Api:
    def __init__(self, platform: Platform):
        self.platform = platform
        self.client = platform.api()
        self.client.timeout = API_TIMEOUT_S
        self.app = platform.app.name

    def call(self, method: str, path: str, **kwargs) -> dict | None:
        answer = self.client.request(method, f"/apps/{self.app}{path}", **kwargs)
        if answer.status_code >= 400:
            raise SystemExit(f"{method} {path}: {answer.status_code} {answer.text}")
        return answer.json() if answer.content else None

    def create(self, kind: str, name: str, as_name: str | None = None) -> float:
        body = {"kind": kind, "name": name, **({"as": as_name} if as_name else {})}
        started = time.monotonic()
        self.call("POST", "/addons", json=body)
        return time.monotonic() - started

    def destroy(self, name: str) -> None:
        self.call("DELETE", f"/addons/{name}?backup=false")

    def psql(self, name: str, sql: str) -> str:
        result = self.call(
            "POST", f"/addons/{name}/run", json={"args": ["-v", "ON_ERROR_STOP=1", "-tAc", sql]}
        )
        if result["exit_code"] != 0:
            raise SystemExit(f"psql {sql!r}: exit {result['exit_code']}: {result['output'][-500:]}")
        return result["output"].strip()

    def info(self, name: str) -> dict:
        return self.call("GET", f"/addons/{name}")


def live_version(app) -> int:
    from berth.releases.models import Release

    newest = Release.objects.filter(app=app).order_by("-version").first()
    return newest.version if newest else 0


def wait_live(app, version: int, timeout: float = 300) -> float:
    """Seconds until release `version` (or a newer one) of `app` is live."""
    from berth.releases.models import Release

    started = time.monotonic()
    wait_seconds(
        lambda: Release.objects.filter(app=app, version__gte=version, status="live").exists(),
        timeout=timeout,
        interval=0.2,
    )
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3, help="provisions of each kind")
    parser.add_argument("--mb", type=int, default=1024, help="the database size the backup figures use")
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    remove_leftovers()
    provision: dict[str, list[float]] = {"postgres": [], "redis": []}
    changes, backup_rows, figures = [], [], []
    report: dict = {"runs": args.runs, "mb": args.mb}
    with Platform() as platform:
        try:
            first = platform.push("v1")
            if first.returncode != 0:
                raise SystemExit(f"the first deploy failed:\n{first.stderr}")
            api = Api(platform)
            app = platform.app
            wrk = start_wrk(platform, args.connections)
            time.sleep(1)
            load_started = time.monotonic()
            try:

                def change(what: str, action) -> None:
                    before = live_version(app)
                    started = time.monotonic()
                    result = action()
                    api_s = time.monotonic() - started
                    rolled = wait_live(app, before + 1)
                    changes.append(
                        {
                            "what": what,
                            "api_s": round(api_s, 2),
                            "live_s": round(api_s + rolled, 2),
                            **(result or {}),
                        }
                    )

                # provisioning: each create attaches (a release), each destroy detaches (another); the last postgres
                # stays as the app's DATABASE_URL
                for kind in ("postgres", "redis"):
                    for run in range(args.runs):
                        name = f"{kind[:2]}-{run}"
                        change(
                            f"create {kind} ({name})",
                            lambda k=kind, n=name: {"provision_s": api.create(k, n)},
                        )
                        provision[kind].append(changes[-1]["provision_s"])
                        if not (kind == "postgres" and run == args.runs - 1):
                            change(f"destroy {name}", lambda n=name: api.destroy(n))
                main_db = f"po-{args.runs - 1}"

                def rotate() -> dict:
                    answer = api.call("POST", f"/addons/{main_db}/credentials/rotate")
                    return {"db_unanswered_s": answer["seconds"]}

                change(f"pg:credentials:rotate {main_db}", rotate)
                change(
                    "create postgres as ANALYTICS_URL",
                    lambda: {"provision_s": api.create("postgres", "analytics", "analytics")},
                )
                change("detach analytics", lambda: api.call("DELETE", "/addons/analytics/attachment"))
                api.destroy("analytics")
            finally:
                load = stop_wrk(wrk)
            load["seconds"] = round(time.monotonic() - load_started, 1)
            report.update(app=app.name, changes=changes, load=load)

            # backups: fill the add-on, capture, restore
            rows = max(1, args.mb * 1024 * 1024 // ROW_BYTES)
            started = time.monotonic()
            step = 500_000  # one statement per step: each psql run is bounded by the API's one-off timeout
            api.psql(main_db, "create table bench (id bigint, a text, b text)")
            for low in range(1, rows + 1, step):
                high = min(rows, low + step - 1)
                api.psql(
                    main_db,
                    f"insert into bench select g, md5(g::text), md5((g * 7)::text) from generate_series({low}, {high}) g",
                )
            fill_s = time.monotonic() - started
            # the database as PostgreSQL counts it (what a dump holds); the data directory (du) also holds the WAL
            db_bytes = int(api.psql(main_db, "select pg_database_size(current_database())"))
            dir_bytes = api.info(main_db)["size_bytes"]
            started = time.monotonic()
            backup = api.call("POST", f"/addons/{main_db}/backups")
            capture_s = time.monotonic() - started
            api.psql(
                main_db, "delete from bench where id % 2 = 0"
            )  # changed data, which the restore brings back
            started = time.monotonic()
            restored = api.call("POST", f"/addons/{main_db}/backups/{backup['name']}/restore", json={})
            restore_s = time.monotonic() - started
            count = int(api.psql(main_db, "select count(*) from bench"))
            if count != rows:
                raise SystemExit(f"the restore brought back {count} rows of {rows}")
            mb, backup_mb = db_bytes / 1e6, backup["size"] / 1e6
            backup_rows = [
                ["capture (pg_dump -Fc to the store)", round(capture_s, 1), round(mb / capture_s, 1), round(backup_mb / capture_s, 1)],
                ["restore (pg_restore, one transaction)", round(restore_s, 1), round(mb / restore_s, 1), round(backup_mb / restore_s, 1)],
            ]  # fmt: skip
            report.update(
                rows=rows,
                fill_s=round(fill_s, 1),
                db_bytes=db_bytes,
                data_directory_bytes=dir_bytes,
                backup=backup,
                capture_s=capture_s,
                restore_s=restore_s,
                restore=restored,
            )
            api.destroy(main_db)
        finally:  # the add-ons go before the platform removes the team network they are on
            remove_leftovers()

    print_table(
        f"add-on provisioning through the API ({args.runs} runs each; service + volume + ready + attach)",
        ["kind", "median s (min–max)"],
        [[kind, _median_spread(samples)] for kind, samples in provision.items()],
    )
    print_table(
        f"the app's DATABASE_URL changing under wrk ({args.connections} keep-alive connections through HAProxy)",
        ["change", "API s", "release live s", "db unanswered s"],
        [[c["what"], c["api_s"], c["live_s"], c.get("db_unanswered_s", "")] for c in changes],
    )
    print_table(
        "requests during all of them",
        ["failed", "total", "req/s", "seconds"],
        [[load["failed"], load["total"], load["requests_per_s"], load["seconds"]]],
    )
    print_table(
        f"backups of a {db_bytes / 1e6:.0f} MB PostgreSQL database (pg_database_size; {rows:,} rows; data directory "
        f"with its WAL {dir_bytes / 1e6:.0f} MB; the backup {backup_mb:.0f} MB)",
        ["operation", "seconds", "MB/s of the database", "MB/s of the backup"],
        backup_rows,
    )
    figures = [
        figure(f"provision {kind} (API: service, ready, attach)", samples, "s")
        for kind, samples in provision.items()
    ]
    figures.append(
        figure(
            "failed requests while DATABASE_URL changes (attach, rotate, detach)",
            [load["failed"]],
            "requests",
            goal="0",
            limit=0,
            note=f"of {load['total']:,}; {len(changes)} config releases; one run, a count",
        )
    )
    rotation = [c["db_unanswered_s"] for c in changes if "db_unanswered_s" in c]
    figures.append(figure("  the database unanswered during the rotation", rotation, "s"))
    figures.append(
        figure(
            f"backup capture, {db_bytes / 1e6:.0f} MB database",
            [mb / capture_s],
            "MB/s",
            note=f"{capture_s:.0f} s",
        )
    )
    figures.append(
        figure(
            f"backup restore, {db_bytes / 1e6:.0f} MB database",
            [mb / restore_s],
            "MB/s",
            note=f"{restore_s:.0f} s",
        )
    )
    save_figures("addons", figures)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "addons.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0 if load["failed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
