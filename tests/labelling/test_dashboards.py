"""The dashboards' rollups (labelling/dashboards/rollups.py) and the selectors that read them."""

from datetime import timedelta

import pytest
from django.utils import timezone

from annotations.agreement import leave_one_out_agreement
from annotations.models import Ranking, RankingSet
from annotations.reliability import krippendorff_alpha_ordinal, rank_coincidences
from labelling.dashboards import histograms as h
from labelling.dashboards.gathering import candidate_source
from labelling.dashboards.rollups import LATE_COMMIT_MARGIN, rollups_rebuild, rollups_refresh
from labelling.dashboards.selectors import (
    DateSpan,
    agreement_by,
    agreement_total,
    agreement_value_counts,
    agreement_weekly,
    coincidences_total,
    flag_tallies,
    model_wins,
    project_length_buckets,
    trainer_daily,
    trainer_totals,
)
from labelling.dashboards.tasks import dashboards_rebuild, refresh_dashboards
from labelling.models import DailyRollup, DashboardState, Task, TrainerDay
from tests.factories import ModelVersionFactory, ranked_set, say, start, trainers


@pytest.fixture
def quality_data(project):
    """Two sets by three trainers over replies of two models and a human one.

    Set A: replies of 10, 30, 60 characters (old-model, new-model, human); all three trainers
    rank longest first except t2, who reverses the two model replies. Set B: replies of 5 and 25
    characters (old, new); t0 and t1 agree, t2 ties them; t0 flags the short one as harmful.
    """
    people = trainers(project, 3)
    old, new = ModelVersionFactory(name="old-policy"), ModelVersionFactory(name="new-policy")
    prompt_a = start(project, "Question A", meta={"tags": ["maths", "short"]})
    a = [say(prompt_a, "x" * 10, model=old), say(prompt_a, "y" * 30, model=new)]
    a.append(say(prompt_a, "z" * 60, user=people[0]))
    set_a = ranked_set(
        project,
        prompt_a,
        a,
        [(people[0], [[2], [1], [0]]), (people[1], [[2], [1], [0]]), (people[2], [[2], [0], [1]])],
    )
    prompt_b = start(project, "Pregunta B")
    prompt_b.lang = "es"
    prompt_b.save(update_fields=["lang"])
    b = [say(prompt_b, "s" * 5, model=old), say(prompt_b, "t" * 25, model=new)]
    set_b = ranked_set(
        project,
        prompt_b,
        b,
        [(people[0], [[1], [0]]), (people[1], [[1], [0]]), (people[2], [[0, 1]])],
        flags={0: {0: ["harmful"]}},
    )
    return people, set_a, set_b


def test_refresh_sums_each_completed_set_once(project, quality_data):
    _, set_a, set_b = quality_data
    read = rollups_refresh(project=project)
    assert read >= 2
    total = agreement_total(project, None)
    assert total.sets == 2
    assert total.mean == pytest.approx((set_a.agreement + set_b.agreement) / 2)
    # A second refresh recomputes today's rows in place: nothing is counted twice.
    rollups_refresh(project=project)
    assert agreement_total(project, None).sets == 2
    assert DailyRollup.objects.filter(project=project).count() == 1
    values, counts = agreement_value_counts(project, None)
    assert sum(counts) == 2
    assert sorted(values) == sorted({round(set_a.agreement, 4), round(set_b.agreement, 4)})
    weeks = agreement_weekly(project, None)
    assert [w.sets for w in weeks] == [2]
    # Every ranking's agreement with its set's other rankings, summed for the trainer pages.
    day = DailyRollup.objects.get(project=project)
    stored = list(
        Ranking.objects.filter(ranking_set__project=project).values_list(
            "consensus_agreement", flat=True
        )
    )
    assert day.ranking_agreement_count == 6
    assert day.ranking_agreement_sum == pytest.approx(sum(stored))


