"""The generations page, a request's live status fragment and its retry button."""

import re

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from annotations.models import Message
from trainer_bridge.generation import generation_request_from_messages
from trainer_bridge.models import GenerationOutput, GenerationRequest

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def _queued(project, candidate_model, user, text="Hello?"):
    return generation_request_from_messages(
        project=project,
        messages=[{"role": "user", "content": text}],
        model_version=candidate_model,
        purpose="candidates",
        n=2,
        requested_by=user,
    )


def _status(client, generation, **extra):
    return client.get(reverse("generation-status", args=[generation.pk]), **extra)


@pytest.mark.parametrize("role", ["engineer", "lead"])
def test_page_is_for_members_who_may_generate(
    client, request, generations_url, candidate_model, role
):
    client.force_login(request.getfixturevalue(role))
    response = client.get(generations_url)
    assert response.status_code == 200
    page = response.content.decode()
    assert 'name="prompt"' in page and "csrfmiddlewaretoken" in page
    assert f'hx-post="{generations_url}"' in page
    assert f'<option value="{candidate_model.pk}">candidate-v1</option>' in page


def test_page_is_403_for_trainers_and_404_for_outsiders(client, generations_url, trainer, outsider):
    client.force_login(trainer)
    assert client.get(generations_url).status_code == 403
    client.force_login(outsider)
    assert client.get(generations_url).status_code == 404
    client.logout()
    assert client.get(generations_url).status_code == 302


def test_project_page_links_to_generations_for_those_who_may_generate(
    client, project, generations_url, engineer, trainer
):
    client.force_login(engineer)
    assert (
        generations_url
        in client.get(reverse("project-detail", args=[project.slug])).content.decode()
    )
    client.force_login(trainer)
    assert (
        generations_url
        not in client.get(reverse("project-detail", args=[project.slug])).content.decode()
    )


