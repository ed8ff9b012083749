"""The generation REST API: creating requests, reading their state and outputs, retrying them."""

import pytest
from django.utils import timezone

from annotations.models import Conversation
from annotations.services import conversation_start, message_add
from tests.factories import ModelVersionFactory, ProjectFactory
from trainer_bridge.generation import generation_request_from_messages
from trainer_bridge.models import GenerationRequest
from trainer_bridge.worker import process_generation

pytestmark = pytest.mark.django_db

CREATE_URL = "/api/v1/projects/alpha/generations/"


@pytest.fixture
def models(project):
    draft = ModelVersionFactory(name="draft-v1")
    candidate = ModelVersionFactory(name="candidate-v1")
    project.draft_model = draft
    project.max_generations_per_request = 4
    project.save()
    project.candidate_models.add(candidate)
    return draft, candidate


def _queued(project, user, *, model_version, text="Hello?"):
    return generation_request_from_messages(
        project=project,
        messages=[{"role": "user", "content": text}],
        model_version=model_version,
        purpose="candidates",
        requested_by=user,
    )


def test_create_from_messages_queues_a_request_and_sends_it_after_commit(
    api_client_for, engineer, models, django_capture_on_commit_callbacks, mocker
):
    delay = mocker.patch("trainer_bridge.tasks.generate.delay")
    payload = {
        "model_version": "candidate-v1",
        "n": 2,
        "params": {"temperature": 0.7, "max_new_tokens": 8},
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "Name a colour."},
        ],
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client_for(engineer).post(CREATE_URL, payload, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    generation = GenerationRequest.objects.get()
    delay.assert_called_once_with(generation.pk)
    assert response["Location"] == f"/api/v1/generations/{generation.pk}/"
    assert body["id"] == generation.pk and body["project"] == "alpha"
    assert body["purpose"] == "candidates" and body["model_version"] == "candidate-v1"
    assert body["n"] == 2 and body["state"] == "queued" and body["queue_position"] == 1
    assert body["params"]["temperature"] == 0.7 and body["params"]["max_new_tokens"] == 8
    assert body["context"] == payload["messages"]
    assert body["outputs"] == [] and body["attempts"] == 0 and body["error"] == ""
    assert body["timings"]["queued_at"] and body["timings"]["started_at"] is None
    assert generation.requested_by == engineer
    assert generation.context.conversation.source == Conversation.Source.API


def test_create_after_an_existing_message_defaults_to_the_draft_model(
    api_client_for, lead, project, models
):
    _, root = conversation_start(project=project, text="What is a haiku?")
    response = api_client_for(lead).post(
        CREATE_URL, {"purpose": "draft", "context_message": root.pk}, format="json"
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["model_version"] == "draft-v1" and body["purpose"] == "draft" and body["n"] == 1
    assert body["context"] == [{"role": "user", "content": "What is a haiku?"}]
    assert GenerationRequest.objects.get().context == root


def test_candidates_default_to_the_first_candidate_model(api_client_for, engineer, models):
    response = api_client_for(engineer).post(
        CREATE_URL, {"messages": [{"role": "user", "content": "Hi"}]}, format="json"
    )
    assert response.status_code == 201 and response.json()["model_version"] == "candidate-v1"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"params": {"temperature": -0.5}}, "params.temperature"),
        ({"n": 5}, "n"),
        ({"model_version": "no-such-model"}, "model_version"),
        (
            {
                "messages": [
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Yo"},
                ]
            },
            "messages",
        ),
        ({"messages": [{"role": "assistant", "content": "I start."}]}, "messages"),
    ],
)
def test_invalid_requests_get_a_400_naming_the_field(
    api_client_for, engineer, models, changes, field
):
    payload = {"messages": [{"role": "user", "content": "Hi"}], **changes}
    response = api_client_for(engineer).post(CREATE_URL, payload, format="json")
    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert not GenerationRequest.objects.exists()
    assert not Conversation.objects.exists()


