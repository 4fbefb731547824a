"""Runstore settings: every value comes from an environment variable.

The README lists each variable with its default. With no variables set,
Runstore runs embedded: SQLite and blobs under ``var/``, and a Celery broker
that needs no server.
"""

import ipaddress
import logging
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from .env import env_bool, env_choice, env_float, env_int, env_limit, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("RUNSTORE_VAR_DIR", str(BASE_DIR / "var"))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    key = env_str("SECRET_KEY")
    if key:
        return key
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "django_htmx",
    "template_partials",
    "csp",
    "axes",
    "accounts",
    "projects",
    "runs",
    "runs.mlflow",
    "runs.webhooks",
    "runs.registry",
    "runs.artifacts",
]

MIDDLEWARE = [
    "tracker.context.RequestContextMiddleware",
    # inside the request context (its id), outside everything else: sees the final status and time
    "tracker.logs.RequestLogMiddleware",
    "tracker.metrics.ServerErrorMiddleware",  # counts 5xx for /metrics
    "tracker.db_router.ReplicaPinMiddleware",  # reads from the primary right after a client's writes
    "tracker.params.RejectNulMiddleware",  # a NUL in the path is a 400
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "tracker.csp.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # RateLimit-* headers on API responses (the request-rate throttle decides them)
    "projects.throttling.RateLimitHeadersMiddleware",
    # last: turns a locked-out login into the lockout page (status 429)
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "tracker.urls"
WSGI_APPLICATION = "tracker.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

# --- database -------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'runstore.sqlite3'}")
_db = dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0))
if _db["ENGINE"] == "django.db.backends.sqlite3":
    _db["OPTIONS"] = {
        # WAL lets the web server read while the worker writes; IMMEDIATE
        # transactions take the write lock up front so writers queue on the
        # busy timeout instead of failing on lock upgrade.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    _db["CONN_MAX_AGE"] = 0
    _db["TEST"] = {"NAME": env_str("RUNSTORE_TEST_SQLITE_NAME", "") or None}
else:
    # A distinct test database name lets several suites share one server.
    _db["TEST"] = {"NAME": env_str("RUNSTORE_TEST_DB_NAME", "") or None}
    # A kept connection is checked before a request reuses it: after a database restart the first
    # request opens a new one instead of failing on the dead one.
    _db["CONN_HEALTH_CHECKS"] = True
DATABASES = {"default": _db}
# A streaming replica of the primary: read-only work goes there (tracker/db_router.py).
DATABASE_REPLICA_URL = env_str("DATABASE_REPLICA_URL")
if DATABASE_REPLICA_URL:
    _replica = dj_database_url.parse(DATABASE_REPLICA_URL, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0))
    _replica["TEST"] = {"MIRROR": "default"}  # a test run reads its own test database through the alias
    DATABASES["replica"] = _replica
DATABASE_ROUTERS = ["tracker.db_router.ReplicaRouter"]
# After a write a client reads from the primary for this long (replication lag stays below it).
RUNSTORE_REPLICA_PIN_SECONDS = env_int("RUNSTORE_REPLICA_PIN_SECONDS", 10, minimum=1)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# auto: use TimescaleDB when the server has it; required: fail without it; off: plain tables.
RUNSTORE_TIMESCALEDB = env_choice("RUNSTORE_TIMESCALEDB", "auto", ("auto", "required", "off"))

