"""Tests: the database and broker from the environment (CI: PostgreSQL and Redis), fast hashing."""

from config.settings.base import *  # noqa: F403
from config.settings.base import DATABASES, REST_FRAMEWORK, VAR_DIR, env

DEBUG = False
SECRET_KEY = "test-only-key"  # noqa: S105
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Fresh connections per request, unless a test's web server asks for production's persistent
# ones (the fault drills).
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
# A named test database so a worker started by a test can reach the same one.
DATABASES["default"]["TEST"] = {
    "NAME": env.str("PARLEY_TEST_DB_NAME", default="parley_test")
    if DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3"
    else str(VAR_DIR / "parley_test.sqlite3")
}
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
LOGGING = {"version": 1, "disable_existing_loggers": False}

# A Celery worker started by a test runs with this set, so it connects to the test database
# that pytest-django created rather than the development one.
if env.bool("PARLEY_WORKER_USES_TEST_DB", default=False):
    DATABASES["default"]["NAME"] = DATABASES["default"]["TEST"]["NAME"]

STATIC_ROOT = VAR_DIR / "test-static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
WHITENOISE_USE_FINDERS = True

# The suite makes many API requests as the same few users (and ids repeat between tests) in one
# process: rates no test reaches by accident. tests/config/test_abuse_limits.py lowers them.
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = {"user": "1000000/min", "anon": "1000000/min"}
# Login lockout off by default (tests log in with wrong passwords on purpose); the lockout test
# turns it on.
AXES_ENABLED = False
