"""A lead's curation of collected data: leaving one message, or one ranking, out of exports.

Each change needs a reason and is logged in the audit log with the state before and after.
Excluding a message leaves out every export row built on it (the threads through it, the ranking
sets that show it); excluding a ranking takes it out of its set's consensus and agreement, which
are computed again at once.
"""

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from annotations.access import require
from annotations.audit import audit_reason, audit_record
from annotations.models import Message, Project, Ranking
from annotations.rankings import ranking_set_finalize


def _set_message_excluded(
    *, project: Project, message: Message, actor: AbstractBaseUser, excluded: bool, reason: str
) -> Message:
    require(actor, project, "manage")
    reason = audit_reason(reason, required=excluded)
    locked = (
        Message.objects.select_for_update()
        .filter(pk=message.pk, conversation__project=project)
        .first()
    )
    if locked is None:
        raise ValidationError({"message": "The message belongs to another project."})
    if locked.is_excluded == excluded:
        return locked
    locked.is_excluded = excluded
    locked.save(update_fields=["is_excluded"])
    audit_record(
        project=project,
        actor=actor,
        action="message.exclude" if excluded else "message.include",
        target=f"message {locked.pk}",
        before={"is_excluded": not excluded},
        after={"is_excluded": excluded},
        reason=reason,
    )
    return locked


@transaction.atomic
def message_exclude(
    *, project: Project, message: Message, actor: AbstractBaseUser, reason: str
) -> Message:
    """Leave the message, and every export row built on it, out of exports (a reason is needed).

    Excluding a message that already is excluded changes nothing and logs nothing.
    """
    return _set_message_excluded(
        project=project, message=message, actor=actor, excluded=True, reason=reason
    )


@transaction.atomic
def message_include(
    *, project: Project, message: Message, actor: AbstractBaseUser, reason: str = ""
) -> Message:
    """Take back an exclusion: the message counts in exports again."""
    return _set_message_excluded(
        project=project, message=message, actor=actor, excluded=False, reason=reason
    )


def _set_ranking_excluded(
    *, project: Project, ranking: Ranking, actor: AbstractBaseUser, excluded: bool, reason: str
) -> Ranking:
    require(actor, project, "manage")
    reason = audit_reason(reason, required=excluded)
    locked = (
        Ranking.objects.select_for_update(of=("self",))
        .select_related("ranking_set", "annotator")
        .filter(pk=ranking.pk, ranking_set__project=project)
        .first()
    )
    if locked is None:
        raise ValidationError({"ranking": "The ranking belongs to another project."})
    if locked.is_excluded == excluded:
        return locked
    before = {
        "is_excluded": not excluded,
        "set_agreement": locked.ranking_set.agreement,
        "set_consensus": locked.ranking_set.consensus,
    }
    locked.is_excluded = excluded
    # Taken in or out by hand: no trainer's exclusion is what keeps it out any more.
    locked.excluded_by = None
    locked.save(update_fields=["is_excluded", "excluded_by"])
    # A complete set's consensus and agreement come from its kept rankings: compute them again.
    ranking_set = ranking_set_finalize(ranking_set=locked.ranking_set)
    locked.ranking_set = ranking_set
    annotator = locked.annotator.get_username() if locked.annotator else "an import"
    audit_record(
        project=project,
        actor=actor,
        action="ranking.exclude" if excluded else "ranking.include",
        target=f"ranking {locked.pk} by {annotator} (set {ranking_set.pk})",
        before=before,
        after={
            "is_excluded": excluded,
            "set_agreement": ranking_set.agreement,
            "set_consensus": ranking_set.consensus,
        },
        reason=reason,
    )
    return locked


@transaction.atomic
def ranking_exclude(
    *, project: Project, ranking: Ranking, actor: AbstractBaseUser, reason: str
) -> Ranking:
    """Leave the ranking out of exports and of its set's consensus and agreement."""
    return _set_ranking_excluded(
        project=project, ranking=ranking, actor=actor, excluded=True, reason=reason
    )


@transaction.atomic
def ranking_include(
    *, project: Project, ranking: Ranking, actor: AbstractBaseUser, reason: str = ""
) -> Ranking:
    """Count the ranking again; the set's consensus and agreement are computed again."""
    return _set_ranking_excluded(
        project=project, ranking=ranking, actor=actor, excluded=False, reason=reason
    )
