"""ASGI entry point."""

import os

from django.core.asgi import get_asgi_application

# Production unless told otherwise: a server started without settings must not come up with
# the development defaults (DEBUG, a known secret key). Development sets its own (make run).
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")
application = get_asgi_application()
