"""The drill-down of one ranking set: every trainer's ranking beside the consensus, with the
replies' text, for a lead asking why a set's agreement is low."""

from __future__ import annotations

from dataclasses import dataclass

from django.shortcuts import get_object_or_404

from annotations.models import Message, Project, Ranking, RankingCandidate, RankingSet
from annotations.reliability import order_ranks
from annotations.selectors import thread_to
from labelling.dashboards.gathering import candidate_source


@dataclass(frozen=True)
class Place:
    """Where one order puts one candidate: its group's rank (1 = best) and whether it is tied."""

    rank: int
    tied: bool
    flags: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.rank}=" if self.tied else str(self.rank)


@dataclass(frozen=True)
class CandidateRow:
    message: Message
    source: str
    consensus: Place | None
    places: list[Place | None]  # one per ranking column, in `SetDrillDown.rankings` order


@dataclass(frozen=True)
class RankingColumn:
    ranking: Ranking
    annotator: str


@dataclass(frozen=True)
class SetDrillDown:
    ranking_set: RankingSet
    thread: list[Message]
    rankings: list[RankingColumn]
    rows: list[CandidateRow]  # best consensus first


def _places(order, flags: dict | None = None) -> dict[int, Place]:
    """Each candidate's place in an order: one more than the candidates above it (standard
    competition ranking: after a tie of two for first the next is third). An order that is not
    a list of groups of ids (a damaged import) places nothing."""
    flags = flags if isinstance(flags, dict) else {}
    places: dict[int, Place] = {}
    try:
        ranks = order_ranks(order)
    except (ValueError, TypeError):
        return places
    for group in order:
        for candidate in group:
            named = flags.get(str(candidate), ())
            named = tuple(str(n) for n in named) if isinstance(named, list) else ()
            places[candidate] = Place(rank=ranks[candidate], tied=len(group) > 1, flags=named)
    return places


def set_drill_down(*, project: Project, pk: int) -> SetDrillDown:
    """The set `pk` of `project` (404 when it is not the project's)."""
    ranking_set = get_object_or_404(
        RankingSet.objects.select_related("context"), project=project, pk=pk
    )
    entries = list(
        RankingCandidate.objects.filter(ranking_set=ranking_set)
        .select_related("message__author_model")
        .order_by("position")
    )
    rankings = list(
        ranking_set.rankings.select_related("annotator").order_by("is_excluded", "created_at", "id")
    )
    consensus = _places(ranking_set.consensus or [])
    ranked = [_places(r.order, r.flags) for r in rankings]
    rows = [
        CandidateRow(
            message=entry.message,
            source=candidate_source(
                entry.message.author_model.name if entry.message.author_model_id else None,
                entry.message.is_synthetic,
            ),
            consensus=consensus.get(entry.message_id),
            places=[places.get(entry.message_id) for places in ranked],
        )
        for entry in entries
    ]
    rows.sort(key=lambda row: row.consensus.rank if row.consensus else 10**6)
    columns = [
        RankingColumn(
            ranking=r,
            annotator=r.annotator.get_username() if r.annotator else "import",
        )
        for r in rankings
    ]
    return SetDrillDown(
        ranking_set=ranking_set,
        thread=thread_to(ranking_set.context),
        rankings=columns,
        rows=rows,
    )
