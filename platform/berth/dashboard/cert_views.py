"""Dashboard actions on an app's certificates and HTTPS policy (berth.certs): upload one's own certificate, remove
or renew one, turn the HTTP → HTTPS redirect and HSTS on or off. A refused upload re-renders the app page with each
error beside its field and what was pasted kept (berth.dashboard.forms' convention)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_POST

from berth.accounts.roles import MEMBER
from berth.certs import services as certs_services
from berth.certs.models import Certificate
from berth.dashboard.common import client_ip
from berth.dashboard.forms import FORM
from berth.dashboard.views import _app, _back, app_page
from berth.routing.router import RouterError

UPLOAD_FIELDS = ("certificate", "private_key")


def upload_error_field(message: str) -> str:
    """The upload field a refusal is about: the key's problems beside the key, the rest beside the certificate."""
    return "private_key" if "private key" in message or "the key " in message else "certificate"


def _pasted_or_file(request: HttpRequest, field: str) -> str:
    """A PEM pasted into the textarea, else read from the file chosen beside it (a file that is not text is left
    for the service to call "not PEM")."""
    upload = request.FILES.get(f"{field}_file")
    if upload is not None and not request.POST.get(field, "").strip():
        return upload.read(certs_services.UPLOAD_MAX_BYTES + 1).decode("utf-8", "replace")
    return request.POST.get(field, "")


@login_required
@require_POST
def certificate_upload(request: HttpRequest, app: str) -> HttpResponse:
    app, role = _app(request, app, MEMBER)
    values = {field: _pasted_or_file(request, field) for field in UPLOAD_FIELDS}
    try:
        certificate = certs_services.certificate_upload(
            app=app,
            certificate_pem=values["certificate"],
            private_key_pem=values["private_key"],
            actor=request.user,
            remote_addr=client_ip(request),
        )
    except certs_services.CertificateInvalid as exc:
        errors = {upload_error_field(str(exc)): str(exc)}
    except RouterError as exc:
        errors = {FORM: f"The router did not take the certificate ({exc}); try again shortly."}
    else:
        messages.success(
            request, f"Certificate {certificate.pk} for {', '.join(certificate.hostnames)} is served."
        )
        return _back(app, "domains")
    return app_page(request, app, role, refused={"cert_upload": {"errors": errors, "values": values}})


@login_required
@require_POST
def certificate_remove(request: HttpRequest, app: str, certificate_id: int) -> HttpResponse:
    app, _ = _app(request, app, MEMBER)
    try:
        certs_services.certificate_remove(
            app=app, certificate_id=certificate_id, actor=request.user, remote_addr=client_ip(request)
        )
    except Certificate.DoesNotExist:
        messages.error(request, f"{app.name} has no certificate {certificate_id}.")
    else:
        messages.success(request, f"Removed certificate {certificate_id}.")
    return _back(app, "domains")


@login_required
@require_POST
def certificate_renew(request: HttpRequest, app: str, certificate_id: int) -> HttpResponse:
    app, _ = _app(request, app, MEMBER)
    try:
        certs_services.certificate_renew_request(
            app=app, certificate_id=certificate_id, actor=request.user, remote_addr=client_ip(request)
        )
    except Certificate.DoesNotExist:
        messages.error(request, f"{app.name} has no certificate {certificate_id}.")
    except certs_services.CertificateNotRenewable as exc:
        messages.error(request, f"Certificate {certificate_id}: {exc}.")
    else:
        messages.success(request, f"Renewing certificate {certificate_id}; its state here shows how it went.")
    return _back(app, "domains")


@login_required
@require_POST
def https_settings(request: HttpRequest, app: str) -> HttpResponse:
    app, _ = _app(request, app, MEMBER)
    redirect_https, hsts = request.POST.get("https_redirect") == "on", request.POST.get("hsts") == "on"
    try:
        certs_services.app_https_update(
            app=app,
            https_redirect=redirect_https,
            hsts=hsts,
            actor=request.user,
            remote_addr=client_ip(request),
        )
    except RouterError as exc:
        messages.error(
            request, f"The router did not take the change ({exc}); nothing changed. Try again shortly."
        )
    else:
        messages.success(
            request,
            f"HTTP → HTTPS redirect {'on' if redirect_https else 'off'}, HSTS {'on' if hsts else 'off'}.",
        )
    return _back(app, "domains")
