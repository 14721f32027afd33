"""Berth settings. Everything a deployment changes comes from the environment (see README, Configuration)."""

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from berth.core import limits
from berth.core.env import (
    env,
    env_bool,
    env_int,
    env_registry,
    env_smtp,
    env_url,
    home_make_private,
    private_dir,
    secret_from_home,
)

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # platform/berth
REPO_DIR = PACKAGE_DIR.parent.parent  # checkout root: buildpacks/, templates/, static/

BERTH_HOME = Path(env("BERTH_HOME", "/var/lib/berth")).expanduser()
try:
    private_dir(BERTH_HOME)  # 0700: another local user reads nothing of Berth's state
except OSError as exc:
    raise ImproperlyConfigured(f"BERTH_HOME={BERTH_HOME} cannot be created: {exc}") from exc
if not os.access(BERTH_HOME, os.W_OK):
    raise ImproperlyConfigured(f"BERTH_HOME={BERTH_HOME} is not writable by this user")

SECRET_KEY = env("BERTH_SECRET_KEY") or secret_from_home(
    BERTH_HOME, "secret_key", lambda: secrets.token_urlsafe(50)
)
DEBUG = env_bool("BERTH_DEBUG", False)
# This installation's id, generated once and kept in BERTH_HOME: on every Swarm service, container, network and
# image Berth makes (org.berth.installation), so another install's leftovers on the same engine are never taken
# for ours (berth.runtime.scheduler.is_ours). BERTH_INSTALLATION_ID names it when the home is not shared.
BERTH_INSTALLATION_ID = env("BERTH_INSTALLATION_ID") or secret_from_home(
    BERTH_HOME, "installation_id", lambda: secrets.token_hex(8)
)
_installation_id_ok = BERTH_INSTALLATION_ID.isascii() and BERTH_INSTALLATION_ID.replace("-", "").isalnum()
if not _installation_id_ok or len(BERTH_INSTALLATION_ID) > 63:
    raise ImproperlyConfigured("BERTH_INSTALLATION_ID must be 1-63 letters, digits or dashes")