# Every run query (REST, UI table, saved views, suggestions, client, CLI) finishes or fails within this budget
# (SQLite: a progress handler; PostgreSQL: SET LOCAL statement_timeout); 0 disables it.
RUNSTORE_QUERY_TIMEOUT_MS = env_int("RUNSTORE_QUERY_TIMEOUT_MS", 5000, minimum=0)
# The query tables are analyzed (and vacuumed, for their visibility map) by the maintenance queue once
# this many rows and this percentage of a table changed since the last time (runs/maintenance.py), checked
# every RUNSTORE_MAINTENANCE_INTERVAL seconds (Celery beat, tracker/celery.py) and RUNSTORE_MAINTENANCE_DELAY
# seconds after a write that added runs or fields (0: only every interval).
RUNSTORE_MAINTENANCE_INTERVAL = env_int("RUNSTORE_MAINTENANCE_INTERVAL", 10, minimum=1)
RUNSTORE_MAINTENANCE_MIN_ROWS = env_int("RUNSTORE_MAINTENANCE_MIN_ROWS", 1000, minimum=1)
RUNSTORE_MAINTENANCE_PERCENT = env_int("RUNSTORE_MAINTENANCE_PERCENT", 2, minimum=0)
RUNSTORE_MAINTENANCE_DELAY = env_float("RUNSTORE_MAINTENANCE_DELAY", 2.0, minimum=0)

# --- auth -----------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    # first: refuses a password login while its account or address is locked out
    "accounts.authentication.LoginThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
ANONYMOUS_USER_NAME = None  # guardian: no anonymous user object
GUARDIAN_RAISE_403 = False
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "projects:workspace_list"
LOGOUT_REDIRECT_URL = "accounts:login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

