"""The demonstration pages: claiming, the page, autosave, drafts, submit and skip."""

import json
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from annotations.models import Conversation, Message, PromptReport
from annotations.services import conversation_start
from labelling.autosave import task_autosave
from labelling.claims import task_claim_next
from labelling.models import Task
from tests.factories import MembershipFactory, ModelVersionFactory, UserFactory
from trainer_bridge.models import GenerationOutput, GenerationRequest

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def _prompt(project, text):
    _, root = conversation_start(project=project, text=text, source=Conversation.Source.PROMPT)
    return root


def _claim(project, user) -> Task:
    return task_claim_next(project=project, user=user, kind="demonstration")


def _page(client, task):
    return client.get(reverse("demonstration", args=[task.pk]))


def _json_script(page: str, element_id: str):
    match = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', page)
    return json.loads(match[1])


def _turn(role, text, draft_id=None):
    return {"role": role, "content": text, "draft_id": draft_id}


@pytest.fixture
def draft_model(project):
    project.draft_model = ModelVersionFactory(name="tiny-draft")
    project.save(update_fields=["draft_model"])
    return project.draft_model


def test_annotating_members_see_the_button(client, project, trainer, lead, engineer):
    action = reverse("demonstration-next", args=["alpha"])
    for user, shown in ((trainer, True), (lead, True), (engineer, False)):
        client.force_login(user)
        for url in (reverse("home"), reverse("project-detail", args=["alpha"])):
            page = client.get(url).content.decode()
            assert (f'action="{action}"' in page) is shown, (user, url)
            assert ("Write a demonstration" in page) is shown


def test_the_button_claims_a_task_and_opens_it(client, project, trainer):
    prompt = _prompt(project, "Is <b>bold</b> a tag?")
    project.guidelines = "# Be kind\n\nAnswer **briefly**."
    project.save(update_fields=["guidelines"])
    client.force_login(trainer)
    response = client.post(reverse("demonstration-next", args=["alpha"]))
    task = Task.objects.get(kind="demonstration")
    assert response.status_code == 302
    assert response["Location"] == reverse("demonstration", args=[task.pk])
    assert task.message == prompt and task.assignee == trainer

    page = _page(client, task).content.decode()
    assert "<h1>Be kind</h1>" in page and "<strong>briefly</strong>" in page
    assert '<details class="card guidelines"' in page
    assert "Is &lt;b&gt;bold&lt;/b&gt; a tag?" in page and "<b>bold</b>" not in page
    assert "seed prompt · read-only" in page
    assert 'data-role="assistant"' in page and 'id="demo-next-role">Assistant<' in page
    config = _json_script(page, "demo-config")
    assert config["firstRole"] == "assistant" and config["maxChars"] == project.max_message_chars
    assert config["urls"]["autosave"] == reverse("demonstration-autosave", args=[task.pk])
    assert "js/demonstration.js" in page


def test_a_blank_task_starts_with_the_user(client, project, trainer):
    client.force_login(trainer)
    client.post(reverse("demonstration-next", args=["alpha"]))
    page = _page(client, Task.objects.get()).content.decode()
    assert "Blank start" in page and 'data-role="user"' in page


def test_outsiders_get_404_and_members_who_may_not_annotate_403(
    client, project, trainer, engineer, outsider
):
    task = _claim(project, trainer)
    urls = [
        reverse("demonstration", args=[task.pk]),
        reverse("demonstration-draft-status", args=[task.pk, 1]),
    ]
    posts = [
        reverse("demonstration-next", args=["alpha"]),
        reverse("demonstration-autosave", args=[task.pk]),
        reverse("demonstration-draft", args=[task.pk]),
        reverse("demonstration-submit", args=[task.pk]),
        reverse("demonstration-skip", args=[task.pk]),
    ]
    client.force_login(outsider)
    assert {client.get(url).status_code for url in urls} == {404}
    assert {client.post(url).status_code for url in posts} == {404}
    client.force_login(engineer)
    assert {client.get(url).status_code for url in urls} == {403}
    assert {client.post(url).status_code for url in posts} == {403}


