"""Around the demonstration editor: guidelines folded after the first visit and cut to the
part for demonstrations, the Markdown preview of a turn, the lease's end on the page."""

import datetime as dt

import pytest
from django.urls import reverse

from annotations.models import Conversation
from annotations.services import conversation_start
from labelling.claims import task_claim_next, task_skip
from labelling.models import Task
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

GUIDELINES = (
    "# Rules\n\nBe kind.\n\n## Writing demonstrations\n\nPlay both sides.\n\n"
    "## When ranking replies\n\nOrder them best first."
)


def _task(project, user, text="A prompt?") -> Task:
    conversation_start(project=project, text=text, source=Conversation.Source.PROMPT)
    return task_claim_next(project=project, user=user, kind="demonstration")


@pytest.fixture
def guided(project):
    project.guidelines = GUIDELINES
    project.save(update_fields=["guidelines"])
    return project


def _guidelines_tag(page: str) -> str:
    start = page.index('<details class="card guidelines"')
    return page[start : page.index(">", start) + 1]


def test_guidelines_open_on_the_first_visit_only(client, guided, trainer):
    task = _task(guided, trainer)
    client.force_login(trainer)
    url = reverse("demonstration", args=[task.pk])
    assert " open" in _guidelines_tag(client.get(url).content.decode())
    assert " open" not in _guidelines_tag(client.get(url).content.decode())
    # Another task of the same project: still folded. Per project: another project's opens.
    task_skip(task_id=task.pk, user=trainer)
    second = _task(guided, trainer, "Another prompt?")
    page = client.get(reverse("demonstration", args=[second.pk])).content.decode()
    assert " open" not in _guidelines_tag(page)
    from tests.factories import ProjectFactory

    beta = ProjectFactory(slug="beta", name="Beta", guidelines="# Beta rules")
    MembershipFactory(project=beta, user=trainer)
    other = _task(beta, trainer)
    assert " open" in _guidelines_tag(
        client.get(reverse("demonstration", args=[other.pk])).content.decode()
    )


def test_guidelines_are_remembered_per_user(client, guided, trainer):
    task = _task(guided, trainer)
    client.force_login(trainer)
    client.get(reverse("demonstration", args=[task.pk]))
    colleague = MembershipFactory(project=guided, user=UserFactory(username="otto")).user
    theirs = _task(guided, colleague, "Theirs?")
    client.force_login(colleague)  # a new session
    page = client.get(reverse("demonstration", args=[theirs.pk])).content.decode()
    assert " open" in _guidelines_tag(page)


def test_the_page_shows_the_part_for_demonstrations_and_offers_the_rest(client, guided, trainer):
    task = _task(guided, trainer)
    client.force_login(trainer)
    page = client.get(reverse("demonstration", args=[task.pk])).content.decode()
    part = page[page.index('<details class="card guidelines"') : page.index("guidelines-all")]
    assert "Play both sides." in part and "Be kind." in part
    assert "Order them best first." not in part
    assert "Guidelines for demonstrations" in part
    assert "Order them best first." in page  # in "All the project's guidelines"


def test_the_page_shows_the_lease_end_and_loads_the_extras(client, project, trainer):
    task = _task(project, trainer)
    client.force_login(trainer)
    page = client.get(reverse("demonstration", args=[task.pk])).content.decode()
    task.refresh_from_db()
    stamp = task.lease_expires_at.astimezone(dt.UTC)
    assert (
        f'<span id="demo-lease"><time datetime="{stamp.isoformat().replace("+00:00", "Z")}">'
        f"{stamp:%Y-%m-%d %H:%M} UTC</time></span>"
    ) in page
    assert 'id="demo-lease-left"' in page
    assert "js/demonstration_extras.js" in page
    assert 'name="content"' in page and reverse("demonstration-preview", args=[task.pk]) in page


def test_preview_renders_markdown_and_sanitises(client, project, trainer):
    task = _task(project, trainer)
    client.force_login(trainer)
    url = reverse("demonstration-preview", args=[task.pk])
    text = "**Bold** and `code`\n\n<script>alert(1)</script> [x](javascript:alert(1))"
    response = client.post(url, {"content": text}, HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert response.status_code == 200
    assert "<strong>Bold</strong>" in body and "<code>code</code>" in body
    assert "<script>" not in body and "javascript:" not in body
    assert "Nothing to preview" in client.post(url, {"content": "  "}).content.decode()
    assert client.get(url).status_code == 405


def test_preview_of_a_turn_over_the_limit_is_a_400_naming_the_field(client, project, trainer):
    task = _task(project, trainer)
    client.force_login(trainer)
    url = reverse("demonstration-preview", args=[task.pk])
    response = client.post(url, {"content": "x" * (project.max_message_chars + 1)})
    assert response.status_code == 400
    assert "content:" in response.content.decode()


def test_preview_access_matrix(client, project, trainer, engineer, outsider):
    task = _task(project, trainer)
    url = reverse("demonstration-preview", args=[task.pk])
    assert client.post(url, {"content": "x"}).status_code == 302  # to the login page
    for user, expected in ((engineer, 403), (outsider, 404), (trainer, 200)):
        client.force_login(user)
        assert client.post(url, {"content": "x"}).status_code == expected, user
    assert client.post(reverse("demonstration-preview", args=[999999])).status_code == 404