BERTH_APPS_DOMAIN = env("BERTH_APPS_DOMAIN", "localhost")
BERTH_HTTP_PORT = env_int("BERTH_HTTP_PORT", 80, minimum=1, maximum=65535)
BERTH_WEB_PORT = env_int("BERTH_WEB_PORT", 8000, minimum=1, maximum=65535)
# HTTPS (issue 13, berth.routing): the router's TLS port (0 = no HTTPS frontend), and the hostname the router sends to
# Berth's own web process at 127.0.0.1:BERTH_WEB_PORT over HTTP and HTTPS ("" = the dashboard is not routed)
BERTH_HTTPS_PORT = env_int("BERTH_HTTPS_PORT", 443, minimum=0, maximum=65535)
BERTH_DASHBOARD_HOST = env("BERTH_DASHBOARD_HOST", "").strip().lower().rstrip(".")
# Certificates (issue 13, berth.certs): the ACME directory ("" = ACME off), the account's contact email, a PEM file to
# trust for the directory's TLS ("" = the system's store; e.g. pebble's), and how many days before expiry a renewal
# that keeps failing raises the alarm (event, dashboard banner)
BERTH_ACME_DIRECTORY = env("BERTH_ACME_DIRECTORY", "").strip()
BERTH_ACME_EMAIL = env("BERTH_ACME_EMAIL", "").strip()
BERTH_ACME_CA_BUNDLE = env("BERTH_ACME_CA_BUNDLE", "").strip()
BERTH_CERT_RENEW_DAYS_ALARM = env_int("BERTH_CERT_RENEW_DAYS_ALARM", 14, minimum=1, maximum=365)
BERTH_PUBLIC_URL = env("BERTH_PUBLIC_URL", f"http://127.0.0.1:{BERTH_WEB_PORT}")
BERTH_ADMIN_USER = env("BERTH_ADMIN_USER", "admin")
BERTH_ADMIN_PASSWORD = env("BERTH_ADMIN_PASSWORD")
BERTH_STACK_IMAGE = env("BERTH_STACK_IMAGE")  # a pulled image instead of the locally built stack
BERTH_BUILD_TIMEOUT = env_int("BERTH_BUILD_TIMEOUT", 15 * 60, minimum=10)
# A build's steps run in containers with these limits (berth.builds.builder.docker_build): memory (no swap on top),
# and the first N of the engine's CPUs for all builds together, so that builds never take the CPUs apps serve on.
BERTH_BUILD_MEMORY_MB = env_int("BERTH_BUILD_MEMORY_MB", 2048, minimum=64, maximum=1024 * 1024)
BERTH_BUILD_CPUS = env_int("BERTH_BUILD_CPUS", max(1, (os.cpu_count() or 1) - 1), minimum=1, maximum=4096)
BERTH_BOOT_TIMEOUT = env_int(
    "BERTH_BOOT_TIMEOUT", 60, minimum=5, maximum=3600
)  # new web tasks must answer by then
BERTH_DEPLOY_TIMEOUT = env_int("BERTH_DEPLOY_TIMEOUT", 10 * 60, minimum=10)
BERTH_ROUTER_DIR = Path(env("BERTH_ROUTER_DIR", str(BERTH_HOME / "router")))
BERTH_ROUTER_ADMIN_SOCKET = Path(env("BERTH_ROUTER_ADMIN_SOCKET", str(BERTH_ROUTER_DIR / "admin.sock")))
# CA bundle given to builds (only while installing dependencies) so pip/npm work behind a TLS-intercepting proxy
BERTH_BUILD_CA_BUNDLE = env("BERTH_BUILD_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
BERTH_BUILDPACKS_DIR = Path(env("BERTH_BUILDPACKS_DIR", str(REPO_DIR / "buildpacks")))
# each app's dependency cache (pip/uv/poetry downloads) is dropped whole when a build leaves it larger than this
BERTH_BUILD_CACHE_MB = env_int("BERTH_BUILD_CACHE_MB", 1024, minimum=0, maximum=1024 * 1024)

# The private image registry (Debian's docker-registry, `manage.py registry_run`): every build is pushed there and
# services name images by digest, so every node runs the same bytes. Empty: images stay on this node (one node only).
BERTH_REGISTRY = env_registry("BERTH_REGISTRY")
BERTH_REGISTRY_LISTEN = env("BERTH_REGISTRY_LISTEN", BERTH_REGISTRY or "127.0.0.1:5000")
BERTH_REGISTRY_DIR = Path(env("BERTH_REGISTRY_DIR", str(BERTH_HOME / "registry")))  # config, htpasswd, data
# add-on backups (berth.addons.store): a folder (default BERTH_HOME/backups) or s3://bucket/prefix
BERTH_BACKUP_URL = env("BERTH_BACKUP_URL", "")
# GET /metrics' bearer token; empty: one generated into BERTH_HOME/metrics-token (`manage.py metrics_token`)
BERTH_METRICS_TOKEN = env("BERTH_METRICS_TOKEN", "")
BERTH_BACKUP_S3_ENDPOINT = env("BERTH_BACKUP_S3_ENDPOINT", "")  # e.g. https://minio.example:9000
# the control plane's own scheduled backup (berth.controlplane): hourly, daily, weekly or seconds ("off": none),
# the newest N verified archives kept, in BERTH_HOME/control-backups (or BERTH_BACKUP_URL's S3 store)
BERTH_CONTROL_BACKUP_SCHEDULE = env("BERTH_CONTROL_BACKUP_SCHEDULE", "daily")
BERTH_CONTROL_BACKUP_KEEP = env_int("BERTH_CONTROL_BACKUP_KEEP", 7, minimum=1, maximum=1000)
BERTH_REGISTRY_USER = env("BERTH_REGISTRY_USER", "berth")
BERTH_REGISTRY_PASSWORD = env("BERTH_REGISTRY_PASSWORD") or (
    secret_from_home(BERTH_REGISTRY_DIR, "password", lambda: secrets.token_urlsafe(24))
    if BERTH_REGISTRY
    else ""
)
# the Docker socket on every node, mounted into the job that removes old images there (a Swarm template may
# name a per-node path, e.g. /srv/{{.Node.Hostname}}/docker.sock)
BERTH_NODE_DOCKER_SOCKET = env("BERTH_NODE_DOCKER_SOCKET", "/var/run/docker.sock")
# images of the last N releases of each app are kept (plus the live one); older ones are deleted everywhere
BERTH_IMAGE_RETENTION_RELEASES = env_int("BERTH_IMAGE_RETENTION_RELEASES", 5, minimum=1, maximum=1000)
# Preview apps (berth.previews): how many one app may have, and after how many days without a push one is destroyed
BERTH_PREVIEWS_MAX = env_int("BERTH_PREVIEWS_MAX", 5, minimum=0, maximum=100)
BERTH_PREVIEWS_IDLE_DAYS = env_int("BERTH_PREVIEWS_IDLE_DAYS", 7, minimum=1, maximum=365)

# Tenants are hostile (see tests/security): limits every app container gets unless its formation says otherwise,
# and the quotas a team gets unless a platform admin set its own (Team.max_*; 0 means no limit).
BERTH_PROCESS_MEMORY_MB = env_int("BERTH_PROCESS_MEMORY_MB", 512, minimum=32, maximum=65536)
BERTH_PROCESS_PIDS_LIMIT = env_int("BERTH_PROCESS_PIDS_LIMIT", 512, minimum=16, maximum=1_000_000)
BERTH_TEAM_MAX_APPS = env_int("BERTH_TEAM_MAX_APPS", 50, minimum=0)
BERTH_TEAM_MAX_REPLICAS = env_int("BERTH_TEAM_MAX_REPLICAS", 100, minimum=0)
BERTH_TEAM_MAX_MEMORY_MB = env_int("BERTH_TEAM_MAX_MEMORY_MB", 0, minimum=0)
# One app cannot exhaust a shared process (berth.core.lines, observe, builds): a log or build line longer than this
# is stored as several entries (each but the last marked `more`), never cut; a replay to one connection (logs
# `tail`, a build's output from its start) holds at most this many lines and bytes, the newest, with a note; and
# streams that must read a blocking source (a one-off run's output) get threads of their own, never the pool
# git pushes and the ORM need.
BERTH_LOG_LINE_MAX_BYTES = env_int("BERTH_LOG_LINE_MAX_BYTES", 8192, minimum=256, maximum=1024 * 1024)
BERTH_LOG_REPLAY_MAX_LINES = env_int("BERTH_LOG_REPLAY_MAX_LINES", 10_000, minimum=1, maximum=1_000_000)
BERTH_LOG_REPLAY_MAX_BYTES = env_int("BERTH_LOG_REPLAY_MAX_BYTES", 4 * 1024 * 1024, minimum=1024)
BERTH_STREAM_THREADS = env_int("BERTH_STREAM_THREADS", 32, minimum=1, maximum=1024)
# Brute-force guards (berth.accounts.throttles), counted in the Redis cache below: failed sign-ins per account and
# per client address within a window, and API tokens a signed-in user may create per hour (per account and address).
BERTH_LOGIN_FAILURES = env_int("BERTH_LOGIN_FAILURES", 5, minimum=1, maximum=10_000)
BERTH_LOGIN_FAILURES_PER_ADDRESS = env_int("BERTH_LOGIN_FAILURES_PER_ADDRESS", 20, minimum=1, maximum=100_000)
BERTH_LOGIN_WINDOW = env_int("BERTH_LOGIN_WINDOW", 15 * 60, minimum=1, maximum=7 * 86400)
BERTH_TOKEN_CREATIONS_PER_HOUR = env_int("BERTH_TOKEN_CREATIONS_PER_HOUR", 20, minimum=1, maximum=100_000)

# What a client may send (read in berth.core.limits, which the gunicorn worker reads before Django starts):
# bodies are capped at the ASGI door (berth.core.bodylimit) before Django stores any of them.
BERTH_MAX_REQUEST_BYTES = limits.MAX_REQUEST_BYTES
BERTH_GIT_MAX_FETCH_BYTES = limits.GIT_MAX_FETCH_BYTES
BERTH_MAX_WS_MESSAGE_BYTES = limits.MAX_WS_MESSAGE_BYTES
BERTH_MAX_HEADER_BYTES = limits.MAX_HEADER_BYTES

DOCKER_HOST = env("DOCKER_HOST", "unix:///var/run/docker.sock")
# the two swappable parts, each one seam with one real implementation (see berth.runtime / berth.routing)
BERTH_SCHEDULER = env("BERTH_SCHEDULER", "swarm")
BERTH_ROUTER = env("BERTH_ROUTER", "haproxy")
REDIS_URL = env_url("REDIS_URL", "redis://127.0.0.1:6379/0", schemes=("redis", "rediss", "unix"))
# One cache for every web process, kept across their restarts: the brute-force counts must not reset with a worker.
# Shares Redis with Celery, so never cache.clear() (FLUSHDB); every key starts with "berth:".
CACHES = {
    "default": {
        "BACKEND": "berth.config.cache.SharedRedisCache",  # Django's, one connection pool a process
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "berth",
    }
}
DATABASES = {
    "default": dj_database_url.parse(
        env_url(
            "DATABASE_URL",
            f"sqlite:///{BERTH_HOME / 'berth.sqlite3'}",
            schemes=("sqlite", "postgres", "postgresql"),
        ),
        conn_max_age=60,  # a new PostgreSQL connection per request doubled API latency (bench/api_apps_list.py)
        conn_health_checks=True,
    )
}
# The web process (berth/config/asgi.py sets BERTH_DATABASE_POOL) takes PostgreSQL connections from a pool. Under
# ASGI each request runs its sync code in a thread lent to it alone (one a finished request left, or a new one:
# berth/config/middleware.py), and a connection belongs to its thread: a kept (CONN_MAX_AGE) connection was never
# used again when every request had a new thread, so each request opened one (measured: a tenth of the API's time
# at 8 clients, and an idle connection left behind by each thread); the request's connection goes back to the pool
# when its response is closed. A long request (a push, a followed build
# output) holds its connection to the end: the pool's ceiling is generous. A request waits up to `timeout` for a
# connection — the pool's all taken, or PostgreSQL unreachable: then it fails after those seconds, not at once (the
# pool keeps trying in the background). Other processes keep one connection per thread (a Celery worker's forks
# cannot share a pool).
if env_bool("BERTH_DATABASE_POOL", False) and DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # CONN_HEALTH_CHECKS stays on: the pool checks a connection before lending it (one a PostgreSQL restart broke
    # is replaced, not served)
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": env_int("BERTH_DATABASE_POOL_SIZE", 40, minimum=1),
        "timeout": 5,
        # psycopg_pool retries a failed connection with a doubling delay up to this: past it, the next request
        # starts afresh; the default (300 s) left the web process on its database's 16-32 s backoff for as long
        # after the database was back (tests/e2e/test_faults_database.py)
        "reconnect_timeout": 3,
        # connections a burst opened (6 in a worker after four pushes at once) close after a minute unused: each
        # is memory here and a PostgreSQL backend process there, on a small server (issue 17's idle footprint)
        "max_idle": 60,
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL and a busy timeout let web, worker and watcher share one file without "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",  # every write transaction waits its turn instead of failing mid-way
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["TEST"] = {"NAME": str(BERTH_HOME / "test.sqlite3")}
# On every start-up, tightened if an older install left them looser: BERTH_HOME and its repositories' folder 0700,
# the generated secrets and the SQLite database 0600.
_sqlite_file = DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3" and DATABASES["default"]["NAME"]
home_make_private(
    BERTH_HOME, sqlite_database=Path(_sqlite_file) if _sqlite_file not in (False, ":memory:") else None
)

ALLOWED_HOSTS = [h for h in (env("BERTH_ALLOWED_HOSTS", "*") or "*").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in (env("BERTH_CSRF_TRUSTED_ORIGINS", "") or "").split(",") if o]
# The dashboard and API at BERTH_DASHBOARD_HOST (issue 13, edges): the router ends TLS there and says the scheme in
# X-Forwarded-Proto, which can be trusted because the web process then listens on 127.0.0.1 only (deploy/up.sh).
# Everything of "Served over HTTPS" below applies; Django's redirect of plain HTTP goes to the router's HTTPS port.
if BERTH_DASHBOARD_HOST:
    if not BERTH_HTTPS_PORT:
        raise ImproperlyConfigured(
            "BERTH_DASHBOARD_HOST needs the router's HTTPS port, but BERTH_HTTPS_PORT is 0: sign-ins and tokens "
            "would travel in clear"
        )
    BERTH_DASHBOARD_NETLOC = BERTH_DASHBOARD_HOST + (
        "" if BERTH_HTTPS_PORT == 443 else f":{BERTH_HTTPS_PORT}"
    )
    CSRF_TRUSTED_ORIGINS.append(f"https://{BERTH_DASHBOARD_NETLOC}")
    if "*" not in ALLOWED_HOSTS:
        ALLOWED_HOSTS.append(BERTH_DASHBOARD_HOST)
    SECURE_SSL_HOST = BERTH_DASHBOARD_NETLOC
# Served over HTTPS (BERTH_PUBLIC_URL https://…, the TLS terminator in front of the web process): cookies never
# travel in clear, plain HTTP is redirected, and browsers are told to stay on HTTPS (`manage.py check --deploy`).
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# a dashboard page reads its session from Redis (the cache above) instead of a query each time; written through to
# the database, so a restarted Redis costs a query, not a sign-in
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
if BERTH_PUBLIC_URL.startswith("https://") or BERTH_DASHBOARD_HOST:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("BERTH_SSL_REDIRECT", True)
    # /healthz answers probes on the plain port of the machine itself
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SECURE_HSTS_SECONDS = env_int("BERTH_HSTS_SECONDS", 30 * 24 * 3600, minimum=0)
    # the header only asks; a domain enters browsers' preload lists when its owner submits it
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("BERTH_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("BERTH_HSTS_PRELOAD", True)
    if BERTH_DASHBOARD_HOST or env_bool("BERTH_BEHIND_TLS_PROXY", True):
        # the terminator in front says the original scheme; only meaningful when nothing else reaches the port
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served by Berth itself: the API docs work air-gapped
    "channels",
    "berth.core",
    "berth.accounts",
    "berth.apps",
    "berth.audit",
    "berth.releases",
    "berth.runtime",
    "berth.deploys",
    "berth.gitserver",
    "berth.observe",
    "berth.dashboard",
    "berth.builds",
    "berth.routing",
    "berth.discovery",
    "berth.nodes",
    "berth.certs",
    "berth.jobs",
    "berth.hooks",
    "berth.drains",
    "berth.pipelines",
    "berth.previews",
    "berth.addons",
    "berth.controlplane",
    "berth.operations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # last: the chain above runs sync in one thread (berth/config/middleware.py says why)
    "berth.config.middleware.SyncRequestChain",
]

ROOT_URLCONF = "berth.config.urls"
ASGI_APPLICATION = "berth.config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [REPO_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [REPO_DIR / "static"]
STATIC_ROOT = BERTH_HOME / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns on every start without it
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# git pushes stream through the git view; Django must not cap their bodies.
DATA_UPLOAD_MAX_MEMORY_SIZE = None

LOGIN_URL = "/login/"

# E-mail (invitation links, password reset links): off unless BERTH_SMTP_URL is set, e.g.
# smtp+starttls://user:password@mail.example.org:587 (berth.core.env.env_smtp). Off, nothing is sent: admins copy an
# invitation link from the team page and make reset links with `manage.py password_reset_link`.
_smtp = env_smtp("BERTH_SMTP_URL")
BERTH_EMAIL_ENABLED = bool(_smtp)
EMAIL_BACKEND = _smtp.get("EMAIL_BACKEND", "django.core.mail.backends.dummy.EmailBackend")
EMAIL_HOST = _smtp.get("EMAIL_HOST", "localhost")
EMAIL_PORT = _smtp.get("EMAIL_PORT", 25)
EMAIL_HOST_USER = _smtp.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = _smtp.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = _smtp.get("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = _smtp.get("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = 10  # a request that sends a mail waits at most this long for the mail server
DEFAULT_FROM_EMAIL = env("BERTH_EMAIL_FROM", "berth@localhost")

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Bearer first: its authenticate_header makes unauthenticated requests 401, not 403.
        "berth.api.auth.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "EXCEPTION_HANDLER": "berth.api.errors.exception_handler",
    # Berth is reached directly, without a proxy in front: a client-sent X-Forwarded-For is never the address
    "NUM_PROXIES": 0,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Berth API",
    "DESCRIPTION": "Self-hosted Heroku on Docker Swarm.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # component names are part of the published schema: keep them stable as enums are added
    "ENUM_NAME_OVERRIDES": {
        "ReleaseStatusEnum": "berth.releases.models.ReleaseStatus",
        "BuildStatusEnum": "berth.builds.models.BuildStatus",
    },
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL]},
    }
}

