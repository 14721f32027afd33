"""Shapes of API v1 for the OpenAPI schema (/api/v1/schema/). Views render plain dicts; these only describe them."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers as s

ROLE = s.ChoiceField(choices=["owner", "admin", "member", "viewer"])


def _shape(component: str, /, **fields) -> type[s.Serializer]:
    # A class (not an instance) so it can be used both alone and as `Shape(many=True)`.
    return type(component, (s.Serializer,), {**fields, "__module__": __name__})


Error = _shape("Error", detail=s.CharField())
TokenCreated = _shape("TokenCreated", id=s.IntegerField(), name=s.CharField(), token=s.CharField())
SignIn = _shape("SignIn", username=s.CharField(), password=s.CharField(), name=s.CharField(required=False))
Token = _shape(
    "Token",
    id=s.IntegerField(),
    name=s.CharField(),
    created_at=s.DateTimeField(),
    last_used_at=s.DateTimeField(allow_null=True),
)
Name = _shape("NameRequest", name=s.CharField())
TeamRole = _shape("TeamRole", name=s.CharField(), role=ROLE)
Me = _shape(
    "Me",
    username=s.CharField(),
    email=s.CharField(),
    is_superuser=s.BooleanField(),
    teams=TeamRole(many=True),
)
Team = _shape("Team", name=s.CharField(), role=ROLE, created_at=s.DateTimeField())
Member = _shape("Member", username=s.CharField(), email=s.CharField(), role=ROLE)
MemberAdd = _shape(
    "MemberAdd", username=s.CharField(required=False), email=s.CharField(required=False), role=ROLE
)
RoleChange = _shape("RoleChange", role=ROLE)
InvitationCreate = _shape("InvitationCreate", email=s.EmailField(), role=ROLE)
Invitation = _shape(
    "Invitation",
    id=s.IntegerField(),
    email=s.EmailField(),
    role=ROLE,
    token=s.CharField(required=False, help_text="only in the answer to POST"),
    expires_at=s.DateTimeField(),
    created_at=s.DateTimeField(),
)
InvitationAccept = _shape("InvitationAccept", token=s.CharField())
Joined = _shape("Joined", team=s.CharField(), role=ROLE)
AuditEvent = _shape(
    "AuditEvent",
    actor=s.CharField(allow_null=True),
    action=s.CharField(),
    target=s.CharField(),
    created_at=s.DateTimeField(),
    remote_addr=s.CharField(allow_null=True),
    data=s.DictField(),
)
AppSummary = _shape(
    "AppSummary",
    name=s.CharField(),
    team=s.CharField(),
    url=s.URLField(),
    created_at=s.DateTimeField(),
    current_release=s.IntegerField(allow_null=True),
)
AppCreate = _shape("AppCreate", name=s.CharField(), team=s.CharField(required=False))
Formation = _shape(
    "Formation",
    process=s.CharField(),
    replicas=s.IntegerField(min_value=0, max_value=100),
    memory_mb=s.IntegerField(allow_null=True, min_value=32, max_value=65536),
    cpu=s.FloatField(allow_null=True, min_value=0.01, max_value=64),
)
FormationChange = _shape(
    "FormationChange",
    process=s.CharField(),
    replicas=s.IntegerField(required=False, min_value=0, max_value=100),
    memory_mb=s.IntegerField(required=False, allow_null=True, min_value=32, max_value=65536),
    cpu=s.FloatField(required=False, allow_null=True, min_value=0.01, max_value=64),
)
AppDetail = _shape(
    "AppDetail",
    name=s.CharField(),
    team=s.CharField(),
    url=s.URLField(),
    deploy_branch=s.CharField(),
    health_check_path=s.CharField(),
    buildpack=s.CharField(),
    created_at=s.DateTimeField(),
    current_release=s.IntegerField(allow_null=True),
    domains=s.ListField(child=s.CharField()),
    formation=Formation(many=True),
)
AppChange = _shape(
    "AppChange",
    deploy_branch=s.CharField(required=False),
    health_check_path=s.CharField(required=False),
    buildpack=s.CharField(required=False, allow_blank=True),
)
Config = OpenApiResponse(OpenApiTypes.OBJECT, description='{"KEY": "value", ...}')
ConfigChange = {
    "application/json": {"type": "object", "additionalProperties": {"type": "string", "nullable": True}}
}
Domain = _shape("Domain", hostname=s.CharField(), created_at=s.DateTimeField())
DomainAdd = _shape("DomainAdd", hostname=s.CharField())
Release = _shape(
    "Release",
    version=s.IntegerField(),
    image=s.CharField(),
    description=s.CharField(),
    status=s.ChoiceField(
        choices=["pending", "built", "deploying", "live", "failed", "superseded", "rolled_back"]
    ),
    created_by=s.CharField(allow_null=True),
    created_at=s.DateTimeField(),
    config_keys=s.ListField(child=s.CharField()),
    procfile=s.DictField(child=s.CharField()),
)
NoContent = OpenApiResponse(description="done")
