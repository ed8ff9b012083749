"""Malformed input at every labelling door answers 400 (404 for ids in URLs), stores nothing, and
leaves the task's pages working: NUL characters, lone surrogates, JSON nested thousands deep,
numbers too large for any field and ids beyond 64 bits."""

from dataclasses import dataclass
from types import SimpleNamespace

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from annotations.models import (
    Conversation,
    Message,
    PromptReport,
    Ranking,
    RankingSet,
)
from annotations.services import conversation_start
from labelling.autosave import task_autosave
from labelling.claims import task_claim_next
from labelling.models import Task, TaskSkip
from tests.factories import candidate_ids, make_ranking_set

pytestmark = pytest.mark.django_db

JSON = "application/json"
DEEP = "[" * 100_000 + "]" * 100_000
BIG_ID = 2**64


@dataclass(frozen=True)
class Bad:
    """A bad value for one slot of a request: as a JSON literal, and as a form field if it can be
    sent as one (a form cannot carry a lone surrogate, and nesting means nothing in a form)."""

    name: str
    slot: str  # "text", "number" or "id"
    literal: str
    form: str | None

    def __str__(self) -> str:
        return self.name


BAD_VALUES = [
    Bad("nul", "text", '"a\\u0000b"', "a\x00b"),
    Bad("lone-surrogate", "text", '"\\ud800"', None),
    Bad("nested-deep", "text", DEEP, None),
    Bad("number-1e400", "number", "1e400", "1e400"),
    Bad("id-2**64", "id", str(BIG_ID), str(BIG_ID)),
]


def lit(bad: Bad, slot: str, default: str) -> str:
    return bad.literal if bad.slot == slot else default


def raw(bad: Bad, slot: str, default: str) -> str:
    return bad.form if bad.slot == slot else default


@pytest.fixture
def ctx(project, trainer, lead, api_client_for):
    _, prompt = conversation_start(
        project=project, text="A prompt", source=Conversation.Source.PROMPT
    )
    demo = task_claim_next(project=project, user=trainer, kind="demonstration")
    assert demo.message_id == prompt.pk
    ranking_set = make_ranking_set(project)
    rank = task_claim_next(project=project, user=trainer, kind="ranking")
    assert rank.ranking_set_id == ranking_set.pk
    # Work in progress that a refused autosave must leave as it was.
    task_autosave(task_id=demo.pk, user=trainer, data={"turns": [], "editor": "w"})
    task_autosave(task_id=rank.pk, user=trainer, data={"user": trainer.pk, "elapsed_ms": 5})
    client, lead_client = Client(), Client()
    client.force_login(trainer)
    lead_client.force_login(lead)
    return SimpleNamespace(
        project=project,
        demo=demo,
        rank=rank,
        candidates=candidate_ids(ranking_set),
        client=client,
        lead_client=lead_client,
        api=api_client_for(trainer),
    )


def _demo_state(bad: Bad) -> str:
    text, draft_id = lit(bad, "text", '"An answer"'), lit(bad, "id", "null")
    turn = f'{{"role": "assistant", "content": {text}, "draft_id": {draft_id}}}'
    number = lit(bad, "number", "2")
    return f'{{"turns": [{turn}], "editor_draft_id": {number}}}'


def _ranking_body(ctx, bad: Bad) -> str:
    first, *rest = ctx.candidates
    groups = ", ".join([f"[{lit(bad, 'id', str(first))}]", *(f"[{c}]" for c in rest)])
    rewrite = lit(bad, "text", '"A better reply"')
    time = lit(bad, "number", "1000")
    return f'{{"order": [{groups}], "rewrite": {{"content": {rewrite}}}, "time_spent_ms": {time}}}'


# Each door: what it needs and how to send a bad value through it. `slots` are the slots a bad
# value may take there; `form` marks doors whose text travels as a plain form field.
def api_task_next(ctx, bad):
    body = '{{"kind": {}}}'.format(lit(bad, "text", '"demonstration"'))
    return ctx.api.post(f"/api/v1/projects/{ctx.project.slug}/tasks/next", body, content_type=JSON)