def test_a_context_message_must_be_a_user_turn_in_this_project(
    api_client_for, engineer, project, models
):
    _, elsewhere = conversation_start(project=ProjectFactory(), text="Not yours.")
    _, root = conversation_start(project=project, text="Hi")
    reply = message_add(parent=root, role="assistant", text="Hello!")
    client = api_client_for(engineer)
    for message in (elsewhere, reply):
        response = client.post(CREATE_URL, {"context_message": message.pk}, format="json")
        assert response.status_code == 400
        assert "context_message" in response.json(), response.json()
    both = {"context_message": root.pk, "messages": [{"role": "user", "content": "Hi"}]}
    assert client.post(CREATE_URL, both, format="json").status_code == 400
    assert not GenerationRequest.objects.exists()


def test_a_project_without_models_asks_for_one(api_client_for, engineer):
    response = api_client_for(engineer).post(
        CREATE_URL, {"messages": [{"role": "user", "content": "Hi"}]}, format="json"
    )
    assert response.status_code == 400 and "model_version" in response.json()


def test_create_needs_a_token(client, models):
    response = client.post(
        CREATE_URL,
        {"messages": [{"role": "user", "content": "Hi"}]},
        content_type="application/json",
    )
    assert response.status_code == 401


def test_outsiders_get_404_and_trainers_403(api_client_for, outsider, trainer, models):
    payload = {"messages": [{"role": "user", "content": "Hi"}]}
    assert api_client_for(outsider).post(CREATE_URL, payload, format="json").status_code == 404
    assert api_client_for(trainer).post(CREATE_URL, payload, format="json").status_code == 403
    assert not GenerationRequest.objects.exists()


def test_who_may_read_a_request(api_client_for, project, engineer, lead, trainer, outsider, models):
    _, candidate = models
    by_engineer = _queued(project, engineer, model_version=candidate)
    by_trainer = _queued(project, trainer, model_version=candidate, text="Mine")

    def status(user, generation):
        return api_client_for(user).get(f"/api/v1/generations/{generation.pk}/").status_code

    assert status(lead, by_engineer) == 200 and status(lead, by_trainer) == 200
    # A trainer sees the requests they made (drafts) but not the project's others.
    assert status(trainer, by_trainer) == 200
    assert status(trainer, by_engineer) == 404
    assert status(outsider, by_engineer) == 404
    assert api_client_for(engineer).get("/api/v1/generations/999999/").status_code == 404


def test_get_after_the_worker_ran_shows_done_with_n_outputs(
    api_client_for, project, engineer, tiny_model_paths
):
    policy = ModelVersionFactory(name="tiny-policy", source=str(tiny_model_paths.policy))
    project.candidate_models.add(policy)
    client = api_client_for(engineer)
    created = client.post(
        CREATE_URL,
        {
            "n": 3,
            "params": {"max_new_tokens": 8, "seed": 1},
            "messages": [{"role": "user", "content": "How do I boil an egg?"}],
        },
        format="json",
    ).json()

    report = process_generation(created["id"])

    assert report.done == 1
    body = client.get(f"/api/v1/generations/{created['id']}/").json()
    assert body["state"] == "done" and body["queue_position"] is None
    assert body["attempts"] == 1
    assert [o["index"] for o in body["outputs"]] == [0, 1, 2]
    assert all(isinstance(o["content"], str) for o in body["outputs"])
    assert {o["role"] for o in body["outputs"]} == {"assistant"}
    assert all("text" not in o for o in body["outputs"])
    assert body["prompt_tokens"] > 0 and body["completion_tokens"] > 0
    timings = body["timings"]
    assert timings["queued_at"] <= timings["started_at"] <= timings["finished_at"]


def test_retry_requeues_a_failed_request_and_refuses_others(
    api_client_for, project, engineer, trainer, models
):
    _, candidate = models
    generation = _queued(project, engineer, model_version=candidate)
    url = f"/api/v1/generations/{generation.pk}/retry"
    client = api_client_for(engineer)

    GenerationRequest.objects.filter(pk=generation.pk).update(
        state="done", started_at=timezone.now(), finished_at=timezone.now(), attempts=1
    )
    response = client.post(url)
    assert response.status_code == 409
    assert response.json()["state"] == "done" and "retried" in response.json()["detail"]

    GenerationRequest.objects.filter(pk=generation.pk).update(state="failed", error="OOM")
    assert api_client_for(trainer).post(url).status_code == 403
    response = client.post(url)
    assert response.status_code == 200
    assert response.json()["state"] == "queued" and response.json()["error"] == ""
    generation.refresh_from_db()
    assert generation.state == "queued" and generation.attempts == 0


