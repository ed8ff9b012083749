"""Ranking sets: creating them with their candidates, cancelling them, and finishing them with
consensus and agreement once their N rankings are in."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from annotations.models import AnnotatorExclusion, Message, Ranking, RankingCandidate, RankingSet
from annotations.rankings import (
    ranking_create,
    ranking_set_cancel,
    ranking_set_collect,
    ranking_set_create,
    ranking_set_finalize,
    ranking_set_resampled,
    ranking_sets_refinalize,
)
from annotations.services import conversation_start, message_add
from tests.factories import ModelVersionFactory, ProjectFactory, UserFactory, ranked_set, say, start

pytestmark = pytest.mark.django_db


@pytest.fixture
def ranking_set(project):
    """A collecting set of three candidates a, b, c that needs three rankings."""
    _, context = conversation_start(project=project, text="Name a fruit.")
    replies = [
        message_add(parent=context, role=Message.Role.ASSISTANT, text=text)
        for text in ("Apple.", "Banana.", "A cucumber.")
    ]
    ranking_set = RankingSet.objects.create(
        project=project, context=context, rankings_needed=3, state=RankingSet.State.COLLECTING
    )
    for position, reply in enumerate(replies):
        RankingCandidate.objects.create(ranking_set=ranking_set, message=reply, position=position)
    ranking_set.ids = [reply.pk for reply in replies]
    return ranking_set


def _rank(ranking_set, name, order, **extra):
    a, b, c = ranking_set.ids
    ids = {"a": a, "b": b, "c": c}
    Ranking.objects.create(
        ranking_set=ranking_set,
        annotator=UserFactory(username=name),
        order=[[ids[x] for x in group] for group in order],
        **extra,
    )
    RankingSet.objects.filter(pk=ranking_set.pk).update(rankings_count=ranking_set.rankings.count())
    ranking_set.refresh_from_db()


def test_a_set_short_of_rankings_is_left_alone(ranking_set):
    _rank(ranking_set, "r1", [["a"], ["b"], ["c"]])
    _rank(ranking_set, "r2", [["a"], ["b"], ["c"]])
    result = ranking_set_finalize(ranking_set=ranking_set)
    assert result.state == "collecting" and result.consensus is None
    assert result.agreement is None and result.completed_at is None


def test_the_nth_ranking_completes_the_set(ranking_set):
    a, b, c = ranking_set.ids
    _rank(ranking_set, "r1", [["a"], ["b"], ["c"]])
    _rank(ranking_set, "r2", [["a"], ["c"], ["b"]])
    _rank(ranking_set, "r3", [["b"], ["a"], ["c"]])
    result = ranking_set_finalize(ranking_set=ranking_set)
    # As worked in test_agreement.test_three_trainers: agreement 5/9, tau 1/9, consensus a>b>c.
    assert result.state == "complete" and result.completed_at is not None
    assert result.consensus == [[a], [b], [c]]
    assert result.agreement == pytest.approx(5 / 9)
    assert result.kendall_tau == pytest.approx(1 / 9)
    stored = RankingSet.objects.get(pk=ranking_set.pk)
    assert (stored.state, stored.consensus) == ("complete", [[a], [b], [c]])


def test_finalizing_twice_changes_nothing(ranking_set):
    for name in ("r1", "r2", "r3"):
        _rank(ranking_set, name, [["c"], ["a", "b"]])
    first = ranking_set_finalize(ranking_set=ranking_set)
    second = ranking_set_finalize(ranking_set=ranking_set)
    a, b, c = ranking_set.ids
    assert second.completed_at == first.completed_at
    assert second.consensus == first.consensus == [[c], sorted([a, b])]
    # Identical orders agree on every pair; tau-b of identical orders with one tie is 1.
    assert second.agreement == 1.0 and second.kendall_tau == pytest.approx(1.0)


def test_excluded_rankings_are_left_out(ranking_set):
    a, b, c = ranking_set.ids
    _rank(ranking_set, "r1", [["a"], ["b"], ["c"]])
    _rank(ranking_set, "r2", [["a"], ["b"], ["c"]])
    _rank(ranking_set, "spammer", [["c"], ["b"], ["a"]], is_excluded=True)
    result = ranking_set_finalize(ranking_set=ranking_set)
    # Only the two identical rankings count: full agreement, consensus their order.
    assert result.state == "complete"
    assert result.consensus == [[a], [b], [c]]
    assert result.agreement == 1.0 and result.kendall_tau == 1.0


def test_a_lead_excluding_a_ranking_later_refreshes_the_figures(ranking_set):
    _rank(ranking_set, "r1", [["a"], ["b"], ["c"]])
    _rank(ranking_set, "r2", [["a"], ["b"], ["c"]])
    _rank(ranking_set, "r3", [["c"], ["b"], ["a"]])
    first = ranking_set_finalize(ranking_set=ranking_set)
    # Pairs of trainers: (r1, r2) agree on 3/3, (r1, r3) and (r2, r3) on 0/3: mean 1/3.
    assert first.agreement == pytest.approx(1 / 3)
    Ranking.objects.filter(annotator__username="r3").update(is_excluded=True)
    again = ranking_set_finalize(ranking_set=ranking_set)
    assert again.agreement == 1.0 and again.completed_at == first.completed_at


def _figures(ranking_set):
    rows = Ranking.objects.filter(ranking_set=ranking_set).order_by("created_at", "id")
    return [
        (r.annotator.username, r.consensus_agreement, r.length_pairs, r.longer_preferred)
        for r in rows
    ]


def test_finalizing_fills_each_rankings_figures_in_one_update(ranking_set):
    # Replies "Apple." (6 characters), "Banana." (7), "A cucumber." (11): a < b < c in length.
    _rank(ranking_set, "r1", [["a"], ["b"], ["c"]])
    _rank(ranking_set, "r2", [["a"], ["c"], ["b"]])
    _rank(ranking_set, "r3", [["b"], ["a"], ["c"]])
    with CaptureQueriesContext(connection) as queries:
        ranking_set_finalize(ranking_set=ranking_set)
    updates = [q["sql"] for q in queries if q["sql"].startswith('UPDATE "annotations_ranking"')]
    assert len(updates) == 1
    # Leave-one-out agreement as worked in test_agreement: 2/3, 1/3, 1/3. Longer replies won:
    # r1 none of 3; r2 c over b; r3 b over a.
    assert _figures(ranking_set) == [
        ("r1", pytest.approx(2 / 3), 3, 0),
        ("r2", pytest.approx(1 / 3), 3, 1),
        ("r3", pytest.approx(1 / 3), 3, 1),
    ]


def test_an_excluded_ranking_is_measured_against_the_counting_others(ranking_set):
    _rank(ranking_set, "r1", [["a"], ["b"], ["c"]])
    _rank(ranking_set, "r2", [["a"], ["b"], ["c"]])
    _rank(ranking_set, "r3", [["c"], ["b"], ["a"]])
    ranking_set_finalize(ranking_set=ranking_set)
    # All counting: r1's others r2 and r3 split every pair, so their consensus ties everything.
    assert [f[1] for f in _figures(ranking_set)] == [0.0, 0.0, pytest.approx(0.0)]
    Ranking.objects.filter(annotator__username="r3").update(is_excluded=True)
    ranking_set_finalize(ranking_set=ranking_set)
    # r3 no longer counts: r1 and r2 each agree fully with the other; r3, still measured,
    # disagrees with their a > b > c on every pair. r3 put the longest first on all 3 pairs.
    assert _figures(ranking_set) == [("r1", 1.0, 3, 0), ("r2", 1.0, 3, 0), ("r3", 0.0, 3, 3)]


def test_a_set_short_of_rankings_gets_no_figures(ranking_set):
    _rank(ranking_set, "r1", [["a"], ["b"], ["c"]])
    ranking_set_finalize(ranking_set=ranking_set)
    assert _figures(ranking_set) == [("r1", None, None, None)]


def test_a_ranking_stored_while_an_exclusion_stands_is_excluded(ranking_set, project):
    a, b, c = ranking_set.ids
    excluded, lifted, other = UserFactory(), UserFactory(), UserFactory()
    now = timezone.now()
    AnnotatorExclusion.objects.create(
        project=project, annotator=excluded, since=now - timedelta(days=1), reason="Spam."
    )
    AnnotatorExclusion.objects.create(
        project=project, annotator=lifted, since=now - timedelta(days=1), reason="x", lifted_at=now
    )
    elsewhere = ProjectFactory(slug="elsewhere")
    AnnotatorExclusion.objects.create(
        project=elsewhere, annotator=other, since=now - timedelta(days=1), reason="Elsewhere."
    )
    stored = {
        user: ranking_create(
            ranking_set=ranking_set,
            annotator=user,
            order=[[a], [b], [c]],
            flags={},
            all_bad=False,
            rewrite=None,
            time_spent_ms=None,
        )
        for user in (excluded, lifted, other)
    }
    assert stored[excluded].is_excluded
    assert not stored[lifted].is_excluded and not stored[other].is_excluded


def _three_ranked(project, users, orders):
    context = start(project, "Pick one.")
    replies = [say(context, text) for text in ("Apple.", "Banana.", "A cucumber.")]
    return ranked_set(project, context, replies, list(zip(users, orders, strict=True)))


def test_refinalizing_many_sets_gives_what_finalizing_each_gives(project):
    users = [UserFactory(username=f"u{i}") for i in range(3)]
    abc, cba, bac = [[0], [1], [2]], [[2], [1], [0]], [[1], [0], [2]]
    first = _three_ranked(project, users, [abc, abc, cba])
    second = _three_ranked(project, users, [abc, bac, cba])
    collecting = _three_ranked(project, users, [abc, abc, abc])
    RankingSet.objects.filter(pk=collecting.pk).update(state="collecting", consensus=None)
    completed_at = {s.pk: s.completed_at for s in (first, second)}
    Ranking.objects.filter(annotator=users[2]).update(is_excluded=True)

    with CaptureQueriesContext(connection) as queries:
        written = ranking_sets_refinalize(
            ranking_set_ids=[first.pk, second.pk, collecting.pk], batch=1
        )

    assert written == 2
    # Per batch of one set: candidates, rankings, one UPDATE of sets, one of rankings.
    updates = [q["sql"] for q in queries if q["sql"].startswith("UPDATE")]
    assert len(updates) == 4
    stored = RankingSet.objects.in_bulk([first.pk, second.pk])
    refinalized = {
        pk: (s.consensus, s.agreement, s.kendall_tau, _figures(s)) for pk, s in stored.items()
    }
    for the_set in (first, second):
        again = ranking_set_finalize(ranking_set=the_set)
        assert again.completed_at == completed_at[the_set.pk]
        assert refinalized[the_set.pk] == (
            again.consensus,
            again.agreement,
            again.kendall_tau,
            _figures(the_set),
        )
    a, b, c = first.ids
    # Without u2: u0 and u1 agree fully on a > b > c; u2 disagrees on every pair.
    assert refinalized[first.pk][:3] == ([[a], [b], [c]], 1.0, 1.0)
    assert [f[1] for f in refinalized[first.pk][3]] == [1.0, 1.0, 0.0]
    # Second: u0 a>b>c and u1 b>a>c agree on 2 of 3 pairs; the consensus ties a and b.
    a, b, c = second.ids
    assert refinalized[second.pk][0] == [sorted([a, b]), [c]]
    assert refinalized[second.pk][1] == pytest.approx(2 / 3)
    assert RankingSet.objects.get(pk=collecting.pk).consensus is None


@pytest.mark.parametrize("state", ["sampling", "cancelled"])
def test_sets_not_collecting_are_not_completed(ranking_set, state):
    for name in ("r1", "r2", "r3"):
        _rank(ranking_set, name, [["a"], ["b"], ["c"]])
    RankingSet.objects.filter(pk=ranking_set.pk).update(state=state)
    result = ranking_set_finalize(ranking_set=ranking_set)
    assert result.state == state and result.consensus is None


# ---------------------------------------------------------------------------- creation


def _replies(project, trainer):
    _, context = conversation_start(project=project, text="Name a colour.", created_by=trainer)
    model = ModelVersionFactory()
    written = message_add(parent=context, role="assistant", text="Blue.", author_user=trainer)
    sampled = message_add(parent=context, role="assistant", text="Red.", author_model=model)
    return context, [sampled, written]


def test_a_set_created_with_its_candidates_collects_at_once(project, trainer):
    context, candidates = _replies(project, trainer)

    ranking_set = ranking_set_create(
        project=project, context=context, rankings_needed=2, candidates=candidates
    )

    assert ranking_set.state == RankingSet.State.COLLECTING and ranking_set.rankings_needed == 2
    entries = ranking_set.entries.order_by("position").values_list("message_id", flat=True)
    assert list(entries) == [m.pk for m in candidates]
    # The trainer wrote the context and a candidate: they never rank this set.
    assert list(ranking_set.authors.all()) == [trainer]


def test_a_set_without_candidates_waits_for_them_then_collects(project, trainer):
    context, candidates = _replies(project, trainer)
    ranking_set = ranking_set_create(project=project, context=context, rankings_needed=3)
    assert ranking_set.state == RankingSet.State.SAMPLING and not ranking_set.entries.exists()

    with pytest.raises(ValidationError, match="twice"):
        ranking_set_collect(ranking_set=ranking_set, candidates=[candidates[0], candidates[0]])
    _, elsewhere = conversation_start(project=project, text="Another prompt.")
    stranger = message_add(parent=elsewhere, role="assistant", text="Green.")
    with pytest.raises(ValidationError, match="reply to the set's context"):
        ranking_set_collect(ranking_set=ranking_set, candidates=[*candidates, stranger])

    ranking_set_collect(ranking_set=ranking_set, candidates=candidates)
    ranking_set.refresh_from_db()
    assert ranking_set.state == RankingSet.State.COLLECTING and ranking_set.entries.count() == 2
    with pytest.raises(ValidationError, match="this one is collecting"):
        ranking_set_collect(ranking_set=ranking_set, candidates=candidates)


def test_a_set_of_another_projects_context_is_refused(project):
    _, context = conversation_start(project=ProjectFactory(), text="Elsewhere.")
    with pytest.raises(ValidationError, match="another project"):
        ranking_set_create(project=project, context=context, rankings_needed=1)


def test_cancelling_and_re_sampling_are_recorded(project, trainer):
    context, _ = _replies(project, trainer)
    ranking_set = ranking_set_create(project=project, context=context, rankings_needed=1)
    ranking_set_resampled(ranking_set=ranking_set)
    ranking_set_cancel(ranking_set=ranking_set, reason="the models keep repeating themselves.")
    ranking_set.refresh_from_db()
    assert ranking_set.resamples == 1 and ranking_set.state == RankingSet.State.CANCELLED
    assert ranking_set.cancel_reason == "Cancelled because the models keep repeating themselves."
