"""`manage.py doctor`'s operator checks (berth.operations.checks) on real rows: certificates near expiry that will not
renew by themselves, add-on backups that failed or stopped, disk space under its threshold; and doctor's own lines,
each finding followed by its fix, failing the command on an error."""

import json
import subprocess
from datetime import timedelta

import pytest
from berth.addons.models import Addon, AddonBackup, AddonBackupSchedule, BackupState
from berth.certs.models import Certificate, CertificateSource, CertificateState
from berth.operations import checks
from berth.runtime.registry import registry_command, registry_config_write
from django.utils import timezone

from tests.conftest import free_port, manage, wait_for

NOW = timezone.now()


@pytest.fixture
def app(make_app):
    return make_app("shop")


def _cert(app, **fields) -> Certificate:
    defaults = {"hostnames": [f"{app.name}.example.org"], "source": CertificateSource.ACME}
    return Certificate.objects.create(app=app, **{**defaults, **fields})


@pytest.mark.django_db
def test_a_certificate_near_expiry_whose_renewal_fails_is_an_error_with_its_reason_and_fix(app):
    _cert(
        app,
        state=CertificateState.FAILING,
        reason="DNS problem: NXDOMAIN\nmore",
        not_after=NOW + timedelta(days=5),
    )
    _cert(
        app, hostnames=["fine.example.org"], state=CertificateState.ISSUED, not_after=NOW + timedelta(days=5)
    )
    _cert(
        app,
        hostnames=["later.example.org"],
        state=CertificateState.FAILING,
        not_after=NOW + timedelta(days=40),
    )
    [finding] = checks.certificate_findings(now=NOW)
    assert finding.severity == checks.ERROR
    assert finding.message == (
        "shop: the certificate for shop.example.org expires in 5 days and its renewal fails: DNS problem: NXDOMAIN"
    )
    assert "berth certs -a shop" in finding.fix


@pytest.mark.django_db
def test_an_uploaded_certificate_near_expiry_needs_its_renewal_uploaded(app):
    _cert(
        app,
        source=CertificateSource.UPLOADED,
        state=CertificateState.ISSUED,
        not_after=NOW - timedelta(days=1),
    )
    [finding] = checks.certificate_findings(now=NOW)
    assert "the uploaded certificate for shop.example.org expired 1 days ago" in finding.message
    assert finding.fix == "upload its renewal: `berth certs:add CERT KEY -a shop`"


def _addon(app, name: str = "db") -> Addon:
    return Addon.objects.create(team=app.team, name=name, kind="postgres", password_encrypted="x")


def _backup(
    addon: Addon, name: str, state: str, *, age: timedelta = timedelta(0), error: str = ""
) -> AddonBackup:
    backup = AddonBackup.objects.create(
        team=addon.team,
        addon=addon,
        addon_name=addon.name,
        kind=addon.kind,
        name=name,
        state=state,
        error=error,
    )
    AddonBackup.objects.filter(pk=backup.pk).update(started_at=NOW - age, finished_at=NOW - age)
    return backup


@pytest.mark.django_db
def test_a_backup_that_failed_its_verification_is_an_error(app):
    addon = _addon(app)
    _backup(addon, "b001", BackupState.VERIFIED, age=timedelta(days=1))
    _backup(addon, "b002", BackupState.VERIFY_FAILED, error="row counts differ: items 10 != 12")
    [finding] = [f for f in checks.addon_backup_findings(now=NOW) if "add-on" in f.message]
    assert finding.severity == checks.ERROR and f"add-on {app.team.name}/db" in finding.message
    assert "row counts differ" in finding.message
    assert "berth pg:backups:capture -a APP" in finding.fix


@pytest.mark.django_db
def test_a_scheduled_addon_without_a_recent_verified_backup_is_an_error_an_unscheduled_one_is_not(app):
    scheduled, unscheduled = _addon(app, "db"), _addon(app, "other")
    AddonBackupSchedule.objects.create(addon=scheduled, at="02:00")
    _backup(scheduled, "b001", BackupState.VERIFIED, age=timedelta(days=3))
    _backup(unscheduled, "b001", BackupState.VERIFIED, age=timedelta(days=30))
    found = [f for f in checks.addon_backup_findings(now=NOW) if "add-on" in f.message]
    assert [f.message for f in found] == [
        f"add-on {app.team.name}/db: no verified backup for 2 days (the newest is 3 days old)"
    ]
    assert "berth-daemons" in found[0].fix
    _backup(scheduled, "b002", BackupState.VERIFIED, age=timedelta(hours=20))
    assert not [f for f in checks.addon_backup_findings(now=NOW) if "add-on" in f.message]


