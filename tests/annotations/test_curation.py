"""Leaving a message or a ranking out of exports: who may, the reason, the audit log, and the
set's consensus and agreement computed again."""

import pytest
from django.core.exceptions import ValidationError

from annotations.access import AccessDenied
from annotations.audit import audit_log
from annotations.curation import message_exclude, message_include, ranking_exclude, ranking_include
from annotations.models import Ranking
from tests.factories import MembershipFactory, ProjectFactory, ranked_set, say, start, trainers

pytestmark = pytest.mark.django_db


def test_a_lead_excludes_a_message_with_a_reason_and_the_log_says_so(project, lead):
    prompt = start(project, "Hi")
    reply = say(prompt, "Hello there")
    message_exclude(project=project, message=reply, actor=lead, reason="  Copied from a book ")
    reply.refresh_from_db()
    assert reply.is_excluded
    entry = audit_log(project).get()
    assert (entry.action, entry.actor, entry.target) == (
        "message.exclude",
        lead,
        f"message {reply.pk}",
    )
    assert (entry.before, entry.after) == ({"is_excluded": False}, {"is_excluded": True})
    assert entry.reason == "Copied from a book"

    # Excluding again changes nothing and logs nothing; including takes it back.
    message_exclude(project=project, message=reply, actor=lead, reason="again")
    assert audit_log(project).count() == 1
    message_include(project=project, message=reply, actor=lead)
    reply.refresh_from_db()
    assert not reply.is_excluded
    assert audit_log(project).first().action == "message.include"


def test_excluding_needs_a_reason_a_lead_and_the_same_project(project, lead, trainer):
    reply = say(start(project, "Hi"), "Hello")
    with pytest.raises(ValidationError) as error:
        message_exclude(project=project, message=reply, actor=lead, reason="   ")
    assert "reason" in error.value.message_dict
    with pytest.raises(AccessDenied):
        message_exclude(project=project, message=reply, actor=trainer, reason="spam")
    other = ProjectFactory()
    MembershipFactory(project=other, user=lead, role="lead")
    with pytest.raises(ValidationError) as error:
        message_exclude(project=other, message=reply, actor=lead, reason="spam")
    reply.refresh_from_db()
    assert not reply.is_excluded
    assert not audit_log(project).exists()


def test_excluding_a_ranking_recomputes_the_sets_consensus_and_agreement(project, lead):
    r1, r2, r3 = trainers(project, 3)
    context = start(project, "Which?")
    replies = [say(context, f"reply {x}") for x in "abc"]
    the_set = ranked_set(
        project,
        context,
        replies,
        [(r1, [[0], [1], [2]]), (r2, [[0], [1], [2]]), (r3, [[2], [1], [0]])],
    )
    a, b, c = the_set.ids
    assert the_set.consensus == [[a], [b], [c]]
    before = the_set.agreement
    dissent = Ranking.objects.get(ranking_set=the_set, annotator=r3)

    ranking_exclude(project=project, ranking=dissent, actor=lead, reason="Ranked at random")
    the_set.refresh_from_db()
    assert the_set.agreement == 1.0 and before < 1.0
    assert the_set.consensus == [[a], [b], [c]]
    entry = audit_log(project, actions=["ranking."]).get()
    assert entry.action == "ranking.exclude" and entry.reason == "Ranked at random"
    assert entry.before["set_agreement"] == before and entry.after["set_agreement"] == 1.0
    assert "t2" in entry.target

    ranking_include(project=project, ranking=dissent, actor=lead, reason="Checked again")
    the_set.refresh_from_db()
    assert the_set.agreement == before
    assert audit_log(project).first().action == "ranking.include"
