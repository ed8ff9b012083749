"""The claim query of each task kind, built through the ORM once per process and reused.

The claim is the hottest request of all, and building its query (a walk of the open tasks in
order with a NOT EXISTS per reason to pass one over) cost about 2 ms of Python each time, more
than PostgreSQL spends planning and running it at 200,000 ranking sets. So it is compiled once
per process, database vendor and kind, with stand-in ids for the project and the user, and run
as raw SQL with the real ids. Queries built this way may depend on the project and the user
only through their ids, and on nothing that changes between calls.
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.db.models import QuerySet

from annotations.models import Project
from labelling.models import Task

# Ids no row has, standing in for the project's and the user's while the query is compiled.
_PROJECT_STAND_IN = -(2**62) - 1
_USER_STAND_IN = -(2**62) - 2

_compiled: dict[tuple[str, str], tuple[str, tuple]] = {}


def _compile(key: str, build: Callable[[Project, AbstractBaseUser], QuerySet[Task]]):
    cache_key = (connection.vendor, key)
    if cache_key not in _compiled:
        queryset = build(Project(pk=_PROJECT_STAND_IN), get_user_model()(pk=_USER_STAND_IN))
        sql, params = queryset[:1].query.sql_with_params()
        if _PROJECT_STAND_IN not in params or _USER_STAND_IN not in params:
            raise ImproperlyConfigured(f"The {key} claim must filter by project and by user.")
        _compiled[cache_key] = (sql, params)
    return _compiled[cache_key]


def first_locked(
    key: str,
    build: Callable[[Project, AbstractBaseUser], QuerySet[Task]],
    *,
    project: Project,
    user: AbstractBaseUser,
) -> Task | None:
    """The first task of `build(project, user)`, as its SELECT ... FOR UPDATE locks it.

    `key` names the query (one per task kind). Must run inside a transaction.
    """
    sql, params = _compile(key, build)
    real = {_PROJECT_STAND_IN: project.pk, _USER_STAND_IN: user.pk}
    params = [real.get(value, value) if type(value) is int else value for value in params]
    return next(iter(Task.objects.raw(sql, params)), None)