def test_form_post_queues_a_request_and_redirects(
    client, generations_url, engineer, candidate_model, django_capture_on_commit_callbacks, mocker
):
    delay = mocker.patch("trainer_bridge.tasks.generate.delay")
    client.force_login(engineer)
    form = {
        "prompt": "Write a limerick.",
        "model_version": candidate_model.pk,
        "n": 3,
        "temperature": 0.5,
        "max_new_tokens": 32,
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(generations_url, form)

    assert response.status_code == 302 and response["Location"] == generations_url
    generation = GenerationRequest.objects.get()
    delay.assert_called_once_with(generation.pk)
    assert generation.state == "queued" and generation.n == 3
    assert generation.params["temperature"] == 0.5 and generation.params["max_new_tokens"] == 32
    assert generation.context.text == "Write a limerick." and generation.requested_by == engineer
    page = client.get(generations_url).content.decode()
    assert f'id="generation-{generation.pk}"' in page and "is queued" in page


def test_htmx_post_returns_the_panel_with_the_new_request(
    client, generations_url, lead, candidate_model
):
    client.force_login(lead)
    response = client.post(
        generations_url, {"prompt": "Hi", "model_version": candidate_model.pk, "n": 1}, **HTMX
    )
    assert response.status_code == 200
    panel = response.content.decode()
    generation = GenerationRequest.objects.get()
    assert "<html" not in panel and 'id="generations-panel"' in panel
    assert f'id="generation-{generation.pk}"' in panel and 'data-state="queued"' in panel
    # The form comes back empty and focused, ready for the next prompt.
    assert re.search(r"<textarea[^>]*autofocus[^>]*>\s*</textarea>", panel)


def test_service_errors_show_on_the_form_field(
    client, generations_url, engineer, candidate_model, project
):
    client.force_login(engineer)
    too_many = project.max_generations_per_request + 1
    response = client.post(
        generations_url,
        {"prompt": "Hi", "model_version": candidate_model.pk, "n": too_many, "temperature": -1},
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "-1.0 is out of range" in page and f"n is {too_many}" in page
    assert not GenerationRequest.objects.exists()


def test_form_post_needs_the_csrf_token(generations_url, engineer, candidate_model):
    client = Client(enforce_csrf_checks=True)
    client.force_login(engineer)
    form = {"prompt": "Hi", "model_version": candidate_model.pk, "n": 1}
    assert client.post(generations_url, form).status_code == 403
    assert not GenerationRequest.objects.exists()

    client.get(generations_url)
    token = client.cookies["csrftoken"].value
    assert client.post(generations_url, {**form, "csrfmiddlewaretoken": token}).status_code == 302
    assert GenerationRequest.objects.count() == 1


def test_queued_fragment_shows_its_position_and_polls(client, project, candidate_model, engineer):
    _queued(project, candidate_model, engineer, text="First")
    second = _queued(project, candidate_model, engineer, text="Second")
    client.force_login(engineer)
    response = _status(client, second, **HTMX)
    assert response.status_code == 200
    fragment = response.content.decode()
    assert "<html" not in fragment
    assert 'data-state="queued"' in fragment and "position 2 in the queue" in fragment
    assert f'hx-get="{reverse("generation-status", args=[second.pk])}"' in fragment
    assert 'hx-trigger="every 1s"' in fragment and 'hx-swap="outerHTML"' in fragment


def test_running_fragment_says_since_when_and_keeps_polling(
    client, project, candidate_model, engineer
):
    generation = _queued(project, candidate_model, engineer)
    started = timezone.now().replace(hour=9, minute=41, second=7)
    GenerationRequest.objects.filter(pk=generation.pk).update(
        state="running", started_at=started, attempts=1
    )
    client.force_login(engineer)
    fragment = _status(client, generation, **HTMX).content.decode()
    assert 'data-state="running"' in fragment and "Running since" in fragment
    assert "09:41:07" in fragment and 'hx-trigger="every 1s"' in fragment


def test_done_fragment_shows_escaped_outputs_and_stops_polling(
    client, project, candidate_model, engineer
):
    generation = _queued(project, candidate_model, engineer)
    now = timezone.now()
    GenerationRequest.objects.filter(pk=generation.pk).update(
        state="done", started_at=now, finished_at=now, attempts=1, completion_tokens=9
    )
    context = generation.context
    for index, text in enumerate(["<script>alert('x')</script>", "Line one\nline two & more"]):
        reply = Message.objects.create(
            conversation_id=context.conversation_id,
            parent=context,
            depth=1,
            role="assistant",
            text=text,
            author_model=candidate_model,
            is_synthetic=True,
        )
        GenerationOutput.objects.create(request=generation, message=reply, output_index=index)
    client.force_login(engineer)
    fragment = _status(client, generation, **HTMX).content.decode()
    assert 'data-state="done"' in fragment
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in fragment
    assert "<script>" not in fragment
    assert "Line one\nline two &amp; more" in fragment
    assert "hx-trigger" not in fragment and "hx-get" not in fragment


def test_failed_fragment_shows_the_error_and_a_retry_button(
    client, project, candidate_model, engineer
):
    generation = _queued(project, candidate_model, engineer)
    GenerationRequest.objects.filter(pk=generation.pk).update(
        state="failed", error="Out of memory <b>twice</b>", attempts=3, finished_at=timezone.now()
    )
    client.force_login(engineer)
    fragment = _status(client, generation, **HTMX).content.decode()
    retry_url = reverse("generation-retry", args=[generation.pk])
    assert 'data-state="failed"' in fragment and "after 3 attempts" in fragment
    assert "Out of memory &lt;b&gt;twice&lt;/b&gt;" in fragment
    assert f'hx-post="{retry_url}"' in fragment and ">Retry</button>" in fragment
    assert "hx-trigger" not in fragment


def test_status_without_htmx_is_a_page_with_the_context(client, project, candidate_model, engineer):
    generation = _queued(project, candidate_model, engineer, text="Tell me <more>")
    client.force_login(engineer)
    page = _status(client, generation).content.decode()
    assert "<html" in page and "Tell me &lt;more&gt;" in page
    assert f'id="generation-{generation.pk}"' in page


def test_status_visibility(client, project, candidate_model, engineer, trainer, outsider):
    by_engineer = _queued(project, candidate_model, engineer)
    by_trainer = _queued(project, candidate_model, trainer)
    client.force_login(trainer)
    assert _status(client, by_trainer, **HTMX).status_code == 200
    assert _status(client, by_engineer, **HTMX).status_code == 404
    client.force_login(outsider)
    assert _status(client, by_trainer, **HTMX).status_code == 404


def test_retry_through_the_view_requeues(
    client, project, candidate_model, engineer, django_capture_on_commit_callbacks, mocker
):
    delay = mocker.patch("trainer_bridge.tasks.generate.delay")
    generation = _queued(project, candidate_model, engineer)
    GenerationRequest.objects.filter(pk=generation.pk).update(
        state="failed", error="boom", attempts=3, finished_at=timezone.now()
    )
    client.force_login(engineer)
    url = reverse("generation-retry", args=[generation.pk])
    assert client.get(url).status_code == 405

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, **HTMX)

    assert response.status_code == 200
    fragment = response.content.decode()
    assert 'data-state="queued"' in fragment and 'hx-trigger="every 1s"' in fragment
    generation.refresh_from_db()
    assert generation.state == "queued" and generation.attempts == 0 and generation.error == ""
    delay.assert_called_once_with(generation.pk)
    # A second click finds it queued: nothing to retry.
    assert client.post(url, **HTMX).status_code == 409


def test_retry_without_htmx_redirects_to_the_page(
    client, project, candidate_model, lead, generations_url
):
    generation = _queued(project, candidate_model, lead)
    GenerationRequest.objects.filter(pk=generation.pk).update(state="failed", error="boom")
    client.force_login(lead)
    response = client.post(reverse("generation-retry", args=[generation.pk]))
    assert response.status_code == 302 and response["Location"] == generations_url
    generation.refresh_from_db()
    assert generation.state == "queued"


def test_retry_needs_the_generate_capability(client, project, candidate_model, trainer, outsider):
    generation = _queued(project, candidate_model, trainer)
    GenerationRequest.objects.filter(pk=generation.pk).update(state="failed", error="boom")
    url = reverse("generation-retry", args=[generation.pk])
    client.force_login(trainer)
    assert client.post(url, **HTMX).status_code == 403
    client.force_login(outsider)
    assert client.post(url, **HTMX).status_code == 404
    generation.refresh_from_db()
    assert generation.state == "failed"
