"""Gathering a project's figures for the rollups (see `rollups`): one pass over the completed
sets, done tasks, human-written assistant turns and finished generations since a moment, summed
per UTC day (and trainer, and model / language / tag) in memory before `rollups` writes them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time

import numpy as np
import pandas as pd
from django.db.models.functions import Length

from annotations.agreement import length_pairs, pairs_from_order
from annotations.models import Conversation, Message, Project, Ranking, RankingCandidate, RankingSet
from annotations.reliability import FleissTally, flag_counts, rank_coincidences
from labelling.dashboards import histograms as h
from labelling.dashboards.totals import TrainerTotals
from labelling.models import DailyRollup, GroupDay, Task
from trainer_bridge.models import GenerationRequest

COINCIDENCE_SIZE = 9  # ranks 1..9: a set has at most 9 candidates (Project.replies_per_set)
SETS_PER_BATCH = 2000
HUMAN = "human"
UNKNOWN_MODEL = "unknown model"
# `Message.meta["source"]` of the better reply a trainer writes while ranking (labelling.rankings).
RANKING_REWRITE = "ranking_rewrite"


def candidate_source(model_name: str | None, synthetic: bool) -> str:
    """Who wrote a candidate, for the model figures: its model version's name, "human", or
    "unknown model" for a model-written reply whose model is not recorded (some imports)."""
    if model_name:
        return model_name
    return UNKNOWN_MODEL if synthetic else HUMAN


def utc_day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def agreement_key(value: float) -> str:
    """How a set agreement is stored in `DailyRollup.agreement_values` (4 places)."""
    return f"{value:.4f}"


@dataclass
class DayFigures:
    sets_completed: int = 0
    agreement_sum: float = 0.0
    agreement_count: int = 0
    agreement_values: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    ranking_agreement_sum: float = 0.0
    ranking_agreement_count: int = 0
    coincidences: np.ndarray = field(
        default_factory=lambda: np.zeros((COINCIDENCE_SIZE, COINCIDENCE_SIZE))
    )
    flag_tallies: dict[str, FleissTally] = field(default_factory=lambda: defaultdict(FleissTally))
    model_wins: dict[str, dict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )
    tasks_done: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    task_seconds: dict[str, list[int]] = field(
        default_factory=lambda: defaultdict(lambda: h.empty(h.TASK_SECONDS_EDGES))
    )
    generation_seconds: list[int] = field(
        default_factory=lambda: h.empty(h.GENERATION_SECONDS_EDGES)
    )
    generations_failed: int = 0
    assistant_turns: int = 0
    from_draft: int = 0
    edit_distances: list[int] = field(default_factory=lambda: h.empty(h.EDIT_DISTANCE_EDGES))

    def row(self, project: Project, day: date, active_trainers: int) -> DailyRollup:
        return DailyRollup(
            project=project,
            day=day,
            sets_completed=self.sets_completed,
            agreement_sum=self.agreement_sum,
            agreement_count=self.agreement_count,
            agreement_values=dict(self.agreement_values),
            ranking_agreement_sum=self.ranking_agreement_sum,
            ranking_agreement_count=self.ranking_agreement_count,
            coincidences=self.coincidences.tolist() if self.sets_completed else [],
            flag_tallies={name: tally.to_json() for name, tally in self.flag_tallies.items()},
            model_wins={w: dict(losers) for w, losers in self.model_wins.items()},
            tasks_done=dict(self.tasks_done),
            task_seconds=dict(self.task_seconds),
            generation_seconds=self.generation_seconds,
            generations_failed=self.generations_failed,
            assistant_turns=self.assistant_turns,
            from_draft=self.from_draft,
            edit_distances=self.edit_distances,
            active_trainers=active_trainers,
        )


@dataclass
class GroupFigures:
    sets: int = 0
    agreement_sum: float = 0.0
    agreement_count: int = 0


@dataclass
class Gathered:
    """Everything one recomputation gathers before it writes."""

    flag_names: list[str]
    days: dict[date, DayFigures] = field(default_factory=lambda: defaultdict(DayFigures))
    trainers: dict[tuple[date, int], TrainerTotals] = field(default_factory=dict)
    groups: dict[tuple[date, str, str], GroupFigures] = field(
        default_factory=lambda: defaultdict(GroupFigures)
    )
    sources: int = 0

    def trainer(self, day: date, user_id: int) -> TrainerTotals:
        key = (day, user_id)
        if key not in self.trainers:
            self.trainers[key] = TrainerTotals(user_id=user_id)
        return self.trainers[key]


def flag_names(project: Project) -> list[str]:
    return [label["name"] for label in project.label_schema or [] if label.get("kind") == "flag"]


# --- gathering ---------------------------------------------------------------------------------


def gather_sets(rollup: Gathered, project: Project, since: datetime | None) -> None:
    sets = RankingSet.objects.filter(project=project, state=RankingSet.State.COMPLETE).exclude(
        completed_at=None
    )
    if since is not None:
        sets = sets.filter(completed_at__gte=since)
    last_pk = 0
    while True:
        batch = list(
            sets.filter(pk__gt=last_pk)
            .order_by("pk")
            .values_list(
                "pk",
                "completed_at",
                "agreement",
                "consensus",
                "context__lang",
                "context__conversation__meta__tags",
            )[:SETS_PER_BATCH]
        )
        if not batch:
            return
        last_pk = batch[-1][0]
        ids = [row[0] for row in batch]
        candidates: dict[int, list[tuple[int, int, str]]] = defaultdict(list)
        for set_id, message_id, length, model_name, synthetic in (
            RankingCandidate.objects.filter(ranking_set_id__in=ids)
            .order_by("ranking_set_id", "position")
            .values_list(
                "ranking_set_id",
                "message_id",
                Length("message__text"),
                "message__author_model__name",
                "message__is_synthetic",
            )
        ):
            candidates[set_id].append((message_id, length, candidate_source(model_name, synthetic)))
        rankings: dict[int, list[tuple]] = defaultdict(list)
        for row in (
            Ranking.objects.filter(ranking_set_id__in=ids)
            .order_by("ranking_set_id", "created_at", "pk")
            .values_list(
                "ranking_set_id",
                "annotator_id",
                "order",
                "flags",
                "all_bad",
                "is_excluded",
                "consensus_agreement",
            )
        ):
            rankings[row[0]].append(row[1:])
        for set_id, completed_at, agreement, consensus, lang, tags in batch:
            _add_set(
                rollup,
                day=utc_day(completed_at),
                agreement=agreement,
                consensus=consensus or [],
                lang=lang or "",
                tags=tags if isinstance(tags, list) else [],
                candidates=candidates[set_id],
                rankings=rankings[set_id],
            )
        rollup.sources += len(batch)


def _add_set(
    rollup: Gathered,
    *,
    day: date,
    agreement: float | None,
    consensus: list[list[int]],
    lang: str,
    tags: list,
    candidates: list[tuple[int, int, str]],
    rankings: list[tuple],
) -> None:
    totals = rollup.days[day]
    totals.sets_completed += 1
    if agreement is not None:
        totals.agreement_sum += agreement
        totals.agreement_count += 1
        totals.agreement_values[agreement_key(agreement)] += 1
    candidate_ids = [message_id for message_id, _, _ in candidates]
    lengths = {message_id: length for message_id, length, _ in candidates}
    models = {message_id: model for message_id, _, model in candidates}

    counted = [r for r in rankings if not r[4]]  # not excluded
    if len(counted) >= 2:
        totals.coincidences += np.asarray(
            rank_coincidences([r[1] for r in counted], size=COINCIDENCE_SIZE)
        )
        _add_flags(totals, rollup.flag_names, [r[2] or {} for r in counted], candidate_ids)

    for winner, loser in pairs_from_order(consensus):
        won, lost = models.get(winner), models.get(loser)
        if won is not None and lost is not None and won != lost:
            totals.model_wins[won][lost] += 1

    for dimension, values in (
        (GroupDay.Dimension.MODEL, sorted(set(models.values()))),
        (GroupDay.Dimension.LANGUAGE, [lang or "unknown"]),
        (GroupDay.Dimension.TAG, sorted({str(tag)[:200] for tag in tags if tag})),
    ):
        for value in values:
            group = rollup.groups[(day, dimension, value)]
            group.sets += 1
            if agreement is not None:
                group.agreement_sum += agreement
                group.agreement_count += 1

    for annotator_id, order, flags, all_bad, excluded, consensus_agreement in rankings:
        if annotator_id is None:
            continue  # imported rankings have no trainer
        trainer = rollup.trainer(day, annotator_id)
        trainer.rankings += 1
        trainer.excluded_rankings += bool(excluded)
        if consensus_agreement is not None:
            trainer.agreement_sum += consensus_agreement
            trainer.agreement_count += 1
            if not excluded:
                totals.ranking_agreement_sum += consensus_agreement
                totals.ranking_agreement_count += 1
        trainer.all_bad += bool(all_bad)
        trainer.flags_raised += sum(len(names) for names in (flags or {}).values())
        pairs = length_pairs(order, lengths)
        for difference, longer_won in pairs:
            bucket = trainer.length_buckets[h.bin_index(h.LENGTH_EDGES, difference)]
            bucket[0] += 1
            bucket[1] += longer_won
        trainer.length_pairs += len(pairs)
        trainer.longer_preferred += sum(longer_won for _, longer_won in pairs)


def _add_flags(
    totals: DayFigures, names: Sequence[str], flags: Sequence[dict], candidates: Sequence[int]
) -> None:
    raters = len(flags)
    if not any(flags):
        # The common case, nobody flagged anything: every item is a unanimous "no".
        for name in names:
            totals.flag_tallies[name].add([0, raters], times=len(candidates))
        return
    for name in names:
        tally = totals.flag_tallies[name]
        for counts in flag_counts(flags, candidates, name):
            tally.add(counts)


def gather_tasks(rollup: Gathered, project: Project, since: datetime | None) -> None:
    """Done tasks per day and kind, and per trainer, with histograms of their seconds.

    A rebuild reads every done task (three per set), so the counting is pandas group-bys over
    one frame rather than a Python step per task.
    """
    tasks = Task.objects.filter(project=project, state=Task.State.DONE).exclude(done_at=None)
    if since is not None:
        tasks = tasks.filter(done_at__gte=since)
    frame = pd.DataFrame.from_records(
        tasks.order_by()
        .values_list("kind", "assignee_id", "assigned_at", "done_at")
        .iterator(chunk_size=10_000),
        columns=["kind", "assignee_id", "assigned_at", "done_at"],
    )
    if frame.empty:
        return
    done_at = pd.to_datetime(frame["done_at"], utc=True)
    frame["day"] = done_at.dt.date
    seconds = (done_at - pd.to_datetime(frame["assigned_at"], utc=True)).dt.total_seconds()
    timed = seconds.notna()
    frame["bin"] = -1
    frame.loc[timed, "bin"] = np.maximum(
        np.searchsorted(h.TASK_SECONDS_EDGES, seconds[timed].to_numpy(), side="right") - 1, 0
    )
    for (day, kind), count in frame.groupby(["day", "kind"]).size().items():
        rollup.days[day].tasks_done[kind] += int(count)
    for (day, kind, index), count in frame[timed].groupby(["day", "kind", "bin"]).size().items():
        rollup.days[day].task_seconds[kind][index] += int(count)
    people = frame[frame["assignee_id"].notna()]
    for (day, user_id, kind), count in (
        people.groupby(["day", "assignee_id", "kind"]).size().items()
    ):
        rollup.trainer(day, int(user_id)).tasks_done[kind] += int(count)
    people = people[people["bin"] >= 0]
    for (day, user_id, index), count in (
        people.groupby(["day", "assignee_id", "bin"]).size().items()
    ):
        rollup.trainer(day, int(user_id)).task_seconds[index] += int(count)
    rollup.sources += len(frame)


def gather_turns(rollup: Gathered, project: Project, since: datetime | None) -> None:
    """Assistant turns trainers wrote, those started from a model draft and how far they were
    edited. Imported conversations and the better replies written while ranking are not
    dialogue work a draft could have helped, so they are left out."""
    turns = Message.objects.filter(
        conversation__project=project,
        role=Message.Role.ASSISTANT,
        author_user__isnull=False,
    ).exclude(conversation__source__in=[Conversation.Source.IMPORT, Conversation.Source.API])
    if since is not None:
        turns = turns.filter(created_at__gte=since)
    for author_id, created_at, draft_id, distance, source in (
        turns.order_by()
        .values_list(
            "author_user_id", "created_at", "draft_id", "draft_edit_distance", "meta__source"
        )
        .iterator(chunk_size=10_000)
    ):
        if source == RANKING_REWRITE:
            continue
        day = utc_day(created_at)
        totals = rollup.days[day]
        totals.assistant_turns += 1
        if draft_id is None:
            continue
        totals.from_draft += 1
        trainer = rollup.trainer(day, author_id)
        trainer.drafts_used += 1
        if distance is not None:
            h.add_value(totals.edit_distances, h.EDIT_DISTANCE_EDGES, distance)
            trainer.drafts_unedited += distance == 0


def gather_generations(rollup: Gathered, project: Project, since: datetime | None) -> None:
    generations = GenerationRequest.objects.filter(project=project).exclude(finished_at=None)
    if since is not None:
        generations = generations.filter(finished_at__gte=since)
    for state, queued_at, finished_at in (
        generations.order_by()
        .values_list("state", "queued_at", "finished_at")
        .iterator(chunk_size=10_000)
    ):
        totals = rollup.days[utc_day(finished_at)]
        if state == GenerationRequest.State.DONE:
            seconds = (finished_at - queued_at).total_seconds()
            h.add_value(totals.generation_seconds, h.GENERATION_SECONDS_EDGES, seconds)
        elif state == GenerationRequest.State.FAILED:
            totals.generations_failed += 1


def gather(project: Project, since: datetime | None) -> Gathered:
    """Everything since `since` (None: ever), summed per day; `sources` counts the rows read."""
    gathered = Gathered(flag_names=flag_names(project))
    gather_sets(gathered, project, since)
    gather_tasks(gathered, project, since)
    gather_turns(gathered, project, since)
    gather_generations(gathered, project, since)
    return gathered
