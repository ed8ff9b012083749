"""Production settings refuse to start without their secrets; Celery routes work to its queues."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from config.celery import app
from tests.browser.conftest import PRODUCTION_CSP

ROOT = Path(__file__).resolve().parents[2]
GOOD_ENV = {
    "SECRET_KEY": "k" * 20 + "-a-long-random-production-secret-for-the-tests-" + "z" * 10,
    "ALLOWED_HOSTS": "parley.example.org",
    "DATABASE_URL": "postgres://parley@db.example.org:5432/parley",
    "CELERY_BROKER_URL": "redis://broker.example.org:6379/0",
}


def _manage(*args: str, **env_overrides: str | None) -> subprocess.CompletedProcess:
    dev_only = {"DEBUG", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env = {k: v for k, v in os.environ.items() if k not in GOOD_ENV and k not in dev_only}
    env.update(GOOD_ENV)
    env["DJANGO_SETTINGS_MODULE"] = "config.settings.production"
    env["PARLEY_VAR_DIR"] = str(Path(settings.VAR_DIR) / "prod-check")
    for key, value in env_overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize("missing", ["SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL"])
def test_production_refuses_to_start_without(missing):
    result = _manage("check", **{missing: None})
    assert result.returncode != 0
    assert f"{missing} must be set" in result.stderr


def test_production_refuses_sqlite_and_a_weak_key():
    assert "not SQLite" in _manage("check", DATABASE_URL="sqlite:////tmp/x.sqlite3").stderr
    assert "at least 50" in _manage("check", SECRET_KEY="short").stderr


def test_check_deploy_passes_with_everything_set():
    result = _manage("check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_production_sends_security_headers_and_serves_json_only():
    script = (
        "import json; from django.conf import settings as s; from django.test import Client; "
        "r = Client().get('/api/v1/me/', secure=True, HTTP_ACCEPT='text/html'); "
        "print(json.dumps({'csp': r.headers.get('Content-Security-Policy'), "
        "'type': r.headers['Content-Type'], "
        "'pp': r.headers.get('Permissions-Policy'), "
        "'renderers': s.REST_FRAMEWORK['DEFAULT_RENDERER_CLASSES'], "
        "'throttles': s.REST_FRAMEWORK['DEFAULT_THROTTLE_CLASSES'], "
        "'axes': [s.AXES_ENABLED, s.AXES_FAILURE_LIMIT, s.AUTHENTICATION_BACKENDS[0]]}))"
    )
    # An anonymous API request touches no database; a browser asking for HTML still gets JSON.
    result = _manage("shell", "-c", script, ALLOWED_HOSTS="testserver")
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout.strip().splitlines()[-1])
    csp = dict(part.strip().split(" ", 1) for part in values["csp"].split(";"))
    assert csp["default-src"] == "'self'" and csp["script-src"] == "'self'"
    assert csp["object-src"] == "'none'" and csp["frame-ancestors"] == "'none'"
    assert csp["base-uri"] == csp["form-action"] == "'self'"
    assert csp["img-src"] == "'self' data:"
    assert csp["style-src"] == "'self'"  # no inline styles either
    assert values["csp"] == PRODUCTION_CSP  # the policy every browser test runs under
    for feature in ("camera", "microphone", "geolocation"):
        assert f"{feature}=()" in values["pp"]
    assert values["renderers"] == ["rest_framework.renderers.JSONRenderer"]
    assert values["type"] == "application/json"
    assert "config.throttles.UserThrottle" in values["throttles"]
    assert values["axes"] == [True, 10, "axes.backends.AxesStandaloneBackend"]


def test_base_settings_send_no_csp_and_keep_the_browsable_api():
    assert settings.CONTENT_SECURITY_POLICY == "" and settings.PERMISSIONS_POLICY == ""
    assert "DEFAULT_RENDERER_CLASSES" not in settings.REST_FRAMEWORK


def test_queues_and_routes():
    queues = {q.name for q in app.conf.task_queues}
    assert queues == {"default", "gpu", "train"}
    router = app.amqp.router
    assert router.route({}, "trainer_bridge.tasks.generate_batch")["queue"].name == "gpu"
    assert router.route({}, "trainer_bridge.tasks.train_run")["queue"].name == "train"
    assert router.route({}, "labelling.tasks.expire_task_leases")["queue"].name == "default"
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert "labelling.tasks.expire_task_leases" in {
        entry["task"] for entry in app.conf.beat_schedule.values()
    }


@pytest.mark.parametrize("entry_point", ["config.wsgi", "config.asgi", "config.celery"])
def test_server_entry_points_default_to_production_settings(entry_point):
    """Started without DJANGO_SETTINGS_MODULE, a server gets production settings, which refuse
    to start without a secret key, rather than development's DEBUG and known key."""
    env = {k: v for k, v in os.environ.items() if k not in GOOD_ENV}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env["PARLEY_VAR_DIR"] = str(Path(settings.VAR_DIR) / "prod-check")
    script = (
        f"import os, {entry_point}; from django.conf import settings; "
        "print(os.environ['DJANGO_SETTINGS_MODULE']); settings.DEBUG"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr, result.stderr[-2000:]
