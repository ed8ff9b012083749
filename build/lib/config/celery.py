"""The Celery app: configuration comes from Django settings (CELERY_* names)."""

import os

from celery import Celery

# Production unless told otherwise: a server started without settings must not come up with
# the development defaults (DEBUG, a known secret key). Development sets its own (make run).
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

app = Celery("parley")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