def api_autosave(ctx, bad):
    body = f'{{"data": {_demo_state(bad)}}}'
    return ctx.api.post(f"/api/v1/tasks/{ctx.demo.pk}/autosave", body, content_type=JSON)


def api_submit_demonstration(ctx, bad):
    return ctx.api.post(f"/api/v1/tasks/{ctx.demo.pk}/submit", _demo_state(bad), content_type=JSON)


def api_submit_ranking(ctx, bad):
    return ctx.api.post(
        f"/api/v1/tasks/{ctx.rank.pk}/submit", _ranking_body(ctx, bad), content_type=JSON
    )


def api_skip(ctx, bad):
    body = '{{"reason": {}, "report": "nonsense"}}'.format(lit(bad, "text", '"Off topic"'))
    return ctx.api.post(f"/api/v1/tasks/{ctx.demo.pk}/skip", body, content_type=JSON)


def page_demonstration_autosave(ctx, bad):
    url = reverse("demonstration-autosave", args=[ctx.demo.pk])
    return ctx.client.post(url, _demo_state(bad), content_type=JSON)


def page_demonstration_draft(ctx, bad):
    url = reverse("demonstration-draft", args=[ctx.demo.pk])
    return ctx.client.post(url, {"state": _demo_state(bad)}, HTTP_HX_REQUEST="true")


def page_demonstration_submit(ctx, bad):
    url = reverse("demonstration-submit", args=[ctx.demo.pk])
    return ctx.client.post(url, {"state": _demo_state(bad)})


def page_demonstration_skip(ctx, bad):
    url = reverse("demonstration-skip", args=[ctx.demo.pk])
    return ctx.client.post(url, {"reason": raw(bad, "text", "Off topic"), "report": "nonsense"})


def page_ranking_autosave(ctx, bad):
    url = reverse("rank-autosave", args=[ctx.rank.pk])
    return ctx.client.post(url, _ranking_body(ctx, bad), content_type=JSON)


def page_ranking_submit(ctx, bad):
    first, *rest = ctx.candidates
    order = "[[{}], {}]".format(lit(bad, "id", str(first)), ", ".join(f"[{c}]" for c in rest))
    form = {
        "order": order,
        "rewrite": raw(bad, "text", "A better reply"),
        "time_spent_ms": raw(bad, "number", "1000"),
    }
    return ctx.client.post(reverse("rank-task", args=[ctx.rank.pk]), form)


def page_ranking_skip(ctx, bad):
    url = reverse("rank-skip", args=[ctx.rank.pk])
    return ctx.client.post(url, {"skip_reason": raw(bad, "text", "Unsure")})


def page_import(ctx, bad):
    line = '{{"prompt": {}}}'.format(lit(bad, "text", '"Hello"'))
    upload = SimpleUploadedFile("p.jsonl", line.encode(), content_type="application/jsonl")
    url = reverse("prompt-import", args=[ctx.project.slug])
    return ctx.lead_client.post(url, {"file": upload, "format": ""})


DOORS = {
    # door: (send, slots that door has, whether its text slot is a plain form field)
    "api-task-next": (api_task_next, {"text"}, False),
    "api-autosave": (api_autosave, {"text", "number", "id"}, False),
    "api-submit-demonstration": (api_submit_demonstration, {"text", "number", "id"}, False),
    "api-submit-ranking": (api_submit_ranking, {"text", "number", "id"}, False),
    "api-skip": (api_skip, {"text"}, False),
    "demonstration-autosave": (page_demonstration_autosave, {"text", "number", "id"}, False),
    "demonstration-draft": (page_demonstration_draft, {"text", "number", "id"}, False),
    "demonstration-submit": (page_demonstration_submit, {"text", "number", "id"}, False),
    "demonstration-skip": (page_demonstration_skip, {"text"}, True),
    "rank-autosave": (page_ranking_autosave, {"text", "number", "id"}, False),
    "rank-submit": (page_ranking_submit, {"text", "number", "id"}, True),
    "rank-skip": (page_ranking_skip, {"text"}, True),
    "import": (page_import, {"text"}, False),
}
CASES = [
    pytest.param(door, bad, id=f"{door}-{bad}")
    for door, (_, slots, form) in DOORS.items()
    for bad in BAD_VALUES
    if bad.slot in slots and not (form and bad.slot == "text" and bad.form is None)
]


