"""API v1 for a team's outbound webhooks (berth.hooks): list, add (the signing secret shown once), show, remove,
and a webhook's delivery log. Team admins and owners only: a webhook's URL can hold a secret (Slack's do)."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from berth.api import schema as S
from berth.api.common import TeamScopedView, body, client_ip, str_field
from berth.hooks import selectors as hooks_selectors
from berth.hooks import services as hooks_services
from berth.hooks.models import Webhook, WebhookDelivery


def webhook_repr(webhook: Webhook) -> dict:
    return {
        "id": webhook.pk,
        "kind": webhook.kind,
        "url": webhook.target if webhook.kind != "email" else f"mailto:{webhook.target}",
        "events": webhook.events,
        "created_at": webhook.created_at,
    }


def delivery_repr(delivery: WebhookDelivery) -> dict:
    return {
        "id": delivery.pk,
        "event": delivery.event,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "response_code": delivery.response_code,
        "last_error": delivery.last_error,
        "created_at": delivery.created_at,
        "delivered_at": delivery.delivered_at,
        "next_attempt_at": delivery.next_attempt_at if delivery.status == "pending" else None,
    }


class WebhookViewMixin:
    def handle_exception(self, exc):
        if isinstance(exc, Webhook.DoesNotExist):
            exc = NotFound("no such webhook in this team")
        return super().handle_exception(exc)

    def webhook(self, webhook_id: int) -> Webhook:
        return hooks_selectors.webhooks_for_team(self.team).get(pk=webhook_id)


class TeamWebhooksView(WebhookViewMixin, TeamScopedView):
    @extend_schema(operation_id="teams_webhooks_list", responses=S.WebhookItem(many=True))
    def get(self, request, team: str):
        return Response([webhook_repr(w) for w in hooks_selectors.webhooks_for_team(self.team)])

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses={201: OpenApiTypes.OBJECT},
        description='{"url": "https://…" or "mailto:a@b", "events": ["deploy.live", …] (default: all), "slack": '
        'false}. The answer holds "secret" (HTTP kind), shown this once: verify Berth-Signature with it.',
    )
    def post(self, request, team: str):
        data = body(request)
        events, slack = data.get("events"), data.get("slack", False)
        if events is not None and not (isinstance(events, list) and all(isinstance(e, str) for e in events)):
            raise ValidationError({"events": "must be a list of event names"})
        if not isinstance(slack, bool):
            raise ValidationError({"slack": "must be true or false"})
        webhook, secret = hooks_services.webhook_add(
            team=self.team,
            url=str_field(data, "url"),
            events=events,
            slack=slack,
            actor=request.user,
            remote_addr=client_ip(request),
        )
        return Response(webhook_repr(webhook) | {"secret": secret}, status=201)


class TeamWebhookView(WebhookViewMixin, TeamScopedView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, team: str, webhook_id: int):
        return Response(webhook_repr(self.webhook(webhook_id)))

    @extend_schema(responses={204: None})
    def delete(self, request, team: str, webhook_id: int):
        hooks_services.webhook_remove(
            team=self.team, webhook_id=webhook_id, actor=request.user, remote_addr=client_ip(request)
        )
        return Response(status=204)


class TeamWebhookDeliveriesView(WebhookViewMixin, TeamScopedView):
    @extend_schema(
        responses=S.WebhookDeliveryItem(many=True),
        description="The webhook's latest 50 deliveries, newest first.",
    )
    def get(self, request, team: str, webhook_id: int):
        deliveries = hooks_selectors.deliveries_for_webhook(self.webhook(webhook_id))
        return Response([delivery_repr(d) for d in deliveries])