def test_coincidences_flags_models_and_groups(project, quality_data):
    _, set_a, set_b = quality_data
    rollups_refresh(project=project)
    expected = [
        [a + b for a, b in zip(row_a, row_b, strict=True)]
        for row_a, row_b in zip(
            rank_coincidences(list(set_a.rankings.values_list("order", flat=True))),
            rank_coincidences(list(set_b.rankings.values_list("order", flat=True))),
            strict=True,
        )
    ]
    assert coincidences_total(project, None) == expected
    assert krippendorff_alpha_ordinal(coincidences_total(project, None)) is not None

    harmful = flag_tallies(project, None)["harmful"]
    # 5 items (3 + 2 candidates) of 3 raters; one "yes" on one item of set B.
    assert harmful.items == 5
    assert harmful.category_totals == [1, 14]
    assert flag_tallies(project, None)["pii"].category_totals == [0, 15]

    wins = model_wins(project, None)
    # Consensus of A: human > new > old; of B: new > old. Same-model pairs never count.
    table = {
        (winner, loser): wins.wins[i][j]
        for i, winner in enumerate(wins.names)
        for j, loser in enumerate(wins.names)
        if wins.wins[i][j]
    }
    assert table == {
        ("human", "new-policy"): 1,
        ("human", "old-policy"): 1,
        ("new-policy", "old-policy"): 2,
    }

    by_model = {g.value: g for g in agreement_by(project, "model", None)}
    assert by_model["old-policy"].sets == 2
    assert by_model["human"].sets == 1
    assert by_model["human"].mean == pytest.approx(set_a.agreement)
    by_language = {g.value: g.sets for g in agreement_by(project, "language", None)}
    assert by_language == {"en": 1, "es": 1}
    by_tag = {g.value: g.mean for g in agreement_by(project, "tag", None)}
    assert by_tag == {
        "maths": pytest.approx(set_a.agreement),
        "short": pytest.approx(set_a.agreement),
    }


def test_trainer_rows_hold_agreement_flags_and_length_buckets(project, quality_data):
    people, set_a, set_b = quality_data
    rollups_refresh(project=project)
    totals = {t.username: t for t in trainer_totals(project, None)}
    assert set(totals) == {"t0", "t1", "t2"}
    assert totals["t0"].rankings == 2
    assert totals["t0"].flags_raised == 1
    # Length: set A pairs (differences 20, 50, 30), set B one pair (20).
    # t0: longer won every pair: buckets 1-49: 3 of 3 (20, 30, 20), 50-99: 1 of 1.
    assert totals["t0"].length_buckets[0] == [3, 3]
    assert totals["t0"].length_buckets[1] == [1, 1]
    assert totals["t0"].longer_share == 1.0
    # t2 put the 10-char reply above the 30-char one (lost 1 of 3 in A) and tied B (no pair).
    assert totals["t2"].length_pairs == 3
    assert totals["t2"].longer_preferred == 2
    assert project_length_buckets(project, None)[0] == [8, 7]
    # Agreement with the leave-one-out consensus, as the ranking service stores it.
    expected = []
    for the_set in (set_a, set_b):
        orders = list(the_set.rankings.order_by("created_at", "pk").values_list("order", flat=True))
        ids = list(the_set.entries.order_by("position").values_list("message_id", flat=True))
        expected.append(leave_one_out_agreement(orders, ids)[2])
    assert totals["t2"].agreement == pytest.approx(sum(expected) / 2)


def test_tasks_drafts_and_active_trainers_by_day(project, quality_data):
    people = quality_data[0]
    now = timezone.now()
    for seconds, kind, person in [
        (30, "ranking", 0),
        (50, "ranking", 0),
        (200, "demonstration", 1),
    ]:
        Task.objects.create(
            project=project,
            kind=kind,
            state=Task.State.DONE,
            assignee=people[person],
            assigned_at=now - timedelta(seconds=seconds),
            done_at=now,
            ranking_set=RankingSet.objects.filter(project=project).first(),
        )
    prompt = start(project, "Write something")
    draft = say(prompt, "model draft", model=ModelVersionFactory(name="drafter"))
    say(prompt, "edited reply", user=people[1], draft=draft)
    say(prompt, "written from scratch", user=people[1])
    # Not dialogue work: a better reply written while ranking, and an imported conversation.
    say(prompt, "a better reply", user=people[1], meta={"source": "ranking_rewrite"})
    say(start(project, "Imported", source="import"), "imported reply", user=people[1])
    rollups_refresh(project=project)
    day = DailyRollup.objects.get(project=project)
    assert day.tasks_done == {"ranking": 2, "demonstration": 1}
    assert h.quantile(day.task_seconds["ranking"], h.TASK_SECONDS_EDGES, 0.5) == pytest.approx(40)
    assert day.active_trainers == 2
    first = TrainerDay.objects.get(project=project, user=people[0])
    assert first.tasks_done == {"ranking": 2}
    assert h.quantile(first.task_seconds, h.TASK_SECONDS_EDGES, 0.5) == pytest.approx(40)
    # The human-written candidate of set A is an assistant turn too.
    assert (day.assistant_turns, day.from_draft) == (3, 1)
    trainer_row = TrainerDay.objects.get(project=project, user=people[1])
    assert trainer_row.drafts_used == 1
    assert trainer_row.drafts_unedited == 0  # the factory's edit distance is 3


