"""Starting a training run once: the API's `Idempotency-Key` header and the start form's
hidden key make a retry or a double submit answer the first run instead of starting a second."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.factories import MembershipFactory, ProjectFactory
from trainer_bridge.models import TrainingRun

pytestmark = pytest.mark.django_db

LIST_URL = "/api/v1/projects/alpha/training-runs/"


@pytest.fixture
def preferences(signal_data, snapshot_of):
    signal_data(sets=3, prompts=20)
    return snapshot_of("preferences")


def rm_payload(snapshot, **extra):
    return {"stage": "rm", "snapshots": [snapshot.pk], "base_model": "tiny-policy", **extra}


def test_the_same_key_from_the_same_user_answers_the_first_run_with_200(
    api_client_for, engineer, preferences, sent, django_capture_on_commit_callbacks
):
    api = api_client_for(engineer)
    with django_capture_on_commit_callbacks(execute=True):
        first = api.post(
            LIST_URL, rm_payload(preferences), format="json", HTTP_IDEMPOTENCY_KEY="k-1"
        )
        again = api.post(
            LIST_URL,
            rm_payload(preferences, hyperparameters={"epochs": 3}),
            format="json",
            HTTP_IDEMPOTENCY_KEY="k-1",
        )
    assert first.status_code == 201, first.json()
    assert again.status_code == 200, again.json()
    assert again.json()["id"] == first.json()["id"]
    assert again["Location"] == first["Location"]
    run = TrainingRun.objects.get()
    assert run.idempotency_key == "k-1"
    assert run.hyperparameters["epochs"] != 3  # the replay changed nothing
    sent.assert_called_once_with(run.pk)  # queued once

    # Another key starts another run; no key at all always does.
    assert (
        api.post(
            LIST_URL, rm_payload(preferences), format="json", HTTP_IDEMPOTENCY_KEY="k-2"
        ).status_code
        == 201
    )
    assert api.post(LIST_URL, rm_payload(preferences), format="json").status_code == 201
    assert api.post(LIST_URL, rm_payload(preferences), format="json").status_code == 201
    assert TrainingRun.objects.count() == 4


def test_a_key_is_per_user(api_client_for, engineer, lead, preferences, sent):
    one = api_client_for(engineer).post(
        LIST_URL, rm_payload(preferences), format="json", HTTP_IDEMPOTENCY_KEY="same"
    )
    other = api_client_for(lead).post(
        LIST_URL, rm_payload(preferences), format="json", HTTP_IDEMPOTENCY_KEY="same"
    )
    assert one.status_code == other.status_code == 201
    assert one.json()["id"] != other.json()["id"]


def test_a_failed_start_does_not_use_up_its_key(api_client_for, engineer, preferences, sent):
    api = api_client_for(engineer)
    bad = api.post(
        LIST_URL,
        rm_payload(preferences, base_model="nobody"),
        format="json",
        HTTP_IDEMPOTENCY_KEY="retry-me",
    )
    assert bad.status_code == 400 and "base_model" in bad.json()
    good = api.post(
        LIST_URL, rm_payload(preferences), format="json", HTTP_IDEMPOTENCY_KEY="retry-me"
    )
    assert good.status_code == 201


@pytest.mark.parametrize("key", ["", "x" * 101, "has space", "naïve"])
def test_a_malformed_key_is_a_400_naming_the_header(
    key, api_client_for, engineer, preferences, sent
):
    response = api_client_for(engineer).post(
        LIST_URL, rm_payload(preferences), format="json", HTTP_IDEMPOTENCY_KEY=key
    )
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()
    assert not TrainingRun.objects.exists()


def test_a_key_used_in_another_project_is_refused(
    api_client_for, engineer, preferences, sent, tiny_models
):
    api = api_client_for(engineer)
    assert (
        api.post(
            LIST_URL, rm_payload(preferences), format="json", HTTP_IDEMPOTENCY_KEY="k"
        ).status_code
        == 201
    )
    other = ProjectFactory(slug="bravo")
    MembershipFactory(project=other, user=engineer, role="engineer")
    response = api.post(
        "/api/v1/projects/bravo/training-runs/",
        rm_payload(preferences),
        format="json",
        HTTP_IDEMPOTENCY_KEY="k",
    )
    assert response.status_code == 400 and "Idempotency-Key" in response.json()
    assert TrainingRun.objects.count() == 1


def test_trainers_and_outsiders_learn_nothing_from_a_key(
    api_client_for, engineer, trainer, outsider, preferences, sent
):
    api_client_for(engineer).post(
        LIST_URL, rm_payload(preferences), format="json", HTTP_IDEMPOTENCY_KEY="k"
    )
    for user, status in [(trainer, 403), (outsider, 404)]:
        response = api_client_for(user).post(
            LIST_URL, rm_payload(preferences), format="json", HTTP_IDEMPOTENCY_KEY="k"
        )
        assert response.status_code == status
    assert TrainingRun.objects.count() == 1


def test_the_start_form_posted_twice_starts_one_run(client, engineer, preferences, sent):
    client.force_login(engineer)
    page = client.get("/p/alpha/training/new")
    key = page.context["form"]["idempotency_key"].value()
    assert key and f'name="idempotency_key" value="{key}"' in page.content.decode()
    assert (
        'id="training-run-form"' in page.content.decode() and "data-once" in page.content.decode()
    )
    data = {
        "stage": "rm", "snapshots": [str(preferences.pk)], "base_model": "tiny-policy",
        "backend": "local", "hp_precision": "auto", "idempotency_key": key,
    }  # fmt: skip
    first = client.post("/p/alpha/training/new", data)
    second = Client()
    second.force_login(engineer)
    again = second.post("/p/alpha/training/new", data)
    run = TrainingRun.objects.get()
    assert first["Location"] == again["Location"] == f"/p/alpha/training/{run.pk}/"
    shown = second.get(again["Location"]).content.decode()
    assert f"This form already started training run #{run.pk}." in shown
    # A fresh form has a fresh key.
    assert client.get("/p/alpha/training/new").context["form"]["idempotency_key"].value() != key
