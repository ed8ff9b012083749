"""Objects for tests: factory_boy factories, and the builders of conversations, ranking sets and
their tasks that tests in several folders share (fixtures are in conftest.py)."""

from __future__ import annotations

from typing import Any

import factory
from django.contrib.auth import get_user_model

from annotations.models import (
    Conversation,
    Label,
    Membership,
    Message,
    ModelVersion,
    Project,
    Ranking,
    RankingCandidate,
    RankingSet,
)
from annotations.rankings import ranking_set_finalize
from annotations.services import conversation_start, message_add
from labelling.claims import task_claim_next, task_submit
from labelling.importers import prompt_file_import
from labelling.models import Task
from tests.shared_data import TREES, shared


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("pw-for-tests")


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    slug = factory.Sequence(lambda n: f"project-{n}")
    name = factory.Sequence(lambda n: f"Project {n}")
    guidelines = "Be helpful."


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    project = factory.SubFactory(ProjectFactory)
    role = Membership.Role.TRAINER


class ModelVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ModelVersion

    name = factory.Sequence(lambda n: f"model-{n}")
    source = "org/some-model"


class ConversationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Conversation

    project = factory.SubFactory(ProjectFactory)
    source = Conversation.Source.DEMONSTRATION


class MessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Message

    conversation = factory.SubFactory(ConversationFactory)
    role = Message.Role.USER
    text = factory.Sequence(lambda n: f"Message {n}")


# ---------------------------------------------------------------- members


def trainers(project, count: int, prefix: str = "t") -> list:
    """`count` new trainers of the project, named `prefix` and a number."""
    return [
        MembershipFactory(
            project=project, user=UserFactory(username=f"{prefix}{i}"), role="trainer"
        ).user
        for i in range(count)
    ]


# ---------------------------------------------------------------- conversations


NEXT_ROLE = {"user": "assistant", "system": "user", "assistant": "user"}


def start(project, text: str = "Hello?", *, meta: dict | None = None, role: str = "user",
          source: str = "demonstration", user=None) -> Message:  # fmt: skip
    """The first message of a new conversation."""
    return conversation_start(
        project=project, text=text, role=role, source=source, meta=meta, created_by=user
    )[1]


def say(parent: Message, text: str, *, user=None, model=None, meta: dict | None = None,
        draft: Message | None = None) -> Message:  # fmt: skip
    """The next turn under `parent` (the role that follows it), by a person or a model."""
    return message_add(
        parent=parent,
        role=NEXT_ROLE[parent.role],
        text=text,
        author_user=user,
        author_model=model,
        meta=meta,
        draft=draft,
        draft_edit_distance=3 if draft is not None else None,
    )


# ---------------------------------------------------------------- ranking sets


def ranked_set(
    project,
    context: Message,
    candidates: list[Message],
    rankings: list[tuple[Any, list[list[int]]]],
    *,
    state: str = RankingSet.State.COMPLETE,
    flags: dict[int, dict[int, list[str]]] | None = None,
    rewrites: dict[int, str] | None = None,
) -> RankingSet:
    """A set over `candidates` with one Ranking per (annotator, order by candidate index).

    `flags` and `rewrites` are keyed by the ranking's index in `rankings`; flags name
    candidates by index too. A complete set is finalized by the annotations service (consensus,
    agreement, tau from its rankings), as the N-th submitted ranking does.
    """
    flags, rewrites = flags or {}, rewrites or {}
    ids = [c.pk for c in candidates]
    the_set = RankingSet.objects.create(
        project=project,
        context=context,
        rankings_needed=max(1, len(rankings)),
        state=RankingSet.State.COLLECTING if state == RankingSet.State.COMPLETE else state,
    )
    for position, candidate in enumerate(candidates):
        RankingCandidate.objects.create(ranking_set=the_set, message=candidate, position=position)
    for i, (annotator, order) in enumerate(rankings):
        rewrite = None
        if i in rewrites:
            rewrite = say(context, rewrites[i], user=annotator, meta={"source": "ranking_rewrite"})
        Ranking.objects.create(
            ranking_set=the_set,
            annotator=annotator,
            order=[[ids[c] for c in group] for group in order],
            flags={str(ids[c]): names for c, names in flags.get(i, {}).items()},
            rewrite=rewrite,
            time_spent_ms=1000 + i,
        )
    RankingSet.objects.filter(pk=the_set.pk).update(rankings_count=len(rankings))
    if state == RankingSet.State.COMPLETE:
        ranking_set_finalize(ranking_set=the_set)
    the_set.refresh_from_db()
    the_set.ids = ids
    return the_set


