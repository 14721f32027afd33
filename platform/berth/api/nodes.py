"""API v1 for the swarm's machines: GET/PATCH/DELETE /nodes, GET /nodes/join, platform administrators only
(berth.nodes.selectors.can_see_nodes); and where an app's processes may run (its placement constraints)."""

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from berth.api import schema as S
from berth.api.common import AppScopedView, BerthAPIView, ConflictError, body, client_ip
from berth.apps import selectors as apps_selectors
from berth.nodes import selectors, services


def _node(info: selectors.NodeInfo) -> dict:
    return info.as_dict()


class NodeAPIView(BerthAPIView):
    """The nodes' routes are PLATFORM_ADMIN in the permission map, answered by the nodes' own rule, so the API, the
    dashboard and the sockets can never disagree about who sees a node."""

    platform_rule = staticmethod(selectors.can_see_nodes)


class NodesView(NodeAPIView):
    @extend_schema(responses={200: S.Node(many=True), 409: S.Error})
    def get(self, request):
        try:
            return Response([_node(n) for n in selectors.node_list()])
        except selectors.NodeError as exc:
            raise ConflictError(str(exc)) from exc


class NodesJoinView(NodeAPIView):
    @extend_schema(responses={200: S.NodeJoin, 409: S.Error})
    def get(self, request):
        try:
            return Response(selectors.node_join_command())
        except selectors.NodeError as exc:
            raise ConflictError(str(exc)) from exc


class NodeView(NodeAPIView):
    @extend_schema(responses={200: S.Node, 409: S.Error})
    def get(self, request, node: str):
        return Response(_node(self._call(selectors.node_find, node=node)))

    @extend_schema(request=S.NodeChange, responses={200: S.Node, 409: S.Error})
    def patch(self, request, node: str):
        """{"availability": "drain"|"active"} and/or {"labels": {"zone": "a", "old": null}}."""
        data = body(request)
        unknown = set(data) - {"availability", "labels"}
        if unknown or not data:
            raise ValidationError({"body": "give availability (drain or active) and/or labels"})
        availability, labels = data.get("availability"), data.get("labels")
        if availability is not None and availability not in ("drain", "active"):
            raise ValidationError({"availability": "must be drain or active"})
        if labels is not None:
            if not isinstance(labels, dict) or not all(isinstance(v, str | None) for v in labels.values()):
                raise ValidationError({"labels": "must be an object of label: value (null removes)"})
            try:
                labels = services.labels_parse(
                    expressions=[f"{k}-" if v is None else f"{k}={v}" for k, v in labels.items()]
                )
            except ValueError as exc:
                raise ValidationError({"labels": str(exc)}) from exc
        info = self._call(
            services.node_update, node=node, availability=availability, labels=labels, actor=request.user
        )
        return Response(_node(info))

    @extend_schema(responses={204: S.NoContent, 409: S.Error})
    def delete(self, request, node: str):
        self._call(services.node_remove, node=node, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @staticmethod
    def _call(function, **kwargs):
        try:
            return function(**kwargs)
        except selectors.NodeNotFound as exc:
            raise NotFound(str(exc)) from exc
        except selectors.NodeError as exc:
            raise ConflictError(str(exc)) from exc


class AppPlacementView(AppScopedView):
    """GET /apps/{app}/placement -> [{"process", "constraints": ["zone=a"]}];
    PUT {"process": "web", "constraints": ["zone=a"]} (member+; [] places anywhere again)."""

    @extend_schema(responses=S.Placement(many=True))
    def get(self, request, app: str):
        rows = apps_selectors.formation_for_app(app=self.app)
        return Response(
            [{"process": r.process, "constraints": services.constraints_display(r.constraints)} for r in rows]
        )

    @extend_schema(request=S.Placement, responses={200: S.Placement, 409: S.Error})
    def put(self, request, app: str):
        data = body(request)
        process, expressions = data.get("process"), data.get("constraints")
        if not isinstance(process, str) or not process:
            raise ValidationError({"process": "is required, e.g. web"})
        if not isinstance(expressions, list) or not all(isinstance(e, str) for e in expressions):
            raise ValidationError({"constraints": 'must be a list such as ["zone=a"] ([] for anywhere)'})
        try:
            row = services.formation_place(
                app=self.app,
                process=process,
                expressions=expressions,
                actor=request.user,
                remote_addr=client_ip(request),
            )
        except ValueError as exc:
            raise ValidationError(
                {"constraints" if "constraint" in str(exc) else "process": str(exc)}
            ) from exc
        except selectors.NodeError as exc:
            raise ConflictError(str(exc)) from exc
        return Response(
            {"process": row.process, "constraints": services.constraints_display(row.constraints)}
        )
