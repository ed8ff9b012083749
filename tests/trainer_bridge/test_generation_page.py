"""The generations page's form beyond a prompt (top_p, top_k, seed, repetition penalty, purpose,
earlier turns) and its request list, paginated and filtered by state, purpose and model."""

import pytest

from annotations.selectors import thread_to
from annotations.services import conversation_start
from tests.factories import ModelVersionFactory
from trainer_bridge.models import GenerationRequest

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def _turns(*turns, deleted=()):
    data = {
        "context-TOTAL_FORMS": str(len(turns)),
        "context-INITIAL_FORMS": "0",
        "context-MIN_NUM_FORMS": "0",
        "context-MAX_NUM_FORMS": "50",
    }
    for index, (role, content) in enumerate(turns):
        data[f"context-{index}-role"] = role
        data[f"context-{index}-content"] = content
        if index in deleted:
            data[f"context-{index}-DELETE"] = "on"
    return data


def _requests(project, candidate_model, count, **fields):
    _, context = conversation_start(project=project, text="Hello?", source="api")
    return GenerationRequest.objects.bulk_create(
        GenerationRequest(project=project, context=context, model_version=candidate_model, **fields)
        for _ in range(count)
    )


def test_the_form_offers_what_the_api_offers(client, generations_url, engineer, candidate_model):
    client.force_login(engineer)
    page = client.get(generations_url).content.decode()
    for name in ("top_p", "top_k", "seed", "repetition_penalty", "purpose", "max_new_tokens"):
        assert f'name="{name}"' in page, name
    assert 'name="context-TOTAL_FORMS"' in page and 'name="context-0-content"' in page
    assert 'id="context-turn-template"' in page and "js/generations.js" in page


def test_sampling_fields_and_purpose_are_stored(client, generations_url, engineer, candidate_model):
    client.force_login(engineer)
    form = {
        "prompt": "Write a limerick.",
        "model_version": candidate_model.pk,
        "purpose": "draft",
        "n": 2,
        "top_p": 0.9,
        "top_k": 40,
        "seed": 7,
        "repetition_penalty": 1.1,
    }
    assert client.post(generations_url, form).status_code == 302
    generation = GenerationRequest.objects.get()
    assert generation.purpose == "draft"
    assert generation.params["top_p"] == 0.9 and generation.params["top_k"] == 40
    assert generation.params["seed"] == 7 and generation.params["repetition_penalty"] == 1.1


def test_a_bad_sampling_value_is_named_on_its_field(
    client, generations_url, engineer, candidate_model
):
    client.force_login(engineer)
    form = {"prompt": "Hi", "model_version": candidate_model.pk, "n": 1, "top_p": 1.5, "seed": -1}
    page = client.post(generations_url, form).content.decode()
    assert "1.5 is out of range; must be greater than 0 and at most 1" in page
    top_p_field = page[page.index('for="id_top_p"') : page.index('for="id_top_k"')]
    assert "1.5 is out of range" in top_p_field
    assert not GenerationRequest.objects.exists()


def test_earlier_turns_make_a_multi_turn_context(
    client, generations_url, engineer, candidate_model
):
    client.force_login(engineer)
    turns = _turns(
        ("system", "You are terse."),
        ("user", "Name a fruit."),
        ("user", "this one is left out"),
        ("assistant", "Apple."),
        ("user", "   "),  # blank: left out
        deleted={2},
    )
    form = {"prompt": "Another?", "model_version": candidate_model.pk, "n": 1, **turns}
    assert client.post(generations_url, form).status_code == 302
    generation = GenerationRequest.objects.get()
    thread = [(m.role, m.text) for m in thread_to(generation.context)]
    assert thread == [
        ("system", "You are terse."),
        ("user", "Name a fruit."),
        ("assistant", "Apple."),
        ("user", "Another?"),
    ]


