"""Production settings: the shared ones, hardened.

Use with DJANGO_SETTINGS_MODULE=config.production. SECRET_KEY, ALLOWED_HOSTS and
DATABASE_URL must come from the environment; there is no default for any of
them, and production never starts the embedded PostgreSQL that development uses.
"""

import os

from django.core.exceptions import ImproperlyConfigured

from config import environment, logs
from config.base import *  # noqa: F403
from config.base import STORAGES, databases, env

if absent := environment.missing(os.environ):
    raise ImproperlyConfigured(f"config.production needs {'; '.join(absent)}.")

DATABASES = databases(env.str("DATABASE_URL"))
DEBUG = False
SECRET_KEY = env("SECRET_KEY")
EVENTSTORE_SIGNING_KEYS = env.str("EVENTSTORE_SIGNING_KEYS")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS")

SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
# A load balancer's or a monitor's probe often speaks plain HTTP straight to the web server; a
# redirect would read as "down". The health pages show no data, so plain HTTP gives nothing away.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
# The header and value by which the TLS proxy in front says a request came over HTTPS ("" when
# gunicorn itself terminates TLS). Only that proxy may reach the web server: anyone else could send it.
_proxy_says = env.str("SECURE_PROXY_SSL_HEADER", default="HTTP_X_FORWARDED_PROTO,https")
SECURE_PROXY_SSL_HEADER = tuple(_proxy_says.split(",", 1)) if _proxy_says else None
SECURE_HSTS_SECONDS = 60 * 60 * 24 * 365
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_SECURE = True
X_FRAME_OPTIONS = "DENY"
LOGGING = logs.config(env.str("LOG_FORMAT", default="json"), env("LOG_LEVEL"))

# Hashed, compressed files served by whitenoise: run `manage.py collectstatic` at deploy.
STATIC_ROOT = BASE_DIR / "staticfiles"  # noqa: F405
WHITENOISE_USE_FINDERS = False
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}}
