"""What the dashboard shows of certificates (berth.certs' selectors do the reading): each certificate's state as a
person reads it, and the alarm banner for certificates close to expiry that will not renew by themselves."""

from berth.certs import selectors as certs_selectors
from berth.certs.models import Certificate, CertificateSource, CertificateState


def certificate_label(certificate: Certificate) -> str:
    """pending / issued until <date> / failing: <reason> (as `berth certs` says it)."""
    if certificate.state == CertificateState.ISSUED:
        return f"issued until {certificate.not_after:%Y-%m-%d %H:%M} UTC"
    if certificate.state == CertificateState.FAILING:
        return f"failing: {certificate.reason or 'no reason given'}"
    return "pending" + (f" ({certificate.reason})" if certificate.reason else "")


def certificate_rows(app) -> list[dict]:
    return [
        {
            "id": c.pk,
            "hostnames": ", ".join(c.hostnames),
            "source": c.source,
            "state": c.state,
            "label": certificate_label(c),
            "renewable": c.source == CertificateSource.ACME,
        }
        for c in certs_selectors.certificates_for_app(app)
    ]


def certificate_alarms(*, app=None, team=None) -> list[dict]:
    """Certificates within the alarm window (BERTH_CERT_RENEW_DAYS_ALARM) whose renewal is failing, or uploaded
    ones (Berth cannot renew those): of one app, or of every app of a team. Each with the words of the banner."""
    # rows, not instances with their apps (the apps page reads whether there are any with its rows:
    # berth.dashboard.selectors.AppStatusRows)
    expiring = certs_selectors.certificates_in_alarm()
    if app is not None:
        expiring = expiring.filter(app=app)
    if team is not None:
        expiring = expiring.filter(app__team=team)
    rows = expiring.values("id", "state", "source", "reason", "hostnames", "not_after", "app__name")
    alarms = []
    for row in rows:
        if row["state"] == CertificateState.FAILING:
            why = f"renewal is failing: {row['reason'] or 'no reason given'}"
        else:  # uploaded: Berth cannot renew it
            why = "it was uploaded: upload its successor"
        alarms.append(
            {
                "app": row["app__name"],
                "id": row["id"],
                "hostnames": ", ".join(row["hostnames"]),
                "not_after": row["not_after"],
                "why": why,
            }
        )
    return alarms