def make_ranking_set(
    project,
    *,
    k: int = 4,
    needed: int | None = None,
    tasks: int | None = None,
    authors=(),
    turns: int = 1,
    texts: list[str] | None = None,
    context_author=None,
    candidate_author=None,
    state: str = RankingSet.State.COLLECTING,
) -> RankingSet:
    """A set as labelling.comparisons makes one: a context, K candidates, N open ranking tasks.

    The context has `turns` messages alternating user / assistant and ending with a user turn.
    As assembly does, the writers of the thread and of the candidates are recorded as authors
    (with `authors` besides), and only a set collecting rankings gets open tasks.
    """
    conversation = Conversation.objects.create(project=project, source=Conversation.Source.PROMPT)
    parent = None
    for depth in range(turns):
        role = Message.Role.USER if (turns - 1 - depth) % 2 == 0 else Message.Role.ASSISTANT
        parent = Message.objects.create(
            conversation=conversation,
            parent=parent,
            role=role,
            text=f"Turn {depth + 1} ({role})",
            depth=depth,
            author_user=context_author if depth == turns - 1 else None,
        )
    needed = needed if needed is not None else project.rankings_per_set
    ranking_set = RankingSet.objects.create(
        project=project, context=parent, rankings_needed=needed, state=state
    )
    ranking_set.authors.set(authors)
    for position in range(k):
        candidate = Message.objects.create(
            conversation=conversation,
            parent=parent,
            role=Message.Role.ASSISTANT,
            text=texts[position] if texts else f"Candidate reply {position + 1}",
            depth=parent.depth + 1,
            author_user=candidate_author if position == 0 else None,
            is_synthetic=not (candidate_author and position == 0),
        )
        RankingCandidate.objects.create(
            ranking_set=ranking_set, message=candidate, position=position
        )
    ranking_set.authors.add(*{context_author, candidate_author} - {None})
    if state != RankingSet.State.COLLECTING:
        return ranking_set
    for _ in range(tasks if tasks is not None else needed):
        Task.objects.create(project=project, kind=Task.Kind.RANKING, ranking_set=ranking_set)
    return ranking_set


def candidate_ids(ranking_set: RankingSet) -> list[int]:
    """The set's candidates' message ids, in position order."""
    return list(ranking_set.entries.order_by("position").values_list("message_id", flat=True))


def claim(project, user) -> Task | None:
    """The user's next ranking task, as the page and the API claim it."""
    return task_claim_next(project=project, user=user, kind="ranking")


def rank(task: Task, user, **extra) -> Task:
    """Submit the task's candidates ranked in their set's order (with `extra` fields)."""
    ids = candidate_ids(task.ranking_set)
    data = {"order": [[i] for i in ids], **extra}
    return task_submit(task_id=task.pk, user=user, data=data)


def import_trees(project) -> None:
    """The Open Assistant sample into `project`: conversations, model/human replies and ranking
    sets (100 trees, 212 sets); the test is skipped when the sample is not there."""
    trees = shared(TREES)
    report = prompt_file_import(project=project, source=trees.read_bytes(), filename="oasst.jsonl")
    assert report.ok, [str(problem) for problem in report.errors]


# ---------------------------------------------------------------- data for the dataset builders


# Choices that, on `varied_data`, give rows with every optional field both empty and set.
VARIED_RUNS: dict[str, list[dict[str, Any]]] = {
    "sft": [{"allow_model_turns": True}],
    "preferences": [
        {"include_rewrites": True, "ties": "keep", "include_incomplete": True},
        {"pairs_from": "annotator", "include_rewrites": True},
    ],
    "rankings": [{"include_incomplete": True}],
    "prompts": [{}],
}


def varied_data(project) -> None:
    """Rows whose optional fields are null or empty in some rows and set in others: a system
    prompt with tags, a model draft, a label, flags, a rewrite, an imported ranking, a tie, a
    model-written candidate, an incomplete set, a root with no author."""

    def member(name):
        return MembershipFactory(project=project, user=UserFactory(username=name)).user

    r1, r2, r3, w1, w2 = (member(name) for name in ("vr1", "vr2", "vr3", "vw1", "vw2"))
    model = ModelVersionFactory(name="varied-model")
    system = start(project, "Be brief.", role="system", meta={"dataset": "set", "tags": ["a"]})
    context = say(system, "Q", user=w2)
    draft = say(context, "draft", model=model)
    replies = [say(context, "human", user=w1, draft=draft), say(context, "m", model=model)]
    replies.append(say(context, "tie", user=w2))
    Label.objects.create(message=replies[0], name="quality", value=4, annotator=r1)
    say(say(replies[1], "and then?"), "after a model turn", user=w1)
    ranked_set(
        project, context, replies,
        [(r1, [[0], [1, 2]]), (r2, [[1], [0], [2]]), (None, [[2], [0], [1]])],
        flags={0: {1: ["pii", "harmful"]}}, rewrites={1: "better"},
    )  # fmt: skip
    other = start(project, "incomplete")
    ranked_set(
        project, other, [say(other, "x", model=model), say(other, "y", user=w1)],
        [(r3, [[0], [1]])], state=RankingSet.State.COLLECTING,
    )  # fmt: skip
