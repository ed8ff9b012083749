"""Reports on prompts: filing them, which prompts they keep out of the pool, leads' decisions."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from annotations.access import AccessDenied
from annotations.models import PromptReport
from annotations.reports import (
    KEEPS_OUT,
    decided_prompt_reports,
    open_prompt_reports,
    prompt_report_create,
    prompt_report_decide,
    prompt_reports,
    prompt_reports_keeping_out,
    reported_prompt_ids,
)
from annotations.selectors import prompt_pool
from annotations.services import conversation_start
from tests.factories import MembershipFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


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


def second_trainer(project):
    return MembershipFactory(project=project, user=UserFactory(username="tom"), role="trainer").user


def available(project) -> set[str]:
    return set(
        prompt_pool(project=project)
        .exclude(pk__in=reported_prompt_ids(project))
        .values_list("text", flat=True)
    )


# --- Filing a report ----------------------------------------------------------------------------


def test_a_report_is_filed_open_and_takes_the_prompt_out_of_the_pool(project, trainer):
    message = prompt(project, "Tell me my neighbour's address.")
    prompt(project, "Write a haiku.")

    report = report_on(message, trainer, "pii", note="an address")

    stored = PromptReport.objects.get()
    assert stored == report
    assert (stored.project, stored.message, stored.reporter) == (project, message, trainer)
    assert (stored.reason, stored.note, stored.state) == ("pii", "an address", "open")
    assert stored.decided_by is None and stored.decided_at is None
    assert available(project) == {"Write a haiku."}


def test_a_report_without_a_reporter_is_allowed(project):
    report = report_on(prompt(project, "Imported and flagged"))
    assert report.reporter is None and report.state == "open"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"reason": "boring"}, "reason"),
        ({"reason": ""}, "reason"),
        ({"note": "x" * 1001}, "note"),
    ],
)
def test_a_bad_report_names_the_field_and_stores_nothing(project, trainer, change, field):
    values = {"reporter": trainer, "reason": "harmful", "note": ""} | change
    with pytest.raises(ValidationError) as raised:
        prompt_report_create(project=project, message=prompt(project, "P"), **values)
    assert set(raised.value.message_dict) == {field}
    assert not PromptReport.objects.exists()


def test_the_unknown_reason_error_lists_the_choices(project, trainer):
    with pytest.raises(ValidationError) as raised:
        report_on(prompt(project, "P"), trainer, reason="boring")
    (text,) = raised.value.message_dict["reason"]
    assert "'boring'" in text and "harmful, pii, nonsense, wrong_language" in text


def test_a_message_of_another_project_cannot_be_reported_here(project, trainer):
    elsewhere = prompt(ProjectFactory(slug="other"), "Q")
    with pytest.raises(ValidationError) as raised:
        prompt_report_create(
            project=project, message=elsewhere, reporter=trainer, reason="harmful", note=""
        )
    assert set(raised.value.message_dict) == {"message"}
    assert not PromptReport.objects.exists()


def test_only_people_who_annotate_in_the_project_report(project, engineer, outsider, lead):
    message = prompt(project, "P")
    for user in (engineer, outsider):
        with pytest.raises(AccessDenied):
            report_on(message, user)
    assert not PromptReport.objects.exists()
    assert report_on(message, lead).reporter == lead  # leads annotate too


# --- Selectors ----------------------------------------------------------------------------------


def test_open_and_upheld_reports_keep_prompts_out_of_the_pool(project, trainer):
    clean = prompt(project, "Clean")
    open_ = prompt(project, "Reported")
    upheld = prompt(project, "Removed")
    dismissed = prompt(project, "Cleared")
    report_on(open_, trainer)
    report_on(open_, second_trainer(project))  # twice: the id still comes once
    PromptReport.objects.filter(pk=report_on(upheld, trainer).pk).update(state="upheld")
    PromptReport.objects.filter(pk=report_on(dismissed, trainer).pk).update(state="dismissed")
    other = ProjectFactory(slug="other")
    elsewhere = report_on(prompt(other, "Elsewhere"))

    assert sorted(reported_prompt_ids(project)) == sorted([open_.pk, upheld.pk])
    assert available(project) == {"Clean", "Cleared"}
    assert clean.pk not in set(reported_prompt_ids(project))
    assert set(KEEPS_OUT) == {"open", "upheld"}
    # Without a project, the reports that keep prompts out of every project's pool.
    assert {r.message_id for r in prompt_reports_keeping_out()} == {
        open_.pk,
        upheld.pk,
        elsewhere.message_id,
    }
    assert {r.message_id for r in prompt_reports_keeping_out(other)} == {elsewhere.message_id}


def test_the_queue_lists_open_reports_oldest_first_and_decided_ones_latest_first(
    project, trainer, lead
):
    first = report_on(prompt(project, "First"), trainer)
    second = report_on(prompt(project, "Second"), trainer)
    third = report_on(prompt(project, "Third"), trainer)
    fourth = report_on(prompt(project, "Fourth"), trainer)
    report_on(prompt(ProjectFactory(slug="other"), "Elsewhere"))
    now = timezone.now()
    PromptReport.objects.filter(pk=first.pk).update(created_at=now - timedelta(hours=1))
    PromptReport.objects.filter(pk=second.pk).update(created_at=now - timedelta(hours=2))
    PromptReport.objects.filter(pk=third.pk).update(
        state="upheld", decided_by=lead, decided_at=now - timedelta(minutes=5)
    )
    PromptReport.objects.filter(pk=fourth.pk).update(
        state="dismissed", decided_by=lead, decided_at=now - timedelta(minutes=1)
    )

    assert list(open_prompt_reports(project)) == [second, first]
    assert list(decided_prompt_reports(project)) == [fourth, third]
    assert set(prompt_reports(project)) == {first, second, third, fourth}


# --- Deciding -----------------------------------------------------------------------------------


def test_upholding_keeps_the_prompt_out_and_settles_every_open_report_on_it(project, trainer, lead):
    message = prompt(project, "Reported twice")
    first = report_on(message, trainer, "harmful")
    second = report_on(message, second_trainer(project), "pii")
    unrelated = report_on(prompt(project, "Another"), trainer)

    decided = prompt_report_decide(report=first, user=lead, uphold=True)

    assert decided.state == "upheld" and decided.decided_by == lead and decided.decided_at
    second.refresh_from_db()
    unrelated.refresh_from_db()
    assert (second.state, second.decided_by) == ("upheld", lead)
    assert unrelated.state == "open"
    assert "Reported twice" not in available(project)


def test_dismissing_puts_the_prompt_back(project, trainer, lead):
    message = prompt(project, "Fine after all")
    report = report_on(message, trainer, "nonsense")
    assert available(project) == set()
    decided = prompt_report_decide(report=report, user=lead, uphold=False)
    assert decided.state == "dismissed"
    assert available(project) == {"Fine after all"}


def test_a_decision_stands(project, trainer, lead):
    report = report_on(prompt(project, "P"), trainer)
    prompt_report_decide(report=report, user=lead, uphold=True)
    first_time = PromptReport.objects.get().decided_at
    # The same decision again (a double click) changes nothing; the other one is refused.
    assert prompt_report_decide(report=report, user=lead, uphold=True).decided_at == first_time
    with pytest.raises(ValidationError, match="already decided"):
        prompt_report_decide(report=report, user=lead, uphold=False)
    assert PromptReport.objects.get().state == "upheld"


def test_only_leads_decide(project, trainer, engineer):
    report = report_on(prompt(project, "P"), trainer)
    for user in (trainer, engineer):
        with pytest.raises(AccessDenied):
            prompt_report_decide(report=report, user=user, uphold=True)
    assert PromptReport.objects.get().state == "open"