def test_reopening_restores_the_autosave_exactly_and_escaped(client, project, trainer):
    _prompt(project, "Seed")
    task = _claim(project, trainer)
    saved = {
        "turns": [_turn("assistant", "Use <script>alert(1)</script> never"), _turn("user", "Ok")],
        "editor": "Half-written </textarea><b>reply</b>\nsecond line",
        "editor_draft_id": None,
    }
    task_autosave(task_id=task.pk, user=trainer, data=saved)
    client.force_login(trainer)
    page = _page(client, task).content.decode()
    assert _json_script(page, "demo-state") == saved
    assert "<script>alert(1)" not in page and "</textarea><b>" not in page
    assert "Half-written &lt;/textarea&gt;&lt;b&gt;reply&lt;/b&gt;\nsecond line</textarea>" in page
    assert 'data-role="assistant"' in page  # after a user turn the assistant speaks


def test_someone_elses_task_shows_nothing_of_their_work(client, project, trainer):
    task = _claim(project, trainer)
    task_autosave(task_id=task.pk, user=trainer, data={"turns": [], "editor": "secret draft"})
    other = MembershipFactory(project=project, user=UserFactory(username="otto")).user
    client.force_login(other)
    page = _page(client, task).content.decode()
    assert "You do not hold this task" in page and "secret draft" not in page


def test_autosave_view(client, project, trainer):
    task = _claim(project, trainer)
    url = reverse("demonstration-autosave", args=[task.pk])
    client.force_login(trainer)
    client.get(reverse("demonstration", args=[task.pk]))  # the page load is page 1
    state = {"turns": [_turn("user", "Hi")], "editor": "x", "page": 1, "seq": 2}
    response = client.post(url, state, content_type="application/json")
    answer = response.json()
    assert response.status_code == 200 and answer["stored"] and answer["page"] == 1
    assert answer["lease_expires_at"] and answer["revision"] == 1 and "state" not in answer
    task.refresh_from_db()
    assert task.autosave["turns"] == [_turn("user", "Hi")] and task.autosave["editor"] == "x"

    # The same page's older save, late: not stored, and nothing to tell the page.
    response = client.post(url, {**state, "seq": 1, "editor": "old"}, "application/json")
    assert response.status_code == 200 and not response.json()["stored"]
    assert "state" not in response.json()
    # What `navigator.sendBeacon` sends as the page goes: a form with the JSON in `data`.
    beacon = {"data": json.dumps({**state, "seq": 3, "editor": "xy"})}
    assert client.post(url, beacon).json()["stored"]
    asked = client.get(url, {"page": 1}).json()
    assert asked["revision"] == 2 and asked["writer_page"] == 1 and "state" not in asked
    assert "state" in client.get(url, {"page": 2}).json()  # another page's work comes with it
    task.refresh_from_db()
    assert task.autosave["editor"] == "xy" and task.autosave_seq == 3
    # A page number the task never gave out.
    response = client.post(url, {**state, "page": 9}, content_type="application/json")
    assert response.status_code == 400 and "page" in response.json()
    response = client.post(url, {"turns": "nope"}, content_type="application/json")
    assert response.status_code == 400 and "turns" in response.json()
    response = client.post(url, "{not json", content_type="application/json")
    assert response.status_code == 400


