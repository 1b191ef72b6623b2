"""Settings shared by development (config.settings) and production (config.production).

Everything is read from the environment by django-environ. The database is not
chosen here: development falls back to an embedded PostgreSQL, production never.
"""

import datetime
import hashlib
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from config import grants, logs

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env(
    DEBUG=(bool, True),
    ALLOWED_HOSTS=(list, ["127.0.0.1", "localhost"]),
    EVENTSTORE_SNAPSHOT_EVERY=(int, 100),
    EVENTSTORE_RECENT_STATES=(int, 10_000),
    EVENTSTORE_VERIFY_TEMP_BUFFERS=(str, "1GB"),
    HEALTH_PROJECTION_LAG_EVENTS=(int, 10_000),
    HEALTH_PROJECTION_LAG_SECONDS=(int, 60),
    LOG_LEVEL=(str, "INFO"),
    DEFAULT_CURRENCY=(str, "EUR"),
    ACCOUNT_AMOUNT_CEILING=(int, 10**13),
    WEB_LOCK_TIMEOUT_MS=(int, 3_000),
    WEB_STATEMENT_TIMEOUT_MS=(int, 30_000),
    REPLICA_WAIT_FOR_WRITES_MS=(int, 2_000),
    REPLICA_STALE_AFTER_SECONDS=(float, 5.0),
    REPLICA_MAX_LAG_SECONDS=(float, 30.0),
    REPLICA_RETRY_SECONDS=(float, 10.0),
    REPLICA_CONNECT_TIMEOUT_S=(int, 2),
)

DEBUG = env("DEBUG")
SECRET_KEY = env("SECRET_KEY", default="django-insecure-local-development-only")
ALLOWED_HOSTS = env("ALLOWED_HOSTS")


def database(url: str) -> dict:
    """Django's settings for the PostgreSQL at `url`."""
    config = env.db_url_config(url)
    # Django's own queries bind client-side and are never prepared; the event store's
    # hot statements use server-side binding and stay prepared per connection.
    config.setdefault("OPTIONS", {}).setdefault("prepare_threshold", 5)
    return config


_SILENT_REPLICA = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3,
                   "tcp_user_timeout": 10_000}  # fmt: skip


def databases(primary_url: str) -> dict:
    """The primary at `primary_url`, and each streaming replica REPLICA_DATABASE_URLS names, as
    replica_1, replica_2, ... (eventstore.replicas chooses among them; commands use the primary only)."""
    found = {"default": database(primary_url)}
    for number, url in enumerate(env.list("REPLICA_DATABASE_URLS", default=[]), start=1):
        replica = database(url)
        if replica.get("ENGINE") != found["default"]["ENGINE"]:
            # Caught here, at start, rather than by every page that would try to connect to it.
            raise ImproperlyConfigured(
                f"REPLICA_DATABASE_URLS: replica {number} is not a PostgreSQL URL "  # the URL may hold a password
                "(postgres://USER@HOST:PORT/NAME, comma-separated)."
            )
        # A replica that is down should cost a page a moment, not the server's default wait; one that
        # falls silent mid-query (its host gone, the network cut) is given up within about 11 s, by TCP
        # keepalives and an unacknowledged-data timeout, and the page is read again from the primary.
        for option, value in {"connect_timeout": REPLICA_CONNECT_TIMEOUT_S, **_SILENT_REPLICA}.items():
            replica["OPTIONS"].setdefault(option, value)
        replica["TEST"] = {"MIRROR": "default"}  # a test database has no replica of its own
        found[f"replica_{number}"] = replica
    return found


