"""The `sft` dataset: one row per human-written assistant message, with the thread from the root
down to it, for supervised fine-tuning (TRL's SFTTrainer).

A thread with a model-written assistant turn is left out unless `allow_model_turns`; with
`best_path_only`, a thread that passes through a sibling ranked below the top of a completed
ranking set is left out (Open Assistant's way of building its SFT set).
"""

from __future__ import annotations

from collections.abc import Iterator

from annotations.models import Conversation, Label, Message, Ranking, RankingSet
from exports.builders.common import (
    ExportContext,
    Row,
    date_filter,
    demonstration_source,
    dumps,
    iso,
    keyset_chunks,
)

MESSAGE_FIELDS = (
    "conversation_id",
    "parent_id",
    "role",
    "text",
    "lang",
    "is_synthetic",
    "author_user_id",
    "author_model_id",
    "draft_id",
    "draft__author_model_id",
    "draft_edit_distance",
    "created_at",
)


def _conversations(ctx: ExportContext):
    conversations = Conversation.objects.filter(project=ctx.project)
    if ctx.reported_conversations:
        conversations = conversations.exclude(pk__in=ctx.reported_conversations)
    return conversations


def _anchors(ctx: ExportContext):
    """Human-written assistant messages the choices allow (before thread checks)."""
    choices = ctx.choices
    anchors = Message.objects.filter(
        conversation__project=ctx.project, role=Message.Role.ASSISTANT, is_synthetic=False
    ).filter(date_filter("created_at", choices))
    if choices.languages:
        anchors = anchors.filter(lang__in=choices.languages)
    # A trainer's rewrite is stored as a demonstration; when a lead excludes the ranking it came
    # with, the rewrite stays out too.
    excluded_rewrites = Ranking.objects.filter(is_excluded=True, rewrite__isnull=False)
    return anchors.exclude(pk__in=excluded_rewrites.values("rewrite_id")).exclude(is_excluded=True)


def expected_rows(ctx: ExportContext) -> int:
    return _anchors(ctx).exclude(pk__in=ctx.scratch_messages).count()


def rows(ctx: ExportContext) -> Iterator[Row]:
    choices = ctx.choices
    pseudonym = ctx.pseudonyms
    anchors_q = _anchors(ctx)
    for chunk in keyset_chunks(_conversations(ctx), ("source", "meta"), size=500):
        sources = {pk: demonstration_source(source, meta) for pk, source, meta in chunk}
        wanted = [
            pk
            for pk, source in sources.items()
            if (not choices.sources or source in choices.sources)
            and source not in choices.exclude_sources
        ]
        ctx.count("conversations_of_other_sources", len(sources) - len(wanted))
        if not wanted:
            continue
        nodes = {
            row[0]: row
            for row in Message.objects.filter(conversation_id__in=wanted)
            .order_by("id")
            .values_list("id", *MESSAGE_FIELDS)
        }
        anchor_ids = set(anchors_q.filter(conversation_id__in=wanted).values_list("id", flat=True))
        labels: dict[int, list[dict]] = {}
        for message_id, name, value, annotator_id in (
            Label.objects.filter(message_id__in=anchor_ids)
            .order_by("message_id", "name", "annotator_id", "id")
            .values_list("message_id", "name", "value", "annotator_id")
        ):
            labels.setdefault(message_id, []).append(
                {"name": name, "value": value, "annotator": pseudonym(annotator_id)}
            )
        below_top: set[int] = set()
        if choices.best_path_only:
            for consensus in RankingSet.objects.filter(
                context__conversation_id__in=wanted, state=RankingSet.State.COMPLETE
            ).values_list("consensus", flat=True):
                for group in (consensus or [])[1:]:
                    below_top.update(group)
        flagged = _flagged(ctx, anchor_ids, labels)
        for anchor_id in sorted(anchor_ids):
            row = _row(ctx, nodes, anchor_id, labels, below_top, flagged, sources)
            if row is not None:
                yield row


def _flagged(ctx: ExportContext, anchor_ids: set[int], labels: dict[int, list[dict]]) -> set[int]:
    """Anchors carrying an excluded flag: a flag label, or a flag a ranker put on the reply as a
    candidate of a ranking set (rankings a lead excluded, or by excluded trainers, do not count)."""
    excluded_flags = set(ctx.choices.exclude_flags)
    if not excluded_flags:
        return set()
    flagged = {
        message_id
        for message_id, anchor_labels in labels.items()
        if any(lb["name"] in excluded_flags and lb["value"] >= 1 for lb in anchor_labels)
    }
    rankings = Ranking.objects.filter(
        ranking_set__entries__message_id__in=anchor_ids, is_excluded=False
    ).exclude(flags={})
    if ctx.excluded_annotators:
        rankings = rankings.exclude(annotator_id__in=ctx.excluded_annotators)
    for flags in rankings.order_by().values_list("flags", flat=True):
        for key, names in (flags or {}).items():
            if int(key) in anchor_ids and excluded_flags & set(names):
                flagged.add(int(key))
    return flagged


def _row(ctx, nodes, anchor_id, labels, below_top, flagged, sources) -> Row | None:
    chain: list[tuple] = []
    current = anchor_id
    while current is not None:
        node = nodes[current]
        chain.append(node)
        current = node[2]
    chain.reverse()
    anchor = chain[-1]
    (
        _,
        conversation_id,
        _,
        _,
        _,
        lang,
        _,
        author_user_id,
        _,
        draft_id,
        draft_model,
        distance,
        created,
    ) = anchor
    if any(node[0] in ctx.scratch_messages for node in chain):
        ctx.count("threads_with_unsubmitted_turns")
        return None
    if ctx.excluded_messages and any(node[0] in ctx.excluded_messages for node in chain):
        ctx.count("threads_with_excluded_messages")
        return None
    # Any turn by an excluded trainer, not only the last: the thread would train on their text.
    if ctx.excluded_annotators and any(node[7] in ctx.excluded_annotators for node in chain):
        ctx.count("threads_with_turns_of_excluded_annotators")
        return None
    if not ctx.choices.allow_model_turns and any(
        node[3] == Message.Role.ASSISTANT and node[6] for node in chain
    ):
        ctx.count("threads_with_model_turns")
        return None
    if below_top and any(node[0] in below_top for node in chain):
        ctx.count("threads_off_the_best_path")
        return None
    if anchor_id in flagged:
        ctx.count("messages_flagged")
        return None
    anchor_labels = labels.get(anchor_id, [])
    source = sources[conversation_id]
    row = {
        "messages": [{"role": node[3], "content": node[4]} for node in chain],
        "meta": {
            "message_id": anchor_id,
            "conversation_id": conversation_id,
            "source": source,
            "lang": lang,
            "annotator": ctx.pseudonyms(author_user_id),
            "message_ids": [node[0] for node in chain],
            # One {"model", "annotator"} per turn rather than two lists of names: pyarrow's JSON
            # reader (26.0) builds a broken column from a list that starts with null, such as
            # [null, "tiny-v1"], and `datasets.load_dataset` fails (apache/arrow#51305).
            "authors": [
                {"model": ctx.model_name(node[8]), "annotator": ctx.pseudonyms(node[7])}
                for node in chain
            ],
            "draft_id": draft_id,
            "draft_model": ctx.model_name(draft_model),
            "edit_distance": distance,
            "labels": anchor_labels,
            "created_at": iso(created),
        },
    }
    return Row(conversation_id, dumps(row), source)