def test_draft_request_polls_and_then_offers_the_draft(client, project, trainer, draft_model):
    prompt = _prompt(project, "Why is the sky blue?")
    task = _claim(project, trainer)
    client.force_login(trainer)
    state = {"turns": [], "editor": ""}
    response = client.post(
        reverse("demonstration-draft", args=[task.pk]),
        {"state": json.dumps(state), "mode": "auto"},
        **HTMX,
    )
    assert response.status_code == 200
    request = GenerationRequest.objects.get()
    assert (request.context, request.purpose, request.requested_by) == (prompt, "draft", trainer)
    status_url = reverse("demonstration-draft-status", args=[task.pk, request.pk])
    fragment = response.content.decode()
    assert f'hx-get="{status_url}"' in fragment and 'hx-trigger="every 1s"' in fragment
    assert "<div hx-disable>" in fragment  # the shared status fragment inside does not poll too
    saved = json.loads(response["HX-Trigger"])["demo:saved"]
    assert saved["stored"] and saved["revision"] == 1
    # Asking again while it is queued, or automatically once it is done, gives the same one.
    client.post(reverse("demonstration-draft", args=[task.pk]), {"mode": "auto"}, **HTMX)
    assert GenerationRequest.objects.count() == 1

    draft = Message.objects.create(
        conversation=prompt.conversation,
        parent=prompt,
        role="assistant",
        text='Rayleigh "scattering" <i>mostly</i>.',
        depth=1,
        author_model=draft_model,
        is_synthetic=True,
    )
    GenerationOutput.objects.create(request=request, message=draft, output_index=0)
    GenerationRequest.objects.filter(pk=request.pk).update(state="done")
    fragment = client.get(status_url, **HTMX).content.decode()
    assert "hx-trigger" not in fragment.split("<div hx-disable>")[0]  # polling stops
    assert f'data-insert-draft="{draft.pk}"' in fragment
    assert (
        'data-draft-text="Rayleigh &quot;scattering&quot; &lt;i&gt;mostly&lt;/i&gt;."' in fragment
    )
    # On reload the page shows the draft for the point the dialogue has reached.
    assert f'data-insert-draft="{draft.pk}"' in _page(client, task).content.decode()
    # Another trainer cannot follow it.
    other = MembershipFactory(project=project, user=UserFactory(username="otto")).user
    client.force_login(other)
    assert client.get(status_url, **HTMX).status_code == 404


def test_draft_request_explains_why_there_is_none(client, project, trainer, draft_model):
    task = _claim(project, trainer)  # blank: the user speaks first
    client.force_login(trainer)
    response = client.post(reverse("demonstration-draft", args=[task.pk]), **HTMX)
    assert response.status_code == 200
    assert "Drafts are for assistant turns" in response.content.decode()
    assert not GenerationRequest.objects.exists()


def test_submit_stores_and_shows_the_demonstration(client, project, trainer):
    prompt = _prompt(project, "Seed question?")
    task = _claim(project, trainer)
    client.force_login(trainer)
    state = {"turns": [_turn("assistant", "An answer.")], "editor": "", "version": 3, "writer": "w"}
    url = reverse("demonstration-submit", args=[task.pk])
    response = client.post(url, {"state": json.dumps(state)})
    assert response.status_code == 302
    assert response["Location"] == reverse("demonstration", args=[task.pk])
    task.refresh_from_db()
    assert task.state == "done"
    reply = Message.objects.get(pk=task.result["messages"][0])
    assert reply.parent == prompt and reply.author_user == trainer

    # A second click, or a retry after a network error, finds it done: still one reply.
    assert client.post(url, {"state": json.dumps(state)}).status_code == 302
    assert Message.objects.filter(parent=prompt).count() == 1
    page = client.get(response["Location"]).content.decode()
    assert "Submitted" in page and "An answer." in page and "written by you" in page


