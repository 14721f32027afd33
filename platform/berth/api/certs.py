"""API v1 for an app's certificates (berth.certs): list, upload one of the user's own, show, remove, renew now."""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.response import Response

from berth.api import schema as S
from berth.api.common import AppScopedView, ConflictError, body, client_ip, str_field
from berth.certs import selectors as certs_selectors
from berth.certs import services as certs_services
from berth.certs.models import Certificate
from berth.routing.router import RouterError


class RouterUnavailable(APIException):
    status_code = 503
    default_detail = "the router did not take the change; try again shortly"
    default_code = "router_unavailable"


def certificate_repr(certificate: Certificate) -> dict:
    window = timedelta(days=settings.BERTH_CERT_RENEW_DAYS_ALARM)
    return {
        "id": certificate.pk,
        "hostnames": certificate.hostnames,
        "source": certificate.source,
        "state": certificate.state,
        "reason": certificate.reason,
        "serial": certificate.serial,
        "not_before": certificate.not_before,
        "not_after": certificate.not_after,
        "next_attempt_at": certificate.next_attempt_at,
        "expiring": bool(certificate.not_after and certificate.not_after < timezone.now() + window),
        "created_at": certificate.created_at,
        "updated_at": certificate.updated_at,
    }


class CertificateViewMixin:
    """The services' refusals as API answers: a bad upload 400, not this app's certificate 404, a renewal that
    cannot be asked 409, a router that did not answer 503 (the services change nothing then)."""

    def handle_exception(self, exc):
        if isinstance(exc, certs_services.CertificateInvalid):
            exc = ValidationError({"detail": str(exc)})
        elif isinstance(exc, Certificate.DoesNotExist):
            exc = NotFound("no such certificate for this app")
        elif isinstance(exc, certs_services.CertificateNotRenewable):
            exc = ConflictError(str(exc))
        elif isinstance(exc, RouterError):
            exc = RouterUnavailable(f"the router did not take the change ({exc}); try again shortly")
        return super().handle_exception(exc)

    def certificate(self, certificate_id: int) -> Certificate:
        return certs_selectors.certificates_for_app(self.app).get(pk=certificate_id)


class AppCertificatesView(CertificateViewMixin, AppScopedView):
    @extend_schema(responses=S.Certificate(many=True))
    def get(self, request, app: str):
        return Response([certificate_repr(c) for c in certs_selectors.certificates_for_app(self.app)])

    @extend_schema(
        request=S.CertificateUpload,
        responses={201: S.Certificate, 400: S.Error},
        description="400 says what is wrong: not PEM, the key does not match, expired, names none of the app's "
        "hostnames, or names another app's. Certificates of the app it covers entirely are replaced.",
    )
    def post(self, request, app: str):
        data = body(request)
        certificate = certs_services.certificate_upload(
            app=self.app,
            certificate_pem=str_field(data, "certificate"),
            private_key_pem=str_field(data, "private_key"),
            actor=request.user,
            remote_addr=client_ip(request),
        )
        return Response(certificate_repr(certificate), status=201)


class AppCertificateView(CertificateViewMixin, AppScopedView):
    @extend_schema(responses=S.Certificate)
    def get(self, request, app: str, certificate_id: int):
        return Response(certificate_repr(self.certificate(certificate_id)))

    @extend_schema(responses={204: S.NoContent})
    def delete(self, request, app: str, certificate_id: int):
        certs_services.certificate_remove(
            app=self.app, certificate_id=certificate_id, actor=request.user, remote_addr=client_ip(request)
        )
        return Response(status=204)


class AppCertificateRenewView(CertificateViewMixin, AppScopedView):
    @extend_schema(
        request=None,
        responses={202: S.Certificate, 409: S.Error},
        description="Queues a renewal now (ACME certificates; 409 for an uploaded one, or with ACME off).",
    )
    def post(self, request, app: str, certificate_id: int):
        certificate = certs_services.certificate_renew_request(
            app=self.app, certificate_id=certificate_id, actor=request.user, remote_addr=client_ip(request)
        )
        return Response(certificate_repr(certificate), status=202)
