"""The per-ranking quality figures filled for many sets at once, and the backfill command."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from annotations.models import Ranking
from annotations.ranking_quality import rankings_quality_fill
from tests.factories import ProjectFactory, UserFactory, ranked_set, say, start

pytestmark = pytest.mark.django_db


def _complete_set(project, users, orders, texts=("Short.", "A longer reply.", "Mid one.")):
    context = start(project, "Say something.")
    candidates = [say(context, text) for text in texts]
    return ranked_set(project, context, candidates, list(zip(users, orders, strict=True)))


def _forget_figures(*sets):
    Ranking.objects.filter(ranking_set__in=sets).update(
        consensus_agreement=None, length_pairs=None, longer_preferred=None
    )


def _figures(the_set):
    return [
        (r.consensus_agreement, r.length_pairs, r.longer_preferred)
        for r in the_set.rankings.order_by("created_at", "id")
    ]


@pytest.fixture
def users(db):
    return [UserFactory(username=f"r{i}") for i in range(3)]


def test_filling_many_sets_matches_finalizing_each(project, users):
    first = _complete_set(project, users, [[[0], [1], [2]], [[0], [2], [1]], [[1], [0], [2]]])
    second = _complete_set(project, users[:2], [[[1], [2, 0]], [[2], [1], [0]]])
    expected = {s.pk: _figures(s) for s in (first, second)}
    # Finalizing filled them: leave-one-out 2/3, 1/3, 1/3 (worked in test_agreement); lengths
    # 6, 15, 8 characters: r0 (short > longer > mid) let the longer win once (longer over mid),
    # r1 (short > mid > longer) never, r2 (longer > short > mid) twice.
    assert expected[first.pk] == [
        (pytest.approx(2 / 3), 3, 1),
        (pytest.approx(1 / 3), 3, 0),
        (pytest.approx(1 / 3), 3, 2),
    ]
    _forget_figures(first, second)

    assert rankings_quality_fill(ranking_set_ids=[first.pk, second.pk]) == 5

    assert {s.pk: _figures(s) for s in (first, second)} == expected


def test_the_backfill_command_fills_empty_sets_in_batches(project, users):
    orders = [[[0], [1], [2]], [[0], [1], [2]], [[2], [1], [0]]]
    sets = [_complete_set(project, users, orders) for _ in range(3)]
    other = ProjectFactory(slug="other")
    elsewhere = _complete_set(other, users, orders)
    _forget_figures(*sets, elsewhere)
    out = StringIO()

    call_command("ranking_quality_backfill", "--project", "alpha", "--batch", "2", stdout=out)

    lines = out.getvalue().splitlines()
    assert lines[0] == "3 complete sets need figures."
    assert lines[1].startswith("2/3 sets, 6 rankings") and lines[2].startswith(
        "3/3 sets, 9 rankings"
    )
    assert lines[-1] == "Filled 9 rankings in 3 sets."
    # All three count: r0 and r1 each see a consensus split 1-1 on every pair (0 agreement).
    assert all(_figures(s) == [(0.0, 3, 1), (0.0, 3, 1), (0.0, 3, 2)] for s in sets)
    assert _figures(elsewhere) == [(None, None, None)] * 3

    again = StringIO()
    call_command("ranking_quality_backfill", stdout=again)
    assert "Filled 3 rankings in 1 sets." in again.getvalue()


def test_the_backfill_command_refuses_bad_options(project):
    with pytest.raises(CommandError, match="slug"):
        call_command("ranking_quality_backfill", "--project", "nope", stdout=StringIO())
    with pytest.raises(CommandError, match="batch"):
        call_command("ranking_quality_backfill", "--batch", "0", stdout=StringIO())