@pytest.mark.parametrize(
    ("turns", "message"),
    [
        ([_turn("user", "Hi")], "The dialogue must end with an assistant turn."),
        ([_turn("user", " "), _turn("assistant", "Hi")], "Turn 1: The text is empty."),
        ([_turn("user", "Hi"), _turn("assistant", "y" * 60)], "Turn 2: The text has 60 characters"),
    ],
)
def test_submit_refusals_are_shown_on_the_page(client, project, trainer, turns, message):
    project.max_message_chars = 50
    project.save(update_fields=["max_message_chars"])
    task = _claim(project, trainer)
    client.force_login(trainer)
    state = {"turns": turns, "editor": "", "version": 1, "writer": "w"}
    response = client.post(
        reverse("demonstration-submit", args=[task.pk]), {"state": json.dumps(state)}
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "Not submitted; nothing was stored." in page and message in page
    assert not Message.objects.exists()
    # The work is kept: the page comes back with it.
    assert _json_script(page, "demo-state")["turns"] == turns


def test_submitting_a_task_one_does_not_hold_is_refused_on_the_page(client, project, trainer):
    task = _claim(project, trainer)
    other = MembershipFactory(project=project, user=UserFactory(username="otto")).user
    client.force_login(other)
    state = {"turns": [_turn("user", "a"), _turn("assistant", "b")], "writer": "x"}
    response = client.post(
        reverse("demonstration-submit", args=[task.pk]), {"state": json.dumps(state)}
    )
    assert response.status_code == 409
    assert "You do not hold this task" in response.content.decode()
    assert not Message.objects.exists()


def test_skip_with_a_report_goes_on_to_another_task(client, project, trainer):
    prompt = _prompt(project, "Nonsense prompt")
    second = _prompt(project, "A fine prompt")
    task = _claim(project, trainer)
    client.force_login(trainer)
    response = client.post(
        reverse("demonstration-skip", args=[task.pk]),
        {"reason": "makes no sense", "report": "nonsense"},
        follow=True,
    )
    report = PromptReport.objects.get()
    assert (report.message, report.reason, report.note) == (prompt, "nonsense", "makes no sense")
    following = Task.objects.get(assignee=trainer, state="assigned")
    assert following.message == second
    assert response.redirect_chain[-1][0] == reverse("demonstration", args=[following.pk])
    assert "a lead will review the prompt" in response.content.decode()


def test_skip_with_an_unknown_report_reason_is_shown_on_the_page(client, project, trainer):
    _prompt(project, "Seed")
    task = _claim(project, trainer)
    client.force_login(trainer)
    response = client.post(reverse("demonstration-skip", args=[task.pk]), {"report": "boring"})
    assert response.status_code == 400 and "Unknown reason" in response.content.decode()
    task.refresh_from_db()
    assert task.state == "assigned"


def test_the_draft_status_fragment_loads_every_draft_with_one_query(
    client, project, trainer, draft_model
):
    prompt = _prompt(project, "Why is the sky blue?")
    task = _claim(project, trainer)
    client.force_login(trainer)
    client.post(reverse("demonstration-draft", args=[task.pk]), {"mode": "auto"}, **HTMX)
    request = GenerationRequest.objects.get()
    GenerationRequest.objects.filter(pk=request.pk).update(state="done")
    url = reverse("demonstration-draft-status", args=[task.pk, request.pk])

    def add_drafts(first: int, count: int) -> None:
        for index in range(first, first + count):
            draft = Message.objects.create(
                conversation=prompt.conversation,
                parent=prompt,
                role="assistant",
                text=f"Draft number {index}",
                depth=1,
                author_model=draft_model,
                is_synthetic=True,
            )
            GenerationOutput.objects.create(request=request, message=draft, output_index=index)

    def queries_for_fragment() -> tuple[list[str], str]:
        with CaptureQueriesContext(connection) as captured:
            fragment = client.get(url, **HTMX).content.decode()
        return [query["sql"] for query in captured], fragment

    add_drafts(0, 1)
    with_one, _ = queries_for_fragment()
    add_drafts(1, 4)
    with_five, fragment = queries_for_fragment()
    assert all(f'data-draft-text="Draft number {i}"' in fragment for i in range(5))
    assert len(with_five) == len(with_one)  # not one more query per draft
    # The drafts and their texts come in one query, read by both lists of the fragment.
    outputs = [sql for sql in with_five if "generationoutput" in sql.lower()]
    assert len(outputs) == 1 and "annotations_message" in outputs[0].lower()
