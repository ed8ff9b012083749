"""One time format in API bodies: every moment is ISO 8601 in UTC ending in Z, whether DRF wrote
it (serializer fields, the task body's plain values) or it was built by hand (manifests, page
saves)."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client

from annotations.timestamps import iso_utc
from exports.services import export_request
from tests.factories import ModelVersionFactory, start
from trainer_bridge.models import GenerationRequest, TrainingRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


MOMENT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
CANONICAL = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?Z$")


def moments(value, path="$"):
    """Every string in a JSON body that looks like a date and time, with where it is."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from moments(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from moments(item, f"{path}[{i}]")
    elif isinstance(value, str) and MOMENT.match(value):
        yield path, value


def assert_canonical(body) -> int:
    found = list(moments(body))
    bad = [(path, value) for path, value in found if not CANONICAL.match(value)]
    assert not bad, bad
    return len(found)


def test_every_moment_in_the_api_bodies_ends_in_z(
    api_client_for, project, trainer, engineer, mocker
):
    mocker.patch("trainer_bridge.tasks.train_run.delay")
    prompt = start(project, "How do tides work?")
    model = ModelVersionFactory(name="tiny-policy")
    run = TrainingRun.objects.create(project=project, stage="sft", base_model=model)
    generation = GenerationRequest.objects.create(
        project=project, model_version=model, n=1, params={}, purpose="draft", context=prompt
    )
    export_request(project=project, user=engineer, kind="prompts", choices={})

    seen = 0
    task = api_client_for(trainer).post(
        "/api/v1/projects/alpha/tasks/next", {"kind": "demonstration"}, format="json"
    )
    assert task.status_code == 200 and task.json()["lease_expires_at"]
    seen += assert_canonical(task.json())
    api = api_client_for(engineer)
    for url in (
        f"/api/v1/training-runs/{run.pk}/",
        "/api/v1/projects/alpha/training-runs/",
        f"/api/v1/generations/{generation.pk}/",
        "/api/v1/projects/alpha/exports/",
    ):
        response = api.get(url)
        assert response.status_code == 200, (url, response.content)
        seen += assert_canonical(response.json())
    assert seen >= 5  # the check looked at real moments


def test_a_page_save_answers_moments_in_the_same_format(client: Client, project, trainer):
    api = Client()
    api.force_login(trainer)
    task_id = api.post("/p/alpha/demonstrations/next").url.rstrip("/").split("/")[-1]
    saved = api.post(
        f"/demonstrations/{task_id}/autosave",
        data=json.dumps({"turns": [], "editor": "Hi"}),
        content_type="application/json",
    )
    assert saved.status_code == 200, saved.content
    saved = saved.json()
    assert CANONICAL.match(saved["lease_expires_at"]) and CANONICAL.match(saved["autosaved_at"])


def test_the_export_manifest_says_when_in_the_same_format(project, engineer, media_root):
    from exports.services import export_build

    snapshot = export_request(project=project, user=engineer, kind="prompts", choices={})
    built = export_build(snapshot_id=snapshot.pk)
    assert CANONICAL.match(built.manifest["created_at"]), built.manifest["created_at"]
    assert iso_utc(built.created_at).endswith("Z")
