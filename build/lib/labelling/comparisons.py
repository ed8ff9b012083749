"""Choosing what to compare: picking contexts, sampling candidates, assembling ranking sets.

A *context* is a user turn after which the assistant speaks next. A project allows some of
three kinds (`Project.comparison_contexts`):

- ``prompt``: the first user turn of a pool prompt (alone, or after a system prompt);
- ``model_reply``: a user turn that answers an assistant turn written by a model;
- ``human_reply``: a user turn that answers an assistant turn written by a person.

A context is used by at most one ranking set: the random pick skips any context that has ever
had one (a cancelled set included, so a context whose sampling keeps failing is not retried in a
loop); a lead who names a context may reuse one whose only sets were cancelled.

A set starts in ``sampling`` with its generation requests; `comparison_assemble` (run by a beat
task) turns it into K candidates and N ranking tasks once the requests are done, re-sampling
while exact duplicates leave it short of K.
"""

from __future__ import annotations

import logging
import random
import re
import unicodedata
from collections import Counter

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet

from annotations.models import Conversation, Message, ModelVersion, Project, RankingSet
from annotations.rankings import (
    ranking_set_cancel,
    ranking_set_collect,
    ranking_set_create,
    ranking_set_resampled,
)
from annotations.reports import prompt_reports_keeping_out
from labelling.demonstrations import SCRATCH_KEY
from labelling.models import RankingSetSampling, Task
from trainer_bridge.generation import generation_request_create
from trainer_bridge.models import GenerationRequest
from trainer_bridge.sampling_params import SamplingParams

logger = logging.getLogger(__name__)

CONTEXT_KINDS = ("prompt", "model_reply", "human_reply")
ACTIVE_SET_STATES = (RankingSet.State.SAMPLING, RankingSet.State.COLLECTING)
UNFINISHED_REQUEST_STATES = (GenerationRequest.State.QUEUED, GenerationRequest.State.RUNNING)


def comparison_settings() -> dict:
    return settings.PARLEY["COMPARISONS"]


# ---------------------------------------------------------------------------- contexts


def comparison_contexts_eligible(*, project: Project, kind: str) -> QuerySet[Message]:
    """User turns of `project` of one context kind that no ranking set has used yet.

    Left out: contexts with no room for a reply under the project's turn limit, any
    conversation with a prompt report that is open or upheld (the prompt left the pool), and a
    demonstration's unsubmitted scratch turns.
    """
    if kind not in CONTEXT_KINDS:
        raise ValueError(f"Unknown context kind {kind!r}; use one of {', '.join(CONTEXT_KINDS)}.")
    reported = prompt_reports_keeping_out().filter(
        message__conversation_id=OuterRef("conversation_id")
    )
    contexts = Message.objects.filter(
        conversation__project=project,
        role=Message.Role.USER,
        depth__lt=project.max_turns - 1,
    ).exclude(
        Q(Exists(RankingSet.objects.filter(context_id=OuterRef("pk"))))
        | Q(Exists(reported))
        | Q(meta__has_key=SCRATCH_KEY)
        | Q(conversation__meta__has_key=SCRATCH_KEY)
    )
    if kind == "prompt":
        return contexts.filter(
            Q(parent__isnull=True) | Q(parent__role=Message.Role.SYSTEM),
            conversation__source=Conversation.Source.PROMPT,
        )
    return contexts.filter(
        parent__role=Message.Role.ASSISTANT, parent__is_synthetic=(kind == "model_reply")
    )


def comparison_context_pick(*, project: Project) -> Message | None:
    """A random unused context: first a random allowed kind that has one, then one of its kind.

    Choosing the kind first keeps a large prompt pool from crowding out the rarer cuts deeper in
    conversations that a project also asked for.
    """
    kinds = [
        kind for kind in dict.fromkeys(project.comparison_contexts or []) if kind in CONTEXT_KINDS
    ]
    random.shuffle(kinds)
    for kind in kinds:
        contexts = comparison_contexts_eligible(project=project, kind=kind).order_by("pk")
        count = contexts.count()
        if count:
            return contexts.select_related("conversation")[random.randrange(count)]
    return None


def _check_context(*, project: Project, context: Message) -> None:
    if context.conversation.project_id != project.pk:
        raise ValidationError({"context": "The context belongs to another project."})
    if context.role != Message.Role.USER:
        raise ValidationError(
            {"context": "A comparison cuts a conversation after a user turn; this is not one."}
        )
    if context.depth + 1 >= project.max_turns:
        raise ValidationError(
            {"context": f"The conversation has no room for a reply ({project.max_turns} turns)."}
        )
    used = [*ACTIVE_SET_STATES, RankingSet.State.COMPLETE]
    if RankingSet.objects.filter(context=context, state__in=used).exists():
        raise ValidationError({"context": "This context already has a ranking set."})


def human_reply_to(context: Message) -> Message | None:
    """The first person-written assistant reply to `context` (not a demonstration's scratch)."""
    return (
        context.children.filter(role=Message.Role.ASSISTANT, is_synthetic=False)
        .exclude(meta__has_key=SCRATCH_KEY)
        .order_by("created_at", "id")
        .first()
    )