# Failed UI logins (django-axes): after this many failures for one account, or from one
# address, further logins for it are refused (even with the right password) for the cool-off.
AXES_FAILURE_LIMIT = env_int("RUNSTORE_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("RUNSTORE_LOGIN_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # each on its own: per account and per address
AXES_CLIENT_IP_CALLABLE = "tracker.context.client_address"  # honours RUNSTORE_TRUSTED_PROXIES
AXES_LOCKOUT_CALLABLE = "accounts.views.locked_out"  # a page with status 429 and Retry-After
AXES_RESET_ON_SUCCESS = False  # a success would also clear the address's count, which an attacker controls
AXES_DISABLE_ACCESS_LOG = True  # successful logins go to the audit log, not a second table
AXES_VERBOSE = False

# Addresses (or networks, CIDR) of reverse proxies whose X-Forwarded-For is believed; the
# client's address is then the nearest one of that header that is not such a proxy.
RUNSTORE_TRUSTED_PROXIES = env_list("RUNSTORE_TRUSTED_PROXIES", [])
for _proxy in RUNSTORE_TRUSTED_PROXIES:
    try:
        ipaddress.ip_network(_proxy, strict=False)
    except ValueError:
        raise ImproperlyConfigured(f"RUNSTORE_TRUSTED_PROXIES: {_proxy!r} is not an IP address or network") from None

# --- mail (password reset) --------------------------------------------------
EMAIL_BACKEND = env_str("RUNSTORE_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env_str("RUNSTORE_EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("RUNSTORE_EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("RUNSTORE_EMAIL_USER", "")
EMAIL_HOST_PASSWORD = env_str("RUNSTORE_EMAIL_PASSWORD", "")
EMAIL_USE_TLS = env_bool("RUNSTORE_EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("RUNSTORE_EMAIL_FROM", "runstore@localhost")

# --- security headers and cookies -------------------------------------------
# Off by default so `make run` works over plain HTTP; the README's "Production
# settings" lists the values `manage.py check --deploy` passes with.
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("RUNSTORE_SECURE_COOKIES", False)
SESSION_COOKIE_HTTPONLY = True
SECURE_HSTS_SECONDS = env_int("RUNSTORE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("RUNSTORE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("RUNSTORE_HSTS_PRELOAD", False)
SECURE_SSL_REDIRECT = env_bool("RUNSTORE_SSL_REDIRECT", False)
# Probes talk plain HTTP to the container, behind the TLS-terminating proxy.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]  # /metrics: scraped inside the network
if env_bool("RUNSTORE_SECURE_PROXY_SSL_HEADER", False):
    # Only behind a proxy that sets (and strips from clients) X-Forwarded-Proto.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# --- i18n / static ----------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
# Serve straight from the source folders too, so no collectstatic step is needed to run.
WHITENOISE_USE_FINDERS = True

# --- blob storage -----------------------------------------------------------
RUNSTORE_STORAGE = env_choice("RUNSTORE_STORAGE", "local", ("local", "s3"))


def _transfer_config():
    from boto3.s3.transfer import TransferConfig

    threshold = env_int("RUNSTORE_MULTIPART_THRESHOLD", 100 * 1024 * 1024, minimum=5 * 1024 * 1024)
    chunk = env_int("RUNSTORE_MULTIPART_CHUNK", 16 * 1024 * 1024, minimum=5 * 1024 * 1024)
    return TransferConfig(multipart_threshold=threshold, multipart_chunksize=chunk, max_concurrency=4)


_blob_storage: dict[str, Any]
if RUNSTORE_STORAGE == "s3":
    _blob_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env_str("RUNSTORE_S3_BUCKET", "runstore"),
            "endpoint_url": env_str("RUNSTORE_S3_ENDPOINT_URL") or None,
            "access_key": env_str("RUNSTORE_S3_ACCESS_KEY") or None,
            "secret_key": env_str("RUNSTORE_S3_SECRET_KEY") or None,
            "region_name": env_str("RUNSTORE_S3_REGION", "us-east-1"),
            "addressing_style": env_str("RUNSTORE_S3_ADDRESSING_STYLE", "path"),
            "signature_version": "s3v4",
            "file_overwrite": True,
            "default_acl": None,
            "querystring_expire": env_int("RUNSTORE_S3_URL_EXPIRE", 300, minimum=1),
            # Files above the threshold go up in parts, a few at a time: memory stays flat.
            "transfer_config": _transfer_config(),
        },
    }
else:
    _blob_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": env_str("RUNSTORE_BLOB_DIR", str(VAR_DIR / "blobs"))},
    }
STORAGES = {
    "default": _blob_storage,
    "blobs": _blob_storage,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
FILE_UPLOAD_HANDLERS = ["runs.uploads.HashingUploadHandler"]
FILE_UPLOAD_MAX_MEMORY_SIZE = 0  # every upload goes to a temporary file, hashed as it streams
FILE_UPLOAD_TEMP_DIR = env_str("RUNSTORE_UPLOAD_TEMP_DIR") or None
# The largest file one upload may hold (multipart POST or direct upload to S3); above it: 413.
RUNSTORE_MAX_UPLOAD_BYTES = env_int("RUNSTORE_MAX_UPLOAD_BYTES", 5 * 1024**3, minimum=1)

# --- Quotas (projects/quotas.py, projects/throttling.py) ---------------------
# Installation-wide defaults; a workspace's own quota (admin) overrides each one.
# Request rates are token buckets per API token (and per workspace when set).
RUNSTORE_QUOTA_REQUESTS_PER_SECOND = env_float("RUNSTORE_QUOTA_REQUESTS_PER_SECOND", 100.0, minimum=0.001)
RUNSTORE_QUOTA_BURST = env_int("RUNSTORE_QUOTA_BURST", 200, minimum=1)
RUNSTORE_QUOTA_WORKSPACE_REQUESTS_PER_SECOND = env_limit("RUNSTORE_QUOTA_WORKSPACE_REQUESTS_PER_SECOND")
RUNSTORE_QUOTA_STORAGE_BYTES = env_limit("RUNSTORE_QUOTA_STORAGE_BYTES")
RUNSTORE_QUOTA_RUNS_PER_PROJECT = env_limit("RUNSTORE_QUOTA_RUNS_PER_PROJECT")
RUNSTORE_QUOTA_PROJECTS = env_limit("RUNSTORE_QUOTA_PROJECTS")
RUNSTORE_QUOTA_UPLOAD_BYTES = env_limit("RUNSTORE_QUOTA_UPLOAD_BYTES")
# Where the request-rate buckets live: this Redis; unset: the Celery broker when it is Redis, else the database.
RUNSTORE_RATE_LIMIT_REDIS_URL = env_str("RUNSTORE_RATE_LIMIT_REDIS_URL")
RUNSTORE_RATE_LIMIT_KEY_PREFIX = env_str("RUNSTORE_RATE_LIMIT_KEY_PREFIX", "runstore:ratelimit:")
# Audit entries older than this many days are deleted daily (0: kept for ever).
RUNSTORE_AUDIT_RETENTION_DAYS = env_int("RUNSTORE_AUDIT_RETENTION_DAYS", 365, minimum=0)

# --- Content-Security-Policy (django-csp) ------------------------------------
# Our pages load scripts and styles from our own origin only: no inline script,
# no style attributes, no eval. Files that S3 serves straight to the browser
# (presigned URLs) may also be images, video or framed previews.
_s3_origin = []
if RUNSTORE_STORAGE == "s3":
    from urllib.parse import urlsplit

    _endpoint = urlsplit(_blob_storage["OPTIONS"]["endpoint_url"] or "https://s3.amazonaws.com")
    _s3_origin = [f"{_endpoint.scheme}://{_endpoint.netloc}"]
    if not _blob_storage["OPTIONS"]["endpoint_url"]:
        _s3_origin.append("https://*.amazonaws.com")  # regional and virtual-hosted bucket names
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:", "blob:", *_s3_origin],
        "media-src": ["'self'", "blob:", *_s3_origin],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "frame-src": ["'self'", *_s3_origin],
        # Like X-Frame-Options DENY; the file preview views send their own policy.
        "frame-ancestors": ["'none'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
    },
}

# --- ingestion limits (documented in the README) ----------------------------
RUNSTORE_MAX_BATCH_BYTES = env_int("RUNSTORE_MAX_BATCH_BYTES", 32 * 1024 * 1024, minimum=1024)
RUNSTORE_MAX_BATCH_OPS = env_int("RUNSTORE_MAX_BATCH_OPS", 10_000, minimum=1)
RUNSTORE_MAX_ARTIFACT_FILES = env_int("RUNSTORE_MAX_ARTIFACT_FILES", 100_000, minimum=1)
RUNSTORE_MAX_BATCH_POINTS = env_int("RUNSTORE_MAX_BATCH_POINTS", 200_000, minimum=1)
RUNSTORE_MAX_STRING_BYTES = env_int("RUNSTORE_MAX_STRING_BYTES", 64 * 1024, minimum=16)
RUNSTORE_MAX_FIELDS_PER_RUN = env_int("RUNSTORE_MAX_FIELDS_PER_RUN", 10_000, minimum=1)
DATA_UPLOAD_MAX_MEMORY_SIZE = RUNSTORE_MAX_BATCH_BYTES
DATA_UPLOAD_MAX_NUMBER_FIELDS = 10_000

# --- Celery -----------------------------------------------------------------
_celery_dir = VAR_DIR / "celery"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
CELERY_RESULT_BACKEND = env_str(
    "CELERY_RESULT_BACKEND",
    f"file://{_celery_dir / 'results'}" if CELERY_BROKER_URL.startswith("filesystem") else CELERY_BROKER_URL,
)
if CELERY_BROKER_URL.startswith("filesystem"):
    for _sub in ("queue", "processed", "results"):
        (_celery_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_celery_dir / "queue"),
        "data_folder_out": str(_celery_dir / "queue"),
        "processed_folder": str(_celery_dir / "processed"),
        "control_folder": str(_celery_dir / "control"),
        "store_processed": False,
    }
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# Tasks are idempotent: acknowledge after the work, so a killed worker's task runs again.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 600, minimum=1)
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 30 if CELERY_TASK_TIME_LIMIT > 60 else None
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = 24 * 3600
CELERY_TASK_IGNORE_RESULT = True
# A web request enqueuing work must not hang on a broker that is down: the
# periodic sweeps catch up on whatever could not be enqueued.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
CELERY_BROKER_TRANSPORT_OPTIONS = {
    **globals().get("CELERY_BROKER_TRANSPORT_OPTIONS", {}),
    # Redis: a message not acknowledged within this time is delivered again (acks_late).
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=1),
    # Redis: the lock a worker takes while it puts overdue messages back. A worker killed while
    # holding it would block every redelivery for kombu's default 300 s, longer than a short
    # visibility timeout: it never outlives the visibility timeout.
    "unacked_mutex_expire": min(300, env_int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=1)),
}
CELERY_BEAT_SCHEDULE_FILENAME = str(_celery_dir / "beat-schedule")
# Beat schedules only while it holds a lock (tracker/beat.py): any number of beats, one schedules.
CELERY_BEAT_SCHEDULER = "tracker.beat:LockedScheduler"
RUNSTORE_BEAT_LOCK_URL = env_str(
    "RUNSTORE_BEAT_LOCK_URL", CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else ""
)
RUNSTORE_BEAT_LOCK_KEY = env_str("RUNSTORE_BEAT_LOCK_KEY", "runstore:beat-lock")
RUNSTORE_BEAT_LOCK_TTL = env_int("RUNSTORE_BEAT_LOCK_TTL", 30, minimum=3)
# Where API tokens' replica pins live (tracker/db_router.py): this Redis; unset: the rate buckets' Redis, else the cache.
RUNSTORE_REPLICA_PIN_REDIS_URL = env_str(
    "RUNSTORE_REPLICA_PIN_REDIS_URL",
    RUNSTORE_RATE_LIMIT_REDIS_URL
    or (CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else ""),
)

