"""What production needs from the environment, said plainly: config.production and `make serve` both ask."""

from collections.abc import Mapping

# The shared settings give development defaults for these; production takes none.
REQUIRED = {
    "SECRET_KEY": "a long random string, kept secret",
    "DATABASE_URL": "postgres://USER:PASSWORD@HOST:5432/NAME; production never starts the embedded PostgreSQL",
    "ALLOWED_HOSTS": "the host names the site answers to, comma-separated",
    "EVENTSTORE_SIGNING_KEYS": "id:secret,...: the keys that sign the log; production never derives one",
}


def missing(environ: Mapping[str, str]) -> list[str]:
    """Each required variable `environ` lacks (or holds blank), with what it should hold."""
    return [f"{name} ({meaning})" for name, meaning in REQUIRED.items() if not environ.get(name, "").strip()]