EVENTSTORE_SNAPSHOT_EVERY = env("EVENTSTORE_SNAPSHOT_EVERY")
# The keys that sign the log, "id:secret,id:secret" (the first signs, all verify; see
# eventstore.signing). Development derives one from SECRET_KEY; production requires them.
EVENTSTORE_SIGNING_KEYS = env.str("EVENTSTORE_SIGNING_KEYS", default="") or (
    "dev:" + hashlib.sha256(b"eventstore signing key\0" + SECRET_KEY.encode()).hexdigest()
)
# How many aggregates' states each process keeps from its own commands (0: none).
EVENTSTORE_RECENT_STATES = env("EVENTSTORE_RECENT_STATES")
# The server memory verify_projections asks for the temporary tables it replays into (temp_buffers).
EVENTSTORE_VERIFY_TEMP_BUFFERS = env("EVENTSTORE_VERIFY_TEMP_BUFFERS")
DEFAULT_CURRENCY = env("DEFAULT_CURRENCY")
# Every amount a command moves must be below this many minor units.
ACCOUNT_AMOUNT_CEILING = env("ACCOUNT_AMOUNT_CEILING")
# From which amount (major units, per currency) the pages show a review step before a deposit
# or a withdrawal; closing, freezing, unfreezing and transfers always have one. About
# 10,000 EUR's worth; REVIEW_AT="EUR=5000;JPY=800000" changes those it names.
THRESHOLDS = {"JPY": 1_500_000, "ISK": 1_500_000, "KWD": 3_000, "BHD": 3_000}
REVIEW_AT = {**THRESHOLDS, **env.dict("REVIEW_AT", cast={"value": int}, default={})}
REVIEW_AT_OTHERS = 10_000  # a currency REVIEW_AT does not name
# From which amount (major units, per currency) a withdrawal or a transfer waits for a second
# person's approval (four eyes); closing and unfreezing always do. Same defaults and form as REVIEW_AT.
APPROVAL_AT = {**THRESHOLDS, **env.dict("APPROVAL_AT", cast={"value": int}, default={})}
APPROVAL_AT_OTHERS = 10_000
# How long a request waits for its checker before it expires.
APPROVAL_EXPIRES_AFTER_HOURS = env.int("APPROVAL_EXPIRES_AFTER_HOURS", default=24)
# How long a web request waits for a lock (an account another command holds) and
# runs one statement, in milliseconds; management commands are not bounded.
WEB_LOCK_TIMEOUT_MS = env("WEB_LOCK_TIMEOUT_MS")
WEB_STATEMENT_TIMEOUT_MS = env("WEB_STATEMENT_TIMEOUT_MS")
# What the application's and the runner's database roles may do, table by table
# (manage.py grant_app_role applies it).
DATABASE_GRANTS = grants.DATABASE_GRANTS
# Which database the ORM reads and writes; the event store's read helpers ask the same router.
DATABASE_ROUTERS = ["eventstore.db.Router"]
# Streaming replicas (REPLICA_DATABASE_URLS, see eventstore.replicas). After a command, its maker's
# pages wait this long for a replica to replay it, then read from the primary.
REPLICA_WAIT_FOR_WRITES_MS = env("REPLICA_WAIT_FOR_WRITES_MS")
# A page read from a replica this far behind the primary says so.
REPLICA_STALE_AFTER_SECONDS = env("REPLICA_STALE_AFTER_SECONDS")
# A replica further behind than this is skipped (the primary serves) and /healthz answers 503.
REPLICA_MAX_LAG_SECONDS = env("REPLICA_MAX_LAG_SECONDS")
# A replica that failed is left alone this long before it is asked again.
REPLICA_RETRY_SECONDS = env("REPLICA_RETRY_SECONDS")
REPLICA_CONNECT_TIMEOUT_S = env("REPLICA_CONNECT_TIMEOUT_S")
# /healthz answers 503 once an asynchronous projection has this many events to apply, or has
# had one waiting this many seconds (its runner is down, stuck or far behind).
HEALTH_PROJECTION_LAG_EVENTS = env("HEALTH_PROJECTION_LAG_EVENTS")
HEALTH_PROJECTION_LAG_SECONDS = env("HEALTH_PROJECTION_LAG_SECONDS")
# Log lines on standard error: LOG_FORMAT json (one object per line, production's default) or text.
LOGGING = logs.config(env.str("LOG_FORMAT", default="text"), env("LOG_LEVEL"))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "axes",
    "health_check",
    "eventstore",
    "accounts",
]

# A failed CSRF check says nothing was done and leads back (not Django's technical page).
CSRF_FAILURE_VIEW = "accounts.views.csrf_failure"

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "config.requests.DatabaseTimeoutsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "config.requests.RefuseNulMiddleware",
    "eventstore.context.EventMetadataMiddleware",
    "config.requests.RequestLogMiddleware",
    "config.requests.ReplicaReadsMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "config.security.ContentSecurityPolicyMiddleware",
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # refuses logins while a lockout lasts
    "django.contrib.auth.backends.ModelBackend",
]
# Five wrong passwords for one username from one address lock it out for 15 minutes.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = datetime.timedelta(minutes=15)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"

ROOT_URLCONF = "config.urls"

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
                "config.requests.reading",
            ],
        },
    },
]

WSGI_APPLICATION = "config.wsgi.application"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-gb"
FORMAT_MODULE_PATH = ["config.formats"]  # times to the second, as the pages show them
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Here whitenoise serves straight from the source folders; production collects them.
WHITENOISE_USE_FINDERS = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "accounts:dashboard"
LOGOUT_REDIRECT_URL = "login"
