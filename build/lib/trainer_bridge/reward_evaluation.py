"""Reward models against fresh human rankings: how often a reward model orders two replies the way
the trainers' consensus does, on the project's complete ranking sets that none of its training
snapshots held, overall and per round.

Over-optimising a learned reward is this recipe's known failure; a reward model whose accuracy
on new rounds falls below its validation accuracy is one to retrain before the next PPO run. A
round is the set of models that wrote a ranking set's candidates (e.g. `tiny-policy`, then
`tiny-policy + alpha-ppo-run-7` once a tuned policy joined the candidates).
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from annotations.models import ModelVersion, Project, RankingCandidate, RankingSet
from annotations.selectors import thread_to
from exports.models import ExportSnapshot
from exports.services import export_lines
from trainer_bridge.loading import resolve_source
from trainer_bridge.models import RewardEvaluation, TrainingRun

logger = logging.getLogger(__name__)
State = RewardEvaluation.State

HUMAN_ROUND = "human replies only"
# Kinds whose rows name their ranking set in meta.group_id.
SET_KINDS = ("preferences", "rankings")
_GROUP_ID = re.compile(rb'"group_id":\s*(\d+)')


def reward_evaluation_create(
    *, project: Project, reward_model: ModelVersion, requested_by: AbstractBaseUser | None = None
) -> RewardEvaluation:
    """A queued evaluation (the caller sends it to the train queue after the commit)."""
    return RewardEvaluation.objects.create(
        project=project, reward_model=reward_model, requested_by=requested_by
    )


def trained_set_ids(reward_model: ModelVersion) -> tuple[set[int], bool]:
    """Ids of the ranking sets the reward model's training snapshots held, and whether it has a
    training run here at all (a model trained elsewhere leaves nothing out)."""
    run = TrainingRun.objects.filter(result_model=reward_model).first()
    if run is None:
        return set(), False
    ids: set[int] = set()
    for snapshot in run.snapshots.filter(kind__in=SET_KINDS, state=ExportSnapshot.State.DONE):
        ids |= snapshot_set_ids(snapshot)
    return ids, True


def snapshot_set_ids(snapshot: ExportSnapshot) -> set[int]:
    """The ranking sets a preferences or rankings snapshot holds, read from its files."""
    ids: set[int] = set()
    for split, entry in (snapshot.manifest or {}).get("splits", {}).items():
        if not entry.get("rows"):
            continue
        for line in export_lines(snapshot, split):
            found = _GROUP_ID.search(line)
            if found:
                ids.add(int(found.group(1)))
    return ids


@dataclass(frozen=True)
class FreshSet:
    """One ranking set ready for scoring, with the round it belongs to."""

    round: str
    prompt: list[dict[str, str]]
    completions: list[str]
    consensus: list[list[int]]  # groups of completion indices, best first


def fresh_sets(project: Project, *, exclude: set[int]) -> list[FreshSet]:
    """The project's complete sets with a consensus, less `exclude`, in creation order."""
    sets = list(
        RankingSet.objects.filter(
            project=project, state=RankingSet.State.COMPLETE, consensus__isnull=False
        )
        .exclude(pk__in=exclude)
        .select_related("context")
        .order_by("created_at", "pk")
    )
    candidates: dict[int, list[tuple[int, str, str | None]]] = defaultdict(list)
    for set_id, message_id, text, model_name in (
        RankingCandidate.objects.filter(ranking_set__in=[s.pk for s in sets])
        .order_by("ranking_set_id", "position")
        .values_list("ranking_set_id", "message_id", "message__text", "message__author_model__name")
    ):
        candidates[set_id].append((message_id, text, model_name))
    out = []
    for ranking_set in sets:
        entries = candidates.get(ranking_set.pk, [])
        index = {message_id: i for i, (message_id, _, _) in enumerate(entries)}
        consensus = [
            [index[m] for m in group if m in index] for group in ranking_set.consensus or []
        ]
        consensus = [group for group in consensus if group]
        if len(entries) < 2 or len(consensus) < 2:
            continue  # nothing to order
        models = sorted({name for _, _, name in entries if name})
        out.append(
            FreshSet(
                round=" + ".join(models) if models else HUMAN_ROUND,
                prompt=[
                    {"role": m.role, "content": m.text} for m in thread_to(ranking_set.context)
                ],
                completions=[text for _, text, _ in entries],
                consensus=consensus,
            )
        )
    return out


def _ranked_sets(sets: Iterable[FreshSet]):
    from trainer_bridge.training.reward_eval import RankedSet

    return [
        RankedSet(prompt=s.prompt, completions=s.completions, consensus=s.consensus) for s in sets
    ]


@transaction.atomic
def _claim(evaluation_id: int) -> RewardEvaluation | None:
    evaluation = (
        RewardEvaluation.objects.select_for_update(of=("self",))
        .select_related("project", "reward_model")
        .filter(pk=evaluation_id, state=State.QUEUED)
        .first()
    )
    if evaluation is None:
        return None
    evaluation.state = State.RUNNING
    evaluation.save(update_fields=["state"])
    return evaluation


def reward_evaluation_run(evaluation_id: int) -> RewardEvaluation | None:
    """Score the fresh sets with the reward model, per round and overall (run by a task on the
    train queue; a second delivery finds it no longer queued and does nothing)."""
    evaluation = _claim(evaluation_id)
    if evaluation is None:
        return None
    mine = RewardEvaluation.objects.filter(pk=evaluation.pk, state=State.RUNNING)
    try:
        from trainer_bridge.training.reward_eval import reward_accuracy

        exclude, _ = trained_set_ids(evaluation.reward_model)
        sets = fresh_sets(evaluation.project, exclude=exclude)
        by_round: dict[str, list[FreshSet]] = defaultdict(list)
        for fresh in sets:
            by_round[fresh.round].append(fresh)
        path = str(resolve_source(evaluation.reward_model.source))
        rounds = []
        for name, members in by_round.items():
            result = reward_accuracy(path, _ranked_sets(members))
            rounds.append(
                {
                    "round": name,
                    "sets": result.sets,
                    "pairs": result.pairs,
                    "correct": result.correct,
                    "accuracy": result.correct / result.pairs if result.pairs else None,
                }
            )
        left_out = RankingSet.objects.filter(
            project=evaluation.project, state=RankingSet.State.COMPLETE, pk__in=exclude
        ).count()
    except Exception as exc:
        logger.exception("Reward evaluation %s failed", evaluation.pk)
        mine.update(
            state=State.FAILED,
            error=f"{type(exc).__name__}: {exc}"[:2000],
            finished_at=timezone.now(),
        )
        return RewardEvaluation.objects.get(pk=evaluation.pk)
    mine.update(
        state=State.DONE,
        sets=sum(r["sets"] for r in rounds),
        pairs=sum(r["pairs"] for r in rounds),
        correct=sum(r["correct"] for r in rounds),
        sets_left_out=left_out,
        rounds=rounds,
        finished_at=timezone.now(),
    )
    return RewardEvaluation.objects.get(pk=evaluation.pk)