# ---------------------------------------------------------------------------- sampling


def candidate_models(project: Project) -> list[ModelVersion]:
    return list(project.candidate_models.filter(kind=ModelVersion.Kind.POLICY).order_by("name"))


def candidate_params(
    *, project: Project, model: ModelVersion, already_drawn: int = 0
) -> SamplingParams:
    """The project's sampling settings overlaid with the model's own.

    With a fixed seed, each request of a set moves the seed on by the samples the set already
    drew: a seeded request repeats its samples exactly, so a second request to the same model
    (or to another name for the same weights) and a re-sample would otherwise repeat them too.
    """
    own = (project.candidate_sampling or {}).get(model.name)
    return SamplingParams.for_project(project.sampling, own).with_seed_moved(already_drawn)


def _request_samples(
    *,
    project: Project,
    context: Message,
    models: list[ModelVersion],
    count: int,
    drawn: int,
    requested_by: AbstractBaseUser | None,
) -> list[GenerationRequest]:
    """Ask for `count` samples spread round-robin over `models` from a random first model.

    `drawn` is how many samples the set already asked for. A model's share goes out in requests
    of at most the project's per-request limit.
    """
    start = random.randrange(len(models))
    shares = Counter(models[(start + i) % len(models)].pk for i in range(count))
    requests = []
    for model in models:
        share = shares[model.pk]
        while share > 0:
            n = min(share, project.max_generations_per_request)
            requests.append(
                generation_request_create(
                    project=project,
                    context=context,
                    model_version=model,
                    purpose=GenerationRequest.Purpose.CANDIDATES,
                    n=n,
                    params=candidate_params(project=project, model=model, already_drawn=drawn),
                    requested_by=requested_by,
                )
            )
            drawn += n
            share -= n
    return requests


@transaction.atomic
def comparison_create(
    *,
    project: Project,
    context: Message | None = None,
    requested_by: AbstractBaseUser | None = None,
) -> RankingSet:
    """Start a ranking set: pick a context (unless given) and request its K candidates.

    Asks for K samples, or K - 1 when the project adds the existing human reply to the context
    and there is one. The set waits in ``sampling`` until `comparison_assemble` finds the
    requests done.
    """
    # The project row serialises pickers, so two top-ups cannot choose the same context.
    project = Project.objects.select_for_update().get(pk=project.pk)
    models = candidate_models(project)
    if not models:
        raise ValidationError(
            {"candidate_models": f"{project} has no candidate models; choose some in its settings."}
        )
    if context is None:
        context = comparison_context_pick(project=project)
        if context is None:
            allowed = ", ".join(project.comparison_contexts or []) or "none"
            raise ValidationError(
                {
                    "context": f"{project} has no conversation left to compare at the points it "
                    f"allows ({allowed}); each candidate context is used by one ranking set."
                }
            )
    else:
        _check_context(project=project, context=context)
    ranking_set = ranking_set_create(
        project=project,
        context=context,
        rankings_needed=project.rankings_per_set,
        replies_wanted=project.replies_per_set,
    )
    with_human = project.include_human_reply and human_reply_to(context) is not None
    requests = _request_samples(
        project=project,
        context=context,
        models=models,
        count=project.replies_per_set - int(with_human),
        drawn=0,
        requested_by=requested_by,
    )
    _samplings_add(ranking_set=ranking_set, requests=requests)
    return ranking_set


def _samplings_add(*, ranking_set: RankingSet, requests: list[GenerationRequest]) -> None:
    """Link `requests` to the set they sample candidates for."""
    RankingSetSampling.objects.bulk_create(
        RankingSetSampling(ranking_set=ranking_set, generation_request=request)
        for request in requests
    )


def ranking_set_requests(ranking_set: RankingSet) -> QuerySet[GenerationRequest]:
    """The generation requests that sample (or sampled) the set's candidates."""
    return GenerationRequest.objects.filter(ranking_set_samplings__ranking_set=ranking_set)


# ---------------------------------------------------------------------------- assembly