def test_refresh_recomputes_only_recent_days_and_rebuild_all(project, quality_data):
    _, set_a, _ = quality_data
    rollups_refresh(project=project)
    # A set that completed long ago but was written after the last refresh is outside the
    # recomputed window: only a rebuild counts it (what an exclusion or reopen triggers).
    long_ago = timezone.now() - timedelta(days=30)
    RankingSet.objects.filter(pk=set_a.pk).update(completed_at=long_ago)
    DashboardState.objects.filter(project=project).update(
        refreshed_through=timezone.now() - LATE_COMMIT_MARGIN / 2
    )
    rollups_refresh(project=project)
    assert agreement_total(project, None).sets == 1  # today recomputed; day -30 left as it was
    rollups_rebuild(project=project)
    assert agreement_total(project, None).sets == 2
    assert DailyRollup.objects.filter(project=project).count() == 2
    assert DailyRollup.objects.get(project=project, day=long_ago.date()).sets_completed == 1


def test_excluded_rankings_leave_project_figures_but_stay_on_the_trainer(project, quality_data):
    people, set_a, _ = quality_data
    set_a.rankings.filter(annotator=people[2]).update(is_excluded=True)
    dashboards_rebuild(project.pk)
    totals = {t.username: t for t in trainer_totals(project, None)}
    assert totals["t2"].excluded_rankings == 1
    # An excluded ranking still shows on its trainer's row but not in everyone's figure.
    assert DailyRollup.objects.get(project=project).ranking_agreement_count == 5
    assert totals["t2"].rankings == 2
    # Set A's coincidences come from two rankings now: 3 candidates x 2 coders x 1 pair = 6.
    matrix = coincidences_total(project, None)
    set_b_only = rank_coincidences(list(quality_data[2].rankings.values_list("order", flat=True)))
    assert sum(map(sum, matrix)) == pytest.approx(6 + sum(map(sum, set_b_only)))


def test_beat_task_refreshes_every_active_project(project, quality_data, settings):
    entry = settings.CELERY_BEAT_SCHEDULE["refresh-dashboards"]
    # A worker imports the task's module (autodiscovery reads only `<app>.tasks`), so the
    # beat's name resolves there.
    from config.celery import app

    assert "labelling.dashboards.tasks" in app.conf.imports
    assert entry["task"] == refresh_dashboards.name
    assert refresh_dashboards() >= 2
    assert DashboardState.objects.get(project=project).refreshed_through is not None


@pytest.mark.parametrize(
    ("counts", "q", "expected"),
    [
        ([0, 2, 2, 0], 0.5, 10.0),  # edges 0, 5, 10, 20: half the values are below 10
        ([0, 4, 0, 0], 0.5, 7.5),  # inside one bin: linear
        ([0, 0, 0, 3], 0.5, 20.0),  # the open last bin reports its floor
        ([0, 0, 0, 0], 0.5, None),
    ],
)
def test_histogram_quantile(counts, q, expected):
    assert h.quantile(counts, (0, 5, 10, 20), q) == expected


def test_histogram_bins_and_labels():
    assert h.histogram((1, 50, 100), [1, 49, 50, 500, 0]) == [3, 1, 1]
    assert h.bucket_labels((1, 50, 100)) == ["1–49", "50–99", "100+"]


def test_trainer_figures_of_a_range_are_running_totals_apart(project, quality_data):
    people, set_a, set_b = quality_data
    ten_days_ago = timezone.now() - timedelta(days=10)
    RankingSet.objects.filter(pk=set_a.pk).update(completed_at=ten_days_ago)
    rollups_rebuild(project=project)
    # Two rows for t0, the second holding the running total of both sets.
    t0_rows = TrainerDay.objects.filter(project=project, user=people[0]).order_by("day")
    assert [row.rankings for row in t0_rows] == [1, 2]
    today = timezone.now().date()
    recent = DateSpan(start=today - timedelta(days=2), end=today)
    totals = {t.username: t for t in trainer_totals(project, recent)}
    assert totals["t0"].rankings == 1  # set B only
    assert totals["t0"].flags_raised == 1
    assert totals["t0"].length_buckets[1] == [0, 0]  # set A's 50-char pair is outside
    older = DateSpan(start=today - timedelta(days=12), end=today - timedelta(days=5))
    assert {t.username: t.rankings for t in trainer_totals(project, older)} == {
        "t0": 1,
        "t1": 1,
        "t2": 1,
    }
    daily = trainer_daily(
        project, DateSpan(start=today - timedelta(days=12), end=today), people[0].pk
    )
    assert [figures.rankings for _, figures in daily] == [1, 1]