# --- webhooks (runs.webhooks) ---------------------------------------------------
# Outgoing webhook requests never reach loopback, private, link-local, multicast or reserved
# addresses unless a network is listed here (CIDRs, comma-separated; e.g. 10.20.0.0/16).
RUNSTORE_WEBHOOK_ALLOWED_NETWORKS = env_list("RUNSTORE_WEBHOOK_ALLOWED_NETWORKS", [])
for _network in RUNSTORE_WEBHOOK_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(f"RUNSTORE_WEBHOOK_ALLOWED_NETWORKS: {_network!r} is not a CIDR network") from None
RUNSTORE_WEBHOOK_TIMEOUT = env_float("RUNSTORE_WEBHOOK_TIMEOUT", 10.0, minimum=0.1)  # seconds per request
RUNSTORE_WEBHOOK_MAX_ATTEMPTS = env_int("RUNSTORE_WEBHOOK_MAX_ATTEMPTS", 6, minimum=1)
RUNSTORE_WEBHOOK_RETRY_DELAY = env_float("RUNSTORE_WEBHOOK_RETRY_DELAY", 10.0, minimum=0)  # first retry; doubles

# --- background processing and storage clean-up --------------------------------
RUNSTORE_ROLLUP_CHUNK_POINTS = env_int("RUNSTORE_ROLLUP_CHUNK_POINTS", 1_000_000, minimum=100)  # per transaction
# Seconds a roll-up task waits after the batch that queued it: the batches of that time share one task.
RUNSTORE_ROLLUP_DELAY = env_float("RUNSTORE_ROLLUP_DELAY", 2.0, minimum=0)
# Points per packed series block (runs.blocks, docs/series-blocks.md); a series keeps fewer as rows.
RUNSTORE_SERIES_BLOCK_POINTS = env_int("RUNSTORE_SERIES_BLOCK_POINTS", 4096, minimum=2)
RUNSTORE_TRASH_DAYS = env_int("RUNSTORE_TRASH_DAYS", 30, minimum=0)  # deleted runs are purged after this
# A running run whose pings stopped this many seconds ago is marked crashed (runs.tasks.mark_crashed_runs).
RUNSTORE_CRASH_AFTER = env_int("RUNSTORE_CRASH_AFTER", 300, minimum=1)
RUNSTORE_ORPHAN_GRACE_SECONDS = env_int("RUNSTORE_ORPHAN_GRACE_SECONDS", 24 * 3600, minimum=0)
RUNSTORE_THUMBNAIL_SIZE = env_int("RUNSTORE_THUMBNAIL_SIZE", 256, minimum=16)
RUNSTORE_PREVIEW_MAX_BYTES = env_int("RUNSTORE_PREVIEW_MAX_BYTES", 20 * 1024 * 1024, minimum=1024)
# Uploads are untrusted: bounds on what one preview may cost a media worker (over one: a recorded preview failure).
RUNSTORE_PREVIEW_MAX_PIXELS = env_int("RUNSTORE_PREVIEW_MAX_PIXELS", 50_000_000, minimum=1)  # image / video frame
RUNSTORE_PREVIEW_MAX_CELLS = env_int("RUNSTORE_PREVIEW_MAX_CELLS", 2000, minimum=1)  # notebook cells
RUNSTORE_PREVIEW_MAX_OUTPUT_BYTES = env_int(
    "RUNSTORE_PREVIEW_MAX_OUTPUT_BYTES", 10 * 1024 * 1024, minimum=0
)  # notebook outputs
RUNSTORE_MEDIA_SOFT_TIME_LIMIT = env_int("RUNSTORE_MEDIA_SOFT_TIME_LIMIT", 60, minimum=1)  # seconds, preview tasks
if RUNSTORE_MEDIA_SOFT_TIME_LIMIT >= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured(
        f"RUNSTORE_MEDIA_SOFT_TIME_LIMIT={RUNSTORE_MEDIA_SOFT_TIME_LIMIT} must be below CELERY_TASK_TIME_LIMIT={CELERY_TASK_TIME_LIMIT}"
    )