def test_schema_documents_the_generation_endpoints(api_client_for, engineer):
    schema = api_client_for(engineer).get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()
    assert "post" in schema["paths"]["/api/v1/projects/{slug}/generations/"]
    assert "get" in schema["paths"]["/api/v1/generations/{id}/"]
    assert "409" in schema["paths"]["/api/v1/generations/{id}/retry"]["post"]["responses"]


@pytest.mark.parametrize(
    ("raw_params", "field"),
    [
        ('{"top_k": 9223372036854775808}', "params.top_k"),  # 2**63 was accepted, then overflowed
        ('{"top_k": 1e400}', "params.top_k"),  # inf once made the API answer 500
        ('{"top_k": 2.5}', "params.top_k"),
        ('{"top_k": true}', "params.top_k"),
        ('{"temperature": 1' + "0" * 400 + "}", "params.temperature"),  # too big for a float
        ('{"temperature": 5.5}', "params.temperature"),
        ('{"top_p": 1.5}', "params.top_p"),
        ('{"max_new_tokens": 0}', "params.max_new_tokens"),
        ('{"max_new_tokens": true}', "params.max_new_tokens"),
        ('{"repetition_penalty": 11}', "params.repetition_penalty"),
        ('{"seed": -1}', "params.seed"),
        ('{"seed": "7"}', "params.seed"),
    ],
)
def test_sampling_values_out_of_bounds_get_a_400_naming_the_field(
    api_client_for, engineer, models, raw_params, field
):
    body = '{"messages": [{"role": "user", "content": "Hi"}], "params": ' + raw_params + "}"
    response = api_client_for(engineer).post(CREATE_URL, body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert list(response.json()) == [field], response.json()
    assert not GenerationRequest.objects.exists()


@pytest.mark.parametrize("n", ["9223372036854775808", "true", "1e400", "0", "2.5"])
def test_n_must_be_a_whole_number_the_project_allows(api_client_for, engineer, models, n):
    body = '{"messages": [{"role": "user", "content": "Hi"}], "n": ' + n + "}"
    response = api_client_for(engineer).post(CREATE_URL, body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert list(response.json()) == ["n"], response.json()
    assert not GenerationRequest.objects.exists()


def test_a_project_generates_only_with_its_own_models(api_client_for, engineer, project, models):
    other = ProjectFactory()
    other.candidate_models.add(ModelVersionFactory(name="other-v1"))
    ModelVersionFactory(name="unassigned-v1")
    client = api_client_for(engineer)

    def create(name):
        payload = {"model_version": name, "messages": [{"role": "user", "content": "Hi"}]}
        return client.post(CREATE_URL, payload, format="json")

    # Another project's model, a registered one nobody was given, and a made-up name all get
    # the same answer: the API does not say which names exist.
    for name in ("other-v1", "unassigned-v1", "no-such-model"):
        response = create(name)
        assert response.status_code == 400, response.json()
        assert response.json() == {"model_version": [f"{name} is not a model of this project."]}
    assert not GenerationRequest.objects.exists()
    assert create("draft-v1").status_code == 201 and create("candidate-v1").status_code == 201


def test_another_projects_generation_is_the_same_404_as_a_missing_one(
    api_client_for, engineer, models
):
    other = ProjectFactory()
    elsewhere = _queued(other, None, model_version=ModelVersionFactory())
    missing = elsewhere.pk + 1000
    client = api_client_for(engineer)
    for method, suffix in (("get", "/"), ("post", "/retry")):
        theirs = getattr(client, method)(f"/api/v1/generations/{elsewhere.pk}{suffix}")
        nothing = getattr(client, method)(f"/api/v1/generations/{missing}{suffix}")
        assert theirs.status_code == nothing.status_code == 404
        assert theirs.json() == nothing.json() == {"detail": "No such generation request."}
