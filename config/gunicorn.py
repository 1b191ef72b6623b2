"""gunicorn's settings for `make serve` (`gunicorn -c python:config.gunicorn config.wsgi:application`).

Each from the environment, with what one host behind a TLS proxy wants by default.
gunicorn writes no access log: the application logs every request itself, with
its request id and actor (config/requests.py); gunicorn's own lines (workers
booted, a worker killed) come out as the application's do (config/logs.py).
"""

import os

from config import logs

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# The proxies allowed to say, by X-Forwarded-Proto and X-Forwarded-For, how and from where a request came.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
timeout = int(os.environ.get("WEB_TIMEOUT_S", "60"))  # a worker silent this long is killed and replaced
graceful_timeout = 30  # on SIGTERM, how long the requests in hand get to finish
logconfig_dict = logs.config(
    os.environ.get("LOG_FORMAT", "json"), os.environ.get("LOG_LEVEL", "INFO"), own=("gunicorn.error",)
)
