"""What one kind of task (demonstration, ranking, ...) adds to the shared lifecycle.

Each kind module defines its `TaskKind`; `labelling.kinds` lists them, and the lifecycle
(`labelling.claims`) looks them up there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from annotations.models import Project
from labelling.models import Task


@dataclass(frozen=True)
class ClaimSql:
    """A kind's part of the claim statement on PostgreSQL (see `labelling.claims`).

    `where` is ANDed to the conditions every claim has (the project's open tasks of the kind, not
    skipped by the trainer): in it `task` is the open task walked and `%(user_id)s` the trainer.
    `order_by` says which eligible task goes first. Both are fixed text written in the kind's
    module; values travel as parameters, the kind's own in `params`. They must say exactly what
    the kind's `eligible` queryset says, which the claim runs on other databases.
    """

    where: str
    order_by: str
    params: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskKind:
    """What one kind of task adds to the shared lifecycle."""

    kind: str
    # Narrow and order the open tasks of a project that `user` may be given: the claim on
    # databases without row locks (SQLite). PostgreSQL runs `claim_sql`, the same rule in SQL.
    eligible: Callable[[QuerySet[Task], AbstractBaseUser], QuerySet[Task]]
    claim_sql: ClaimSql
    # Store the submission (raising ValidationError on bad input); returns ids for Task.result.
    submit: Callable[..., dict]
    # What the API and pages show of a task.
    describe: Callable[[Task], dict]
    # Make more open tasks when none is eligible (e.g. a blank demonstration); may return None.
    supply: Callable[[Project, AbstractBaseUser], Task | None] | None = None
    # Called inside the skip transaction, e.g. to file a report about the prompt.
    on_skip: Callable[..., None] | None = None
    # Called inside the claim transaction when a task is handed to a new holder, e.g. to clear
    # what an earlier holder whose lease ran out left behind.
    on_claim: Callable[[Task], None] | None = None