def stored() -> dict:
    """Everything a request could have written."""
    counts = {
        model.__name__: model.objects.count()
        for model in (Conversation, Message, PromptReport, Ranking, RankingSet, TaskSkip)
    }
    tasks = list(
        Task.objects.order_by("pk").values_list(
            "pk", "state", "assignee_id", "autosave", "skip_reason", "result"
        )
    )
    return {"counts": counts, "tasks": tasks}


def assert_pages_render(ctx) -> None:
    for url in (
        reverse("demonstration", args=[ctx.demo.pk]),
        reverse("rank-task", args=[ctx.rank.pk]),
    ):
        response = ctx.client.get(url)
        assert response.status_code == 200, url
    for task in (ctx.demo, ctx.rank):
        response = ctx.api.get(f"/api/v1/tasks/{task.pk}/")
        assert response.status_code == 200
        response.json()


@pytest.mark.parametrize("door, bad", CASES)
def test_a_bad_value_is_refused_with_400_and_stores_nothing(ctx, door, bad):
    before = stored()
    send = DOORS[door][0]
    response = send(ctx, bad)
    assert response.status_code == 400, response.content[:300]
    assert stored() == before
    assert_pages_render(ctx)


def test_the_doors_take_the_same_requests_with_good_values(ctx):
    """The requests above differ from accepted ones only by the bad value."""
    good = Bad("none", "none", "", "")
    assert page_demonstration_autosave(ctx, good).status_code == 200
    assert page_ranking_autosave(ctx, good).status_code == 200
    assert api_autosave(ctx, good).status_code == 200
    assert page_ranking_submit(ctx, good).status_code == 302
    assert Ranking.objects.get().rewrite.text == "A better reply"
    assert api_submit_demonstration(ctx, good).status_code == 200
    assert Task.objects.get(pk=ctx.demo.pk).state == Task.State.DONE


URL_IDS = [
    ("get", "/demonstrations/{big}/"),
    ("post", "/demonstrations/{big}/autosave"),
    ("post", "/demonstrations/{big}/draft"),
    ("get", "/demonstrations/{demo}/draft/{big}"),
    ("post", "/demonstrations/{big}/submit"),
    ("post", "/demonstrations/{big}/skip"),
    ("get", "/tasks/{big}/rank"),
    ("post", "/tasks/{big}/rank"),
    ("post", "/tasks/{big}/rank/skip"),
    ("post", "/tasks/{big}/rank/autosave"),
    ("get", "/api/v1/tasks/{big}/"),
    ("post", "/api/v1/tasks/{big}/autosave"),
    ("post", "/api/v1/tasks/{big}/submit"),
    ("post", "/api/v1/tasks/{big}/skip"),
]


@pytest.mark.parametrize("method, path", URL_IDS)
@pytest.mark.parametrize("big", [2**63, 2**64, 10**40])
def test_ids_beyond_64_bits_in_urls_are_404(ctx, method, path, big):
    before = stored()
    url = path.format(big=big, demo=ctx.demo.pk)
    client = ctx.api if url.startswith("/api/") else ctx.client
    response = (
        getattr(client, method)(url, "{}", content_type=JSON)
        if method == "post"
        else client.get(url)
    )
    assert response.status_code == 404
    assert stored() == before


def test_the_largest_64_bit_id_is_still_a_plain_404(ctx, lead):
    largest = 2**63 - 1
    assert ctx.client.get(f"/demonstrations/{largest}/").status_code == 404
    assert ctx.api.get(f"/api/v1/tasks/{largest}/").status_code == 404
    response = ctx.lead_client.post(
        f"/p/{ctx.project.slug}/reviews/{2**64}/decide/", {"decision": "uphold"}
    )
    assert response.status_code == 404