def normalised_text(text: str) -> str:
    """What counts as the same reply: equal after Unicode NFC and collapsing whitespace."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFC", text)).strip()


def _cancel(ranking_set: RankingSet, reason: str) -> bool:
    logger.warning("Ranking set %s cancelled: %s", ranking_set.pk, reason)
    ranking_set_cancel(ranking_set=ranking_set, reason=reason)
    return False


@transaction.atomic
def comparison_assemble(*, ranking_set: RankingSet) -> bool:
    """Turn a sampling set whose requests are done into K candidates and N ranking tasks.

    Returns True once the set is collecting (also when it already was), False while it waits:
    for requests still running, for re-samples it just asked for because exact duplicates left
    fewer than K distinct replies, or because it was cancelled (a failed request, or duplicates
    still short of K after the sampling budget of MAX_SAMPLES_PER_CANDIDATE x K samples).
    """
    locked = (
        RankingSet.objects.select_for_update(of=("self",))
        .select_related("project", "context")
        .get(pk=ranking_set.pk)
    )
    if locked.state != RankingSet.State.SAMPLING:
        return locked.state in (RankingSet.State.COLLECTING, RankingSet.State.COMPLETE)
    project, context = locked.project, locked.context
    requests = list(ranking_set_requests(locked).order_by("id"))
    if any(request.state in UNFINISHED_REQUEST_STATES for request in requests):
        return False
    if not requests:
        return _cancel(locked, "it has no generation requests.")
    if failed := [r for r in requests if r.state == GenerationRequest.State.FAILED]:
        errors = "; ".join(f"request {r.pk}: {r.error or 'no reason given'}" for r in failed)
        return _cancel(locked, f"sampling its candidates failed ({errors}).")

    # The K the set was started with: a lead's later change of K applies to new sets only.
    wanted = locked.replies_wanted or project.replies_per_set
    human = human_reply_to(context) if project.include_human_reply else None
    outputs = Message.objects.filter(generation_output__request__in=requests).order_by(
        "generation_output__request_id", "generation_output__output_index"
    )
    kept: list[Message] = []
    seen: set[str] = set()
    repeating: set[int] = set()  # models that gave a reply already seen
    for message in [*([human] if human else []), *outputs]:
        key = normalised_text(message.text)
        if key in seen:
            if message.author_model_id:
                repeating.add(message.author_model_id)
            continue
        seen.add(key)
        kept.append(message)

    if len(kept) < wanted:
        total = sum(request.n for request in requests)
        budget = comparison_settings()["MAX_SAMPLES_PER_CANDIDATE"] * wanted
        if total >= budget:
            return _cancel(
                locked,
                f"{len(kept)} distinct replies of {wanted} after {total} samples; "
                "the models keep repeating themselves.",
            )
        models = candidate_models(project)
        if not models:
            return _cancel(locked, "its project has no candidate models left to re-sample.")
        # A model that repeated itself (greedy decoding, say) will most likely do so again.
        fresh = [model for model in models if model.pk not in repeating] or models
        more = _request_samples(
            project=project,
            context=context,
            models=fresh,
            count=min(wanted - len(kept), budget - total),
            drawn=total,
            requested_by=requests[0].requested_by,
        )
        _samplings_add(ranking_set=locked, requests=more)
        ranking_set_resampled(ranking_set=locked)
        logger.info(
            "Ranking set %s: %d distinct of %d; asked for %d more",
            locked.pk, len(kept), wanted, sum(r.n for r in more),
        )  # fmt: skip
        return False

    # A human reply, when included, always stays; surplus samples are dropped from the end.
    candidates = kept[:wanted]
    random.shuffle(candidates)
    ranking_set_collect(ranking_set=locked, candidates=candidates)
    existing = Task.objects.filter(ranking_set=locked, kind=Task.Kind.RANKING).count()
    Task.objects.bulk_create(
        Task(project=project, kind=Task.Kind.RANKING, ranking_set=locked)
        for _ in range(locked.rankings_needed - existing)
    )
    return True


def ranking_sets_ready_to_assemble() -> QuerySet[RankingSet]:
    """Sampling sets none of whose requests is still queued or running."""
    return (
        RankingSet.objects.filter(state=RankingSet.State.SAMPLING)
        .exclude(samplings__generation_request__state__in=UNFINISHED_REQUEST_STATES)
        .order_by("created_at", "id")
    )


def comparisons_assemble_ready() -> int:
    """Assemble every set whose requests are finished, each in its own transaction.

    Returns how many became ready for ranking. One set's error is logged, not fatal to the rest.
    """
    assembled = 0
    for ranking_set in ranking_sets_ready_to_assemble():
        try:
            assembled += comparison_assemble(ranking_set=ranking_set)
        except Exception:
            logger.exception("Assembling ranking set %s failed", ranking_set.pk)
    return assembled


# ---------------------------------------------------------------------------- queue depth


def comparisons_top_up(*, project: Project) -> int:
    """Create sets until `comparison_queue_depth` are sampling or collecting; returns how many.

    Stops quietly when the project has no candidate model or no context left. Each set is
    created in its own transaction, so its requests reach the gpu queue as soon as it commits.
    """
    created = 0
    while True:
        with transaction.atomic():
            locked = Project.objects.select_for_update().get(pk=project.pk)
            active = RankingSet.objects.filter(project=locked, state__in=ACTIVE_SET_STATES)
            if not locked.is_active or active.count() >= locked.comparison_queue_depth:
                break
            if not candidate_models(locked):
                break
            context = comparison_context_pick(project=locked)
            if context is None:
                break
            try:
                comparison_create(project=locked, context=context)
            except ValidationError as exc:
                logger.warning("Could not top up comparisons of %s: %s", locked, exc.messages)
                break
        created += 1
    return created


def comparisons_top_up_all() -> int:
    """`comparisons_top_up` for every active project; returns how many sets were created."""
    created = 0
    for project in Project.objects.filter(is_active=True).order_by("pk"):
        try:
            created += comparisons_top_up(project=project)
        except Exception:
            logger.exception("Topping up comparisons of %s failed", project)
    return created
