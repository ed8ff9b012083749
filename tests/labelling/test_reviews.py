"""The leads' review queue page: listing reported prompts and deciding on them."""

import pytest
from django.test import Client
from django.urls import reverse

from annotations.models import PromptReport
from annotations.reports import prompt_report_create
from annotations.services import conversation_start
from tests.factories import MembershipFactory, ProjectFactory

pytestmark = pytest.mark.django_db

QUEUE = reverse("prompt-reviews", args=["alpha"])


def prompt(project, text):
    return conversation_start(project=project, text=text, source="prompt")[1]


def report_on(message, reporter=None, reason="harmful", note=""):
    return prompt_report_create(
        project=message.conversation.project,
        message=message,
        reporter=reporter,
        reason=reason,
        note=note,
    )


def decide_url(report):
    return reverse("prompt-report-decide", args=[report.project.slug, report.pk])


# --- The queue page -----------------------------------------------------------------------------


def test_queue_lists_open_reports_with_the_prompt_escaped(client, project, trainer, lead):
    report = report_on(
        prompt(project, "Say <script>alert(1)</script>\nplease"),
        trainer,
        "pii",
        note="has an <b>address</b>",
    )
    decided = report_on(prompt(project, "Old one"), trainer)
    PromptReport.objects.filter(pk=decided.pk).update(state="dismissed")

    client.force_login(lead)
    response = client.get(QUEUE)
    assert response.status_code == 200
    page = response.content.decode()
    assert "Say &lt;script&gt;alert(1)&lt;/script&gt;<br>please" in page
    assert "<script>alert(1)" not in page
    assert "has an &lt;b&gt;address&lt;/b&gt;" in page
    assert "Personal information" in page and "tina" in page
    assert decide_url(report) in page and "Waiting for a decision (1)" in page
    assert 'name="decision" value="uphold"' in page and 'name="decision" value="dismiss"' in page
    assert "Recent decisions" in page and "Old one" in page


def test_queue_is_for_leads_only(client, project, trainer, engineer, outsider):
    report = report_on(prompt(project, "P"), trainer)
    for user in (trainer, engineer):
        client.force_login(user)
        assert client.get(QUEUE).status_code == 403
        assert client.post(decide_url(report), {"decision": "uphold"}).status_code == 403
    client.force_login(outsider)
    assert client.get(QUEUE).status_code == 404
    assert client.post(decide_url(report), {"decision": "uphold"}).status_code == 404
    assert PromptReport.objects.get().state == "open"


def test_deciding_from_the_page_without_htmx_redirects_with_a_message(
    client, project, trainer, lead
):
    report = report_on(prompt(project, "Keep me"), trainer)
    client.force_login(lead)
    response = client.post(decide_url(report), {"decision": "dismiss"}, follow=True)
    assert response.redirect_chain == [(QUEUE, 302)]
    page = response.content.decode()
    assert "Report dismissed: the prompt is back in the pool." in page
    assert "No reports are waiting for a decision." in page
    assert PromptReport.objects.get().state == "dismissed"


def test_deciding_with_htmx_returns_the_queue_fragment(client, project, trainer, lead):
    first = report_on(prompt(project, "First"), trainer)
    report_on(prompt(project, "Second"), trainer)
    client.force_login(lead)
    response = client.post(
        decide_url(first), {"decision": "uphold"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    fragment = response.content.decode()
    assert fragment.lstrip().startswith('<div id="review-queue">')
    assert "<html" not in fragment and "<h1>" not in fragment
    assert "Report upheld: the prompt stays out of the pool." in fragment
    assert "Waiting for a decision (1)" in fragment and "Second" in fragment
    assert decide_url(first) not in fragment

    # The other decision on a decided report: 409 for htmx, shown as a banner by parley.js.
    response = client.post(
        decide_url(first), {"decision": "dismiss"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 409 and b"already decided" in response.content


def test_bad_decisions_and_other_projects_reports_are_refused(client, project, trainer, lead):
    report = report_on(prompt(project, "P"), trainer)
    other = ProjectFactory(slug="other")
    MembershipFactory(project=other, user=lead, role="lead")
    elsewhere = report_on(prompt(other, "Q"))
    client.force_login(lead)
    assert client.post(decide_url(report), {"decision": "maybe"}).status_code == 400
    wrong = reverse("prompt-report-decide", args=["alpha", elsewhere.pk])
    assert client.post(wrong, {"decision": "uphold"}).status_code == 404
    assert client.get(decide_url(report)).status_code == 405
    assert set(PromptReport.objects.values_list("state", flat=True)) == {"open"}


def test_deciding_needs_a_csrf_token(project, trainer, lead):
    report = report_on(prompt(project, "P"), trainer)
    client = Client(enforce_csrf_checks=True)
    client.force_login(lead)
    assert client.post(decide_url(report), {"decision": "uphold"}).status_code == 403
    assert PromptReport.objects.get().state == "open"
