"""Shapes of API v1 for the OpenAPI schema (/api/v1/schema/). Views render plain dicts; these only describe them."""

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema_field
from rest_framework import serializers as s

ROLE = s.ChoiceField(choices=["owner", "admin", "member", "viewer"])


def _shape(component: str, /, base: type[s.Serializer] = s.Serializer, **fields) -> type[s.Serializer]:
    # A class (not an instance) so it can be used both alone and as `Shape(many=True)`.
    return type(component, (base,), {**fields, "__module__": __name__})


# What every error answers (berth.api.errors.exception_handler): one readable line in `detail`, which is all the CLI
# prints, and for a request the API refused field by field, those fields with their messages.
@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": {
            "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
        },
    }
)
class _FieldErrors(s.DictField):
    pass


Error = _shape(
    "Error",
    detail=s.CharField(help_text="one line saying what went wrong"),
    errors=_FieldErrors(
        required=False,
        help_text="400 only: field name -> its message (or messages), when the request was refused field by field",
    ),
)
_EXPIRES_AT = s.DateTimeField(allow_null=True, help_text="null: valid until revoked")
_EXPIRES_IN_DAYS = s.IntegerField(
    required=False, allow_null=True, min_value=1, max_value=3650, help_text="left out: valid until revoked"
)
TokenCreated = _shape(
    "TokenCreated", id=s.IntegerField(), name=s.CharField(), token=s.CharField(), expires_at=_EXPIRES_AT
)
SignIn = _shape(
    "SignIn",
    username=s.CharField(),
    password=s.CharField(),
    name=s.CharField(required=False),
    expires_in_days=_EXPIRES_IN_DAYS,
)
Token = _shape(
    "Token",
    id=s.IntegerField(),
    name=s.CharField(),
    created_at=s.DateTimeField(),
    last_used_at=s.DateTimeField(allow_null=True),
    expires_at=_EXPIRES_AT,
)
TokenCreate = _shape("TokenCreateRequest", name=s.CharField(), expires_in_days=_EXPIRES_IN_DAYS)
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
    url=s.URLField(
        required=False, help_text="only in the answer to POST: the link that joins (sign-up or accept), once"
    ),
    emailed=s.BooleanField(
        required=False,
        help_text="only in the answer to POST: whether the link was e-mailed (BERTH_SMTP_URL set)",
    ),
    expires_at=s.DateTimeField(),
    created_at=s.DateTimeField(),
)
InvitationAccept = _shape("InvitationAccept", token=s.CharField())
Joined = _shape("Joined", team=s.CharField(), role=ROLE)
TeamQuota = _shape(
    "TeamQuota",
    limit=s.IntegerField(help_text="the limit that applies (0: no limit)"),
    own=s.IntegerField(allow_null=True, help_text="the team's own value; null: the installation's default"),
    usage=s.IntegerField(help_text="what the team's apps take now"),
)
TeamQuotas = _shape(
    "TeamQuotas",
    team=s.CharField(),
    quotas=_shape("TeamQuotaSet", apps=TeamQuota(), replicas=TeamQuota(), memory_mb=TeamQuota())(),
)
TeamQuotasChange = _shape(
    "TeamQuotasChange",
    apps=s.IntegerField(required=False, allow_null=True, min_value=0, max_value=2**31 - 1),
    replicas=s.IntegerField(required=False, allow_null=True, min_value=0, max_value=2**31 - 1),
    memory_mb=s.IntegerField(required=False, allow_null=True, min_value=0, max_value=2**31 - 1),
)
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
    parent=s.CharField(allow_null=True, help_text="for a preview app: the app it previews a branch of"),
)
AppCreate = _shape("AppCreate", name=s.CharField(), team=s.CharField(required=False))
Formation = _shape(
    "Formation",
    process=s.CharField(),
    replicas=s.IntegerField(min_value=0, max_value=100),
    memory_mb=s.IntegerField(allow_null=True, min_value=32, max_value=65536),
    cpu=s.FloatField(allow_null=True, min_value=0.01, max_value=64),
    constraints=s.ListField(
        child=s.CharField(), help_text="placement on node labels, e.g. zone=a (ps:place)"
    ),
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
    https_redirect=s.BooleanField(help_text="plain HTTP answers 308 to HTTPS once a certificate is served"),
    hsts=s.BooleanField(help_text="HTTPS answers carry Strict-Transport-Security"),
    maintenance=s.BooleanField(
        help_text="the router answers 503 with the maintenance page; processes keep running"
    ),
    maintenance_page=s.CharField(allow_blank=True, help_text="the app's own HTML page; empty: Berth's"),
    previews=s.BooleanField(
        help_text="a push of another branch makes or updates the preview app <name>--<branch>"
    ),
    preview_exclude=s.ListField(child=s.CharField(), help_text="config keys not copied to preview apps"),
    parent=s.CharField(allow_null=True, help_text="the app this one previews a branch of"),
    preview_branch=s.CharField(allow_blank=True),
)
AppChange = _shape(
    "AppChange",
    deploy_branch=s.CharField(required=False),
    health_check_path=s.CharField(required=False),
    buildpack=s.CharField(required=False, allow_blank=True),
    https_redirect=s.BooleanField(required=False),
    hsts=s.BooleanField(required=False),
    maintenance=s.BooleanField(required=False),
    maintenance_page=s.CharField(required=False, allow_blank=True, max_length=8192),
    previews=s.BooleanField(required=False),
    preview_exclude=s.ListField(child=s.CharField(), required=False, max_length=100),
)
# An app's certificate (berth.certs): issued by the ACME CA or uploaded; `reason` says why it is failing
Certificate = _shape(
    "Certificate",
    id=s.IntegerField(),
    hostnames=s.ListField(child=s.CharField()),
    source=s.ChoiceField(choices=["acme", "uploaded"]),
    state=s.ChoiceField(choices=["pending", "issued", "failing"]),
    reason=s.CharField(allow_blank=True),
    serial=s.CharField(allow_blank=True),
    not_before=s.DateTimeField(allow_null=True),
    not_after=s.DateTimeField(allow_null=True),
    next_attempt_at=s.DateTimeField(allow_null=True),
    expiring=s.BooleanField(help_text="expires within BERTH_CERT_RENEW_DAYS_ALARM days"),
    created_at=s.DateTimeField(),
    updated_at=s.DateTimeField(),
)
CertificateUpload = _shape(
    "CertificateUpload",
    certificate=s.CharField(help_text="PEM: the certificate, then its chain"),
    private_key=s.CharField(help_text="PEM: its private key (unencrypted)"),
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


# --- builds and deploys (berth.api.builds) ----------------------------------------------------------------------

Build = _shape(
    "Build",
    id=s.IntegerField(),
    app=s.CharField(),
    source=s.ChoiceField(choices=["git", "image"]),
    status=s.ChoiceField(choices=["queued", "building", "succeeded", "failed", "cancelled"]),
    status_reason=s.CharField(allow_blank=True),
    buildpack=s.CharField(allow_blank=True),
    git_ref=s.CharField(allow_blank=True),
    git_sha=s.CharField(allow_blank=True),
    image_ref=s.CharField(allow_blank=True, help_text="the image asked for (image deploys)"),
    image=s.CharField(allow_blank=True, help_text="the image the release runs"),
    release=s.IntegerField(allow_null=True),
    created_by=s.CharField(allow_null=True),
    created_at=s.DateTimeField(),
    started_at=s.DateTimeField(allow_null=True),
    finished_at=s.DateTimeField(allow_null=True),
    worker=s.CharField(allow_blank=True, help_text="host:pid of the worker that ran it"),
)
BuildDetail = _shape("BuildDetail", base=Build, log=s.CharField(allow_blank=True))


class _BuildDetailSchema(OpenApiSerializerExtension):
    """BuildDetail is a Build plus its log: described as such (allOf), so Build's enums are named once."""

    target_class = BuildDetail

    def map_serializer(self, auto_schema, direction):
        log = {"type": "object", "properties": {"log": {"type": "string"}}, "required": ["log"]}
        return {"allOf": [auto_schema.resolve_serializer(Build, direction).ref, log]}


ImageDeploy = _shape(
    "ImageDeployRequest", image=s.CharField(help_text="an image reference such as registry:5000/name:tag")
)
BuildOutput = OpenApiResponse(
    OpenApiTypes.STR,
    description="the build's log lines as they come (text/plain, streamed), then `[build <id> <status>]`",
)

# --- what runs (berth.api.deploys) ------------------------------------------------------------------------------


@extend_schema_field(
    {"oneOf": [{"type": "integer"}, {"type": "string", "pattern": "^[vV]?[0-9]+$"}], "example": "v3"}
)
class _ReleaseNumber(s.CharField):
    pass


Rollback = _shape("RollbackRequest", version=_ReleaseNumber(help_text="a release number: 3 or v3"))
Restart = _shape(
    "RestartRequest",
    process=s.CharField(required=False, allow_null=True, help_text="a process type; left out: all"),
)
Restarting = _shape(
    "Restarting",
    app=s.CharField(),
    process=s.CharField(allow_null=True),
    status=s.ChoiceField(choices=["restarting"]),
)
Process = _shape(
    "Process",
    id=s.CharField(),
    process=s.CharField(),
    release=s.IntegerField(),
    state=s.CharField(help_text="the Swarm task state: running, starting, failed, ..."),
    desired_state=s.CharField(),
    node=s.CharField(),
    address=s.CharField(allow_null=True),
    port=s.IntegerField(allow_null=True),
    started_at=s.DateTimeField(allow_null=True),
    restarts=s.IntegerField(),
    error=s.CharField(allow_blank=True),
)
RunCreate = _shape(
    "RunRequest",
    command=s.CharField(help_text="the command line, run by sh -c"),
    detach=s.BooleanField(required=False, default=False),
)
RunStarted = _shape(
    "RunStarted",
    id=s.CharField(),
    release=s.IntegerField(),
    command=s.CharField(),
    status=s.ChoiceField(choices=["running"]),
)
Run = _shape(
    "Run",
    id=s.CharField(),
    status=s.ChoiceField(choices=["running", "exited"]),
    exit_code=s.IntegerField(allow_null=True),
)
RunOutput = OpenApiResponse(
    OpenApiTypes.STR, description="the run's output lines as they come (text/plain, streamed) until it exits"
)

# --- where things run (berth.api.nodes) ------------------------------------------------------------------------

Placement = _shape(
    "Placement",
    process=s.CharField(),
    constraints=s.ListField(child=s.CharField(), help_text='node labels, e.g. ["zone=a"]; [] is anywhere'),
)
Node = _shape(
    "Node",
    id=s.CharField(),
    hostname=s.CharField(allow_blank=True),
    role=s.CharField(help_text="manager or worker"),
    leader=s.BooleanField(),
    state=s.CharField(help_text="ready, down, unknown or disconnected"),
    availability=s.CharField(help_text="active, pause or drain"),
    address=s.CharField(allow_blank=True),
    labels=s.DictField(child=s.CharField(allow_blank=True)),
    cpus=s.FloatField(),
    memory_mb=s.IntegerField(),
    tasks=s.IntegerField(help_text="running tasks of any service"),
    engine=s.CharField(allow_blank=True),
)
NodeChange = _shape(
    "NodeChange",
    availability=s.ChoiceField(choices=["drain", "active"], required=False),
    labels=s.DictField(
        child=s.CharField(allow_null=True, allow_blank=True), required=False, help_text="null removes a label"
    ),
)
NodeJoin = _shape(
    "NodeJoin",
    manager=s.CharField(),
    token=s.CharField(),
    command=s.CharField(),
    registry=s.CharField(allow_blank=True, help_text="the registry nodes pull from; empty when off"),
    warning=s.CharField(required=False),
)

# platform administrators' user management (berth.api.users)
User = _shape(
    "User",
    username=s.CharField(),
    email=s.CharField(allow_blank=True),
    is_active=s.BooleanField(),
    platform_admin=s.BooleanField(),
    teams=s.ListField(child=s.CharField()),
    date_joined=s.DateTimeField(),
    last_login=s.DateTimeField(allow_null=True),
)
UserCreate = _shape(
    "UserCreate", username=s.CharField(), email=s.EmailField(), platform_admin=s.BooleanField(required=False)
)
UserCreated = _shape("UserCreated", base=User, password_reset_url=s.CharField())
UserChange = _shape("UserChange", is_active=s.BooleanField())
PasswordResetLink = _shape("PasswordResetLink", username=s.CharField(), url=s.CharField())

# pipelines (berth.api.pipelines)
PipelineStageApp = _shape(
    "PipelineStageApp",
    app=s.CharField(),
    stage=s.ChoiceField(choices=["development", "staging", "production"]),
)
Pipeline = _shape(
    "Pipeline",
    name=s.CharField(),
    team=s.CharField(),
    created_at=s.DateTimeField(),
    apps=PipelineStageApp(many=True),
)
PipelineCreate = _shape("PipelineCreate", name=s.CharField(), team=s.CharField(required=False))
PipelineAppSet = _shape(
    "PipelineAppSet", app=s.CharField(), stage=s.ChoiceField(choices=["development", "staging", "production"])
)
Promote = _shape("Promote", to=s.ListField(child=s.CharField(), required=False))
Promotion = _shape(
    "Promotion", app=s.CharField(), build=s.IntegerField(allow_null=True), error=s.CharField(allow_blank=True)
)

# deploys from elsewhere (berth.api.sources)
AppSource = _shape("AppSource", url=s.CharField(allow_null=True), webhook_url=s.CharField(allow_null=True))
AppSourceSet = _shape("AppSourceSet", url=s.CharField())
AppSourceSecret = _shape("AppSourceSecret", base=AppSource, secret=s.CharField())

# outbound webhooks (berth.api.webhooks): lists of objects (their fields: berth.api.webhooks.webhook_repr, delivery_repr)
WebhookItem = _shape("WebhookItem")
WebhookDeliveryItem = _shape("WebhookDeliveryItem")
CronJobItem = _shape("CronJobItem")  # berth.api.jobs.job_repr