RUNSTORE_MULTIPART_THRESHOLD = env_int("RUNSTORE_MULTIPART_THRESHOLD", 100 * 1024 * 1024, minimum=5 * 1024 * 1024)
RUNSTORE_MULTIPART_CHUNK = env_int("RUNSTORE_MULTIPART_CHUNK", 16 * 1024 * 1024, minimum=5 * 1024 * 1024)

# --- REST framework ---------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "projects.authentication.WorkspaceBoundTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["projects.throttling.RequestRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": [
        "tracker.api.renderers.JSONRenderer",
        "tracker.api.renderers.MessagePackRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": [
        "tracker.api.parsers.JSONParser",
        "tracker.api.parsers.MessagePackParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "tracker.api.errors.exception_handler",
    "DEFAULT_METADATA_CLASS": "tracker.api.metadata.Metadata",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Runstore API",
    "DESCRIPTION": "Log, query and fetch machine-learning runs.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "RunStateEnum": "runs.models.RunState",
        "ExportStateEnum": "runs.models.ExportState",
        "ModelStageEnum": "runs.registry.models.Stage",
    },
}

# --- metrics (tracker/metrics.py: /metrics for Prometheus) ------------------------
# Off unless one is set: a bearer token, and/or client addresses or networks (CIDR) that may scrape.
RUNSTORE_METRICS_TOKEN = env_str("RUNSTORE_METRICS_TOKEN")
RUNSTORE_METRICS_ALLOW = env_list("RUNSTORE_METRICS_ALLOW", [])
for _network in RUNSTORE_METRICS_ALLOW:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(f"RUNSTORE_METRICS_ALLOW: {_network!r} is not an IP address or network") from None
# Seconds a scrape waits for the broker to tell the queue lengths.
RUNSTORE_METRICS_BROKER_TIMEOUT = env_float("RUNSTORE_METRICS_BROKER_TIMEOUT", 2.0, minimum=0.1)

# --- logging ----------------------------------------------------------------
# json: one JSON object per line (tracker/logs.py), with the request id also in the Celery tasks a request queues.
RUNSTORE_LOG_FORMAT = env_choice("RUNSTORE_LOG_FORMAT", "plain", ("plain", "json"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "tracker.logs.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": RUNSTORE_LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO").upper()},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "axes": {"level": "WARNING"},  # failures and lockouts; not every successful login
    },
}
logging.captureWarnings(True)

TEST_RUNNER = "django.test.runner.DiscoverRunner"
REST_FRAMEWORK["TEST_REQUEST_RENDERER_CLASSES"] = [
    "tracker.api.renderers.JSONRenderer",
    "tracker.api.renderers.MessagePackRenderer",
    "rest_framework.renderers.MultiPartRenderer",
]
REST_FRAMEWORK["TEST_REQUEST_DEFAULT_FORMAT"] = "json"