def test_turns_out_of_order_are_refused_on_the_turn_and_the_prompt(
    client, generations_url, engineer, candidate_model
):
    client.force_login(engineer)
    form = {
        "prompt": "Hi",
        "model_version": candidate_model.pk,
        "n": 1,
        **_turns(("assistant", "I start."), ("user", "Then me.")),
    }
    page = client.post(generations_url, form).content.decode()
    assert "Earlier turn 1: An assistant turn cannot come as the first turn" in page
    assert "A user turn cannot come after a user turn" in page  # the prompt after a user turn
    assert not GenerationRequest.objects.exists()
    # Kept as typed, so nothing is lost.
    assert "Then me." in page


def test_an_earlier_turn_over_the_length_limit_is_named(
    client, generations_url, engineer, candidate_model
):
    client.force_login(engineer)
    long = "x" * (candidate_model.candidate_projects.first().max_message_chars + 1)
    form = {"prompt": "Hi", "model_version": candidate_model.pk, "n": 1, **_turns(("user", long))}
    page = client.post(generations_url, form).content.decode()
    assert "Earlier turn 1: The text has" in page
    assert not GenerationRequest.objects.exists()


def test_the_list_is_paginated(client, generations_url, engineer, candidate_model, project):
    _requests(project, candidate_model, 25)
    client.force_login(engineer)
    first = client.get(generations_url).content.decode()
    assert first.count('class="card generation"') == 20
    assert "25 requests; page 1 of 2." in first and 'href="?page=2"' in first
    second = client.get(generations_url, {"page": 2}).content.decode()
    assert second.count('class="card generation"') == 5 and 'href="?page=1"' in second
    # A page number that is not one shows the first page rather than failing.
    assert client.get(generations_url, {"page": "x"}).status_code == 200


def test_filters_by_state_purpose_and_model(
    client, generations_url, engineer, candidate_model, project
):
    other = ModelVersionFactory(name="candidate-v2")
    project.candidate_models.add(other)
    failed = _requests(project, candidate_model, 2, state="failed", purpose="candidates")
    drafts = _requests(project, other, 3, state="done", purpose="draft")
    _requests(project, candidate_model, 21, state="queued", purpose="candidates")
    client.force_login(engineer)

    page = client.get(generations_url, {"state": "failed"}).content.decode()
    assert page.count('class="card generation"') == 2
    assert all(f'id="generation-{g.pk}"' in page for g in failed)
    page = client.get(generations_url, {"purpose": "draft", "model": other.pk}).content.decode()
    assert page.count('class="card generation"') == 3
    assert all(f'id="generation-{g.pk}"' in page for g in drafts)
    assert (
        client.get(generations_url, {"model": candidate_model.pk, "purpose": "draft"})
        .content.decode()
        .count('class="card generation"')
        == 0
    )
    page = client.get(generations_url, {"state": "running"}).content.decode()
    assert "No requests match these filters." in page and "0 requests match" in page
    # The filters travel with the page links.
    page = client.get(generations_url, {"state": "queued"}).content.decode()
    assert "21 requests match the filters; page 1 of 2." in page
    assert 'href="?state=queued&amp;page=2"' in page


def test_htmx_filtering_returns_the_panel(
    client, generations_url, engineer, candidate_model, project
):
    _requests(project, candidate_model, 1, state="failed")
    client.force_login(engineer)
    panel = client.get(generations_url, {"state": "failed"}, **HTMX).content.decode()
    assert "<html" not in panel and 'id="generations-panel"' in panel
    assert panel.count('class="card generation"') == 1


def test_a_bad_filter_is_a_400_naming_the_field(client, generations_url, engineer, candidate_model):
    client.force_login(engineer)
    response = client.get(generations_url, {"state": "sleeping"})
    assert response.status_code == 400
    assert "State: Select a valid choice. sleeping is not one of the available choices." in (
        response.content.decode()
    )
    response = client.get(generations_url, {"model": "999999"})
    assert response.status_code == 400 and "Model: Select a valid choice." in (
        response.content.decode()
    )
    response = client.get(generations_url, {"model": "abc"})
    assert response.status_code == 400


def test_filters_need_the_generate_capability(client, generations_url, trainer, outsider):
    client.force_login(trainer)
    assert client.get(generations_url, {"state": "failed"}).status_code == 403
    client.force_login(outsider)
    assert client.get(generations_url, {"state": "failed"}).status_code == 404