# Celery: builds and deploys are long, so the broker must not redeliver them while they still run
# (visibility timeout above the longest task), and a worker takes one at a time (prefetch 1, acks_late).
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": max(BERTH_BUILD_TIMEOUT, BERTH_DEPLOY_TIMEOUT) + 600}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = (
    None  # a long Redis outage must not end the worker (default: 100 tries)
)
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# `--autoscale max,min` grows the pool with work and shrinks it back when the work is done (see the class)
CELERY_WORKER_AUTOSCALER = "berth.config.autoscaler:PoolAutoscaler"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = False  # a killed build is failed by the sweep, not replayed blindly
CELERY_TASK_TIME_LIMIT = 60 * 60
CELERY_TASK_SOFT_TIME_LIMIT = 55 * 60
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {"berth.builds.*": {"queue": "builds"}, "berth.deploys.*": {"queue": "deploys"}}
CELERY_BEAT_SCHEDULE = {
    "sweep-stuck-work": {"task": "berth.core.tasks.sweep_stuck_work", "schedule": 30.0},
    # old releases' images off the registry and every node (see berth.nodes.images)
    "images-gc": {"task": "berth.nodes.tasks.images_gc", "schedule": 3600.0},
    # certificates: issue pending ones, renew due ones, put back what the router lacks (see berth.certs.services)
    "certs-sweep": {"task": "berth.certs.sweep", "schedule": 60.0},
    # scheduled jobs: the clock that starts due runs (see berth.jobs.services.cron_tick)
    "cron-tick": {"task": "berth.jobs.tick", "schedule": 15.0},
    # outbound webhooks: retries a restarted worker lost (see berth.hooks.tasks)
    "webhooks-retry-late": {"task": "berth.hooks.retry_late", "schedule": 30.0},
    # add-on backups: each add-on's daily backup at its time, verified by a restore, old ones pruned
    "addon-backups-tick": {"task": "berth.addons.backups_tick", "schedule": 60.0},
    # the control plane's own backup when BERTH_CONTROL_BACKUP_SCHEDULE says one is due, verified by a restore
    "control-backup-tick": {"task": "berth.controlplane.backup_tick", "schedule": 300.0},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(BERTH_HOME / "celerybeat-schedule")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("BERTH_LOG_LEVEL", "INFO")},
    # httpx logs every request at INFO: a line per registry ping, webhook or drain POST is noise in doctor and logs
    "loggers": {"django.db.backends": {"level": "WARNING"}, "httpx": {"level": "WARNING"}},
}
