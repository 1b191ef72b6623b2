"""Development and test settings: the shared ones, and a database even on a bare machine.

DATABASE_URL selects any PostgreSQL 13 or newer; without it the project runs its
own embedded PostgreSQL (see config/embedded_db.py). config/production.py hardens
the shared settings and never starts the embedded server.
"""

from config.base import *  # noqa: F403
from config.base import BASE_DIR, databases, env

if env.str("DATABASE_URL", default=""):
    DATABASES = databases(env.str("DATABASE_URL"))
else:
    from config.embedded_db import database_url

    DATABASES = databases(database_url(BASE_DIR / ".pgdata"))