def test_rebuild_from_a_day_redoes_only_the_days_from_then(project, quality_data):
    people, set_a, set_b = quality_data
    ten_days_ago = timezone.now() - timedelta(days=10)
    RankingSet.objects.filter(pk=set_a.pk).update(completed_at=ten_days_ago)
    rollups_rebuild(project=project)
    assert agreement_total(project, None).sets == 2
    # Set B leaves the complete sets (a reopen); a rebuild from five days ago drops it, and
    # keeps set A's older day as it was.
    RankingSet.objects.filter(pk=set_b.pk).update(state=RankingSet.State.COLLECTING)
    five_days_ago = (timezone.now() - timedelta(days=5)).date()
    dashboards_rebuild(project.pk, five_days_ago.isoformat())
    assert agreement_total(project, None).sets == 1
    assert dict(
        DailyRollup.objects.filter(project=project).values_list("day", "sets_completed")
    ) == {ten_days_ago.date(): 1, timezone.now().date(): 0}
    # Running totals carry on from the older rows: t0 now has set A's ranking only.
    assert {t.username: t.rankings for t in trainer_totals(project, None)}["t0"] == 1


def test_candidate_source_names_humans_and_unrecorded_models():
    assert candidate_source("policy-v2", True) == "policy-v2"
    assert candidate_source(None, False) == "human"
    assert candidate_source(None, True) == "unknown model"


def test_one_failing_project_does_not_stop_the_others(project, quality_data, monkeypatch):
    from labelling.dashboards import rollups
    from tests.factories import ProjectFactory

    broken = ProjectFactory(slug="broken")
    real = rollups.rollups_refresh

    def refresh(*, project):
        if project.pk == broken.pk:
            raise RuntimeError("bad data")
        return real(project=project)

    monkeypatch.setattr(rollups, "rollups_refresh", refresh)
    assert rollups.rollups_refresh_all() >= 2
    assert agreement_total(project, None).sets == 2


def test_generation_latency_and_failures_by_day(project, quality_data):
    from trainer_bridge.models import GenerationRequest

    prompt = start(project, "Generate")
    model = ModelVersionFactory(name="gen-model")
    now = timezone.now()
    for seconds, state in [(2, "done"), (4, "done"), (40, "done"), (9, "failed")]:
        request = GenerationRequest.objects.create(
            project=project, context=prompt, model_version=model, purpose="draft", state=state
        )
        GenerationRequest.objects.filter(pk=request.pk).update(
            queued_at=now - timedelta(seconds=seconds), finished_at=now
        )
    GenerationRequest.objects.create(
        project=project, context=prompt, model_version=model, purpose="draft"
    )  # still queued: not counted
    rollups_refresh(project=project)
    day = DailyRollup.objects.get(project=project)
    assert sum(day.generation_seconds) == 3
    assert day.generations_failed == 1
    # Bins [2, 3), [4, 5), [30, 45): the median falls in the middle value's bin, interpolated.
    assert h.quantile(day.generation_seconds, h.GENERATION_SECONDS_EDGES, 0.5) == pytest.approx(4.5)


def test_dashboards_refresh_command(project, quality_data):
    from io import StringIO

    from django.core.management import CommandError, call_command

    out = StringIO()
    call_command("dashboards_refresh", "--project", "alpha", stdout=out)
    assert "alpha: brought current" in out.getvalue()
    assert agreement_total(project, None).sets == 2
    DailyRollup.objects.all().delete()
    call_command("dashboards_refresh", "--rebuild", stdout=out)
    assert agreement_total(project, None).sets == 2
    with pytest.raises(CommandError, match="--since"):
        call_command("dashboards_refresh", "--since", "2026-01-01")
    with pytest.raises(CommandError, match="--since"):
        call_command("dashboards_refresh", "--rebuild", "--since", "soon")
    with pytest.raises(CommandError, match="--project"):
        call_command("dashboards_refresh", "--project", "nope")
