"""Excluding a trainer's rankings from a date on, and reopening a ranking set: the annotations
services (the tasks that collect the extra rankings are tested in tests/labelling)."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from annotations.access import AccessDenied
from annotations.audit import audit_log
from annotations.exclusions import annotator_exclude, ranking_set_reopen, standing_exclusions
from annotations.models import AnnotatorExclusion, Ranking, RankingSet
from annotations.rankings import ranking_create
from annotations.selectors import exclusion_standing
from tests.factories import make_ranking_set, ranked_set, say, start, trainers

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)


def three_way_set(project, raters, text="Which is best?"):
    """A complete set of three candidates: raters[0] and raters[1] say 0 > 1 > 2, raters[2]
    says the reverse. Consensus 0 > 1 > 2; agreement (1 + 0 + 0) / 3."""
    context = start(project, text)
    replies = [say(context, f"reply {i}") for i in range(3)]
    return ranked_set(
        project,
        context,
        replies,
        [(raters[0], [[0], [1], [2]]), (raters[1], [[0], [1], [2]]), (raters[2], [[2], [1], [0]])],
    )


def test_excluding_recomputes_and_reopens_the_sets_the_trainer_touched(project, lead):
    a, b, c = trainers(project, 3)
    the_set = three_way_set(project, [a, b, c])
    assert the_set.agreement == pytest.approx(1 / 3)
    assert the_set.state == RankingSet.State.COMPLETE

    outcome = annotator_exclude(
        project=project, annotator=a, since=timezone.now() - DAY, actor=lead, reason="Rushed"
    )

    assert outcome.rankings_excluded == 1
    assert outcome.sets_reopened == [the_set.pk] and outcome.sets_refinalized == [the_set.pk]
    excluded = Ranking.objects.get(ranking_set=the_set, annotator=a)
    assert excluded.is_excluded
    the_set.refresh_from_db()
    # b (0 > 1 > 2) and c (2 > 1 > 0) are left: they agree on no pair; the consensus ties the
    # pairs they split, leaving every candidate in one group.
    assert the_set.agreement == 0.0
    assert the_set.consensus == [sorted(the_set.ids)]
    # Back to collecting, needing one more ranking than it has (3 stored, 1 excluded).
    assert the_set.state == RankingSet.State.COLLECTING
    assert the_set.rankings_needed == 4 and the_set.rankings_count == 3
    assert the_set.completed_at is None
    exclusion = AnnotatorExclusion.objects.get(project=project, annotator=a)
    assert exclusion.created_by == lead and exclusion.reason == "Rushed"
    assert list(standing_exclusions(project)) == [exclusion]
    entry = audit_log(project, actions=["annotator.exclude"]).get()
    assert entry.actor == lead and entry.target == f"trainer {a.username}"
    assert entry.reason == "Rushed"
    assert entry.after["rankings_excluded"] == 1 and entry.after["sets_reopened"] == 1


def test_rankings_before_the_date_keep_counting(project, lead):
    a, b, c = trainers(project, 3)
    old = three_way_set(project, [a, b, c], "old")
    Ranking.objects.filter(ranking_set=old).update(created_at=timezone.now() - 10 * DAY)
    new = three_way_set(project, [a, b, c], "new")

    outcome = annotator_exclude(
        project=project, annotator=a, since=timezone.now() - DAY, actor=lead, reason="x"
    )

    assert outcome.sets_reopened == [new.pk]
    assert not Ranking.objects.get(ranking_set=old, annotator=a).is_excluded
    old.refresh_from_db()
    assert old.state == RankingSet.State.COMPLETE and old.rankings_needed == 3


def test_a_collecting_set_collects_one_more(project, lead):
    a, b = trainers(project, 2)
    the_set = make_ranking_set(project, k=3, needed=3)
    ids = [e.message_id for e in the_set.entries.order_by("position")]
    for user in (a, b):
        ranking_create(
            ranking_set=the_set,
            annotator=user,
            order=[[i] for i in ids],
            flags={},
            all_bad=False,
            rewrite=None,
            time_spent_ms=None,
        )
    annotator_exclude(
        project=project, annotator=a, since=timezone.now() - DAY, actor=lead, reason="x"
    )
    the_set.refresh_from_db()
    assert the_set.state == RankingSet.State.COLLECTING
    assert (the_set.rankings_count, the_set.rankings_needed) == (2, 4)
    assert the_set.consensus is None  # never finalized: it is still short


def test_a_ranking_stored_while_the_exclusion_stands_is_excluded_at_once(project, lead):
    a, b = trainers(project, 2)
    annotator_exclude(
        project=project, annotator=a, since=timezone.now() - DAY, actor=lead, reason="x"
    )
    assert exclusion_standing(project_id=project.pk, annotator_id=a.pk)
    assert not exclusion_standing(project_id=project.pk, annotator_id=b.pk)
    assert not exclusion_standing(project_id=project.pk, annotator_id=None)
    the_set = make_ranking_set(project, k=2, needed=3)
    ids = [e.message_id for e in the_set.entries.order_by("position")]
    stored = {
        user: ranking_create(
            ranking_set=the_set,
            annotator=user,
            order=[[i] for i in ids],
            flags={},
            all_bad=False,
            rewrite=None,
            time_spent_ms=None,
        )
        for user in (a, b)
    }
    assert stored[a].is_excluded and not stored[b].is_excluded


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"reason": "  "}, "reason"),
        ({"since": timezone.now() + 2 * DAY}, "since"),
    ],
)
def test_exclusion_input_is_checked(project, lead, change, field):
    (a,) = trainers(project, 1)
    arguments = {"since": timezone.now() - DAY, "reason": "x", **change}
    with pytest.raises(ValidationError) as raised:
        annotator_exclude(project=project, annotator=a, actor=lead, **arguments)
    assert field in raised.value.message_dict
    assert not AnnotatorExclusion.objects.exists()


def test_an_outsider_cannot_be_excluded_nor_anyone_twice(project, lead, outsider):
    with pytest.raises(ValidationError) as raised:
        annotator_exclude(
            project=project, annotator=outsider, since=timezone.now(), actor=lead, reason="x"
        )
    assert "annotator" in raised.value.message_dict
    (a,) = trainers(project, 1)
    since = timezone.now() - DAY
    annotator_exclude(project=project, annotator=a, since=since, actor=lead, reason="x")
    with pytest.raises(ValidationError) as raised:
        annotator_exclude(
            project=project, annotator=a, since=since + DAY / 2, actor=lead, reason="y"
        )
    assert "already excluded" in raised.value.message_dict["since"][0]
    # An earlier date widens the exclusion.
    annotator_exclude(project=project, annotator=a, since=since - DAY, actor=lead, reason="z")
    assert AnnotatorExclusion.objects.filter(annotator=a).count() == 2


def test_only_a_lead_excludes_or_reopens(project, trainer, engineer):
    (a,) = trainers(project, 1)
    the_set = make_ranking_set(project, k=2)
    for actor in (trainer, engineer):
        with pytest.raises(AccessDenied):
            annotator_exclude(
                project=project, annotator=a, since=timezone.now(), actor=actor, reason="x"
            )
        with pytest.raises(AccessDenied):
            ranking_set_reopen(ranking_set=the_set, actor=actor, reason="x")
    assert not AnnotatorExclusion.objects.exists()
    assert not audit_log(project).exists()


def test_reopening_a_complete_set_asks_for_more_and_is_logged(project, lead):
    the_set = three_way_set(project, trainers(project, 3))
    reopened = ranking_set_reopen(ranking_set=the_set, actor=lead, reason="Close call", extra=2)
    assert reopened.state == RankingSet.State.COLLECTING
    assert reopened.rankings_needed == 5 and reopened.completed_at is None
    assert reopened.agreement == pytest.approx(1 / 3)  # kept until it completes again
    entry = audit_log(project, actions=["ranking_set."]).get()
    assert entry.action == "ranking_set.reopen" and entry.target == f"ranking set {the_set.pk}"
    assert entry.before == {"state": "complete", "rankings_needed": 3}
    assert entry.after == {"state": "collecting", "rankings_needed": 5}
    assert entry.reason == "Close call" and entry.actor == lead


@pytest.mark.parametrize(
    ("state", "extra", "field"),
    [
        (RankingSet.State.CANCELLED, 1, "ranking_set"),
        (RankingSet.State.SAMPLING, 1, "ranking_set"),
        (RankingSet.State.COMPLETE, 0, "extra"),
        (RankingSet.State.COMPLETE, 11, "extra"),
    ],
)
def test_reopening_refuses_what_it_cannot_do(project, lead, state, extra, field):
    the_set = make_ranking_set(project, k=2, state=state)
    with pytest.raises(ValidationError) as raised:
        ranking_set_reopen(ranking_set=the_set, actor=lead, reason="x", extra=extra)
    assert field in raised.value.message_dict
    the_set.refresh_from_db()
    assert the_set.state == state and the_set.rankings_needed == project.rankings_per_set
    assert not audit_log(project).exists()