def test_disk_below_its_threshold_is_said_with_the_fix(settings, tmp_path, monkeypatch):
    settings.BERTH_HOME = tmp_path
    assert [f for f in checks.disk_findings() if "BERTH_HOME" in f.message] == []
    # the thresholds are Berth's own numbers: every real disk is "full" above 100 % and over 1 PB
    monkeypatch.setattr(checks, "DISK_WARN_FRACTION", 1.01)
    monkeypatch.setattr(checks, "DISK_WARN_BYTES", 1024**5)
    [finding] = [f for f in checks.disk_findings() if "BERTH_HOME" in f.message]
    assert finding.severity == checks.WARNING and f"BERTH_HOME ({tmp_path}):" in finding.message
    assert "docker image prune" in finding.fix


@pytest.mark.docker
def test_doctor_prints_each_finding_with_its_fix_and_fails_on_an_error(tmp_path):
    env = {
        "BERTH_HOME": str(tmp_path),
        "DATABASE_URL": "",
        "BERTH_ROUTER_ADMIN_SOCKET": str(tmp_path / "none.sock"),
    }
    manage("migrate", "-v0", env=env, check=True)
    script = (
        "from datetime import timedelta; from django.utils import timezone; "
        "from berth.accounts.services import team_create; from berth.apps.services import app_create; "
        "from berth.certs.models import Certificate; "
        "from django.contrib.auth import get_user_model; "
        "user = get_user_model().objects.create_user(username='op', password='pw-123456'); "
        "team = team_create(name='doctors', actor=user); app = app_create(team=team, name='shop', actor=user); "
        "Certificate.objects.create(app=app, hostnames=['shop.example.org'], source='acme', state='failing', "
        "reason='CA said no', not_after=timezone.now() + timedelta(days=3))"
    )
    manage("shell", "-c", script, env=env, check=True)
    result = manage("doctor", env=env)
    assert result.returncode != 0
    lines = result.stdout.splitlines()
    certs = next(i for i, line in enumerate(lines) if line.startswith("certs"))
    assert "error: shop: the certificate for shop.example.org expires in" in lines[certs]
    assert "its renewal fails: CA said no" in lines[certs]
    assert lines[certs + 1].startswith("  fix ") and "berth certs -a shop" in lines[certs + 1]
    assert json.dumps(lines)  # every line printable
    for name in ("database", "disk", "backups"):
        assert any(line.split()[:2] == [name, "ok"] for line in lines), (name, result.stdout)


def test_the_registry_not_answering_or_refusing_berths_credentials_is_an_error(settings, tmp_path):
    """Against the real docker-registry, configured as `manage.py registry_run` configures it."""
    settings.BERTH_REGISTRY = f"127.0.0.1:{free_port()}"
    down = checks.registry_findings()
    assert [(f.check, f.severity) for f in down] == [("registry", "error")]
    assert "does not answer" in down[0].message and "registry" in down[0].fix

    settings.BERTH_REGISTRY_USER, settings.BERTH_REGISTRY_PASSWORD = "berth", "right-password"
    config = registry_config_write(
        directory=tmp_path, listen=settings.BERTH_REGISTRY, users={"berth": "right-password"}
    )
    log = open(tmp_path / "registry.log", "wb")  # noqa: SIM115  (closed below)
    process = subprocess.Popen(registry_command(config), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: checks.registry_findings() == [], timeout=20, message="the registry up")
        settings.BERTH_REGISTRY_PASSWORD = "wrong"
        refused = checks.registry_findings()
        assert len(refused) == 1 and "refuses Berth's credentials" in refused[0].message
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
    settings.BERTH_REGISTRY = ""
    assert checks.registry_findings() == []
