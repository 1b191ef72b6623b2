"""The WSGI entry point, which only a production web server uses (runserver and tests set
config.settings first): without DJANGO_SETTINGS_MODULE it serves config.production, which
refuses to start without its secrets, rather than the development settings' DEBUG."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.production")
application = get_wsgi_application()
