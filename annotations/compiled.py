"""Querysets of the hottest requests, compiled to SQL once per process and run with new values.

Building a queryset and compiling it (joins, default columns, orderings, WHERE clauses) costs
the ORM about half a millisecond of Python per query, several times what PostgreSQL spends
planning and running the small, indexed queries of a claim or a submit. A `CompiledQuery`
builds its queryset once with stand-in values for its parameters, keeps the SQL and what Django
needs to turn rows into model instances (columns, converters, `select_related` populators,
annotations), and later runs the same SQL with the real values through the connection's own
cursor, so query counting, execute wrappers and transactions see it as any other query.

The queryset may depend on its parameters only as plain values in the SQL (ids, keys, slugs):
nothing that changes the shape of the query, such as `__in` lists, `None` (which becomes `IS
NULL`) or timestamps taken while building. Compiling refuses a queryset in which a parameter does
not appear as a value of its own, and every compiled query is checked against the ORM in tests.
Rows become model instances the way `QuerySet.__iter__` does it (Django 5.2's `ModelIterable`);
`values()`, `prefetch_related()` and friends are not supported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import Model, QuerySet
from django.db.models.query import ModelIterable, get_related_populators
from django.db.transaction import TransactionManagementError

# Stand-ins no real value equals: ids far below any sequence, text no user can type as a key.
_INT_STAND_IN_BASE = -(2**62)
_TEXT_STAND_IN = "\x1bstand-in:{name}\x1b"


def _setting_value(value: str) -> str:
    if not value.replace("_", "").isalnum():
        raise ImproperlyConfigured(f"Unexpected planner setting value {value!r}.")
    return value


@dataclass(frozen=True)
class _Plan:
    prefix: str  # SET LOCAL statements sent ahead of the query (PostgreSQL only)
    sql: str
    params: tuple
    # For each parameter of the SQL, the name of the value that replaces it (None: keep it).
    slots: tuple[str | None, ...]
    in_transaction: bool  # row locks and SET LOCAL mean nothing outside one
    model: type[Model]
    start: int
    end: int
    init_list: tuple[str, ...]
    # (column, converters, expression): Django's from_db_value converters of the column.
    converters: tuple[tuple[int, tuple, Any], ...]
    populators: list
    annotations: tuple[tuple[str, int], ...]


class CompiledQuery:
    """`build(**params)` returns a queryset of model instances; run it with `.all()`/`.first()`.

    `params` name the values and their types (int or str): `CompiledQuery(lambda key: ...,
    key=str)`. Model instances a queryset needs (`filter(project=...)`) are built from ids in
    `build`, e.g. `filter(project_id=project_id)`.
    """

    def __init__(
        self,
        build: Callable[..., QuerySet],
        *,
        postgresql_settings: dict[str, str] | None = None,
        **params: type,
    ) -> None:
        self._build = build
        # Planner settings for this query on PostgreSQL, sent with it in one round trip as
        # SET LOCAL: they hold until the end of the transaction, which the query must be in.
        self._settings = dict(postgresql_settings or {})
        self._stand_ins: dict[str, int | str] = {}
        for i, (name, kind) in enumerate(params.items()):
            if kind is int:
                self._stand_ins[name] = _INT_STAND_IN_BASE - 1 - i
            elif kind is str:
                self._stand_ins[name] = _TEXT_STAND_IN.format(name=name)
            else:
                raise TypeError(f"Parameter {name} is an int or a str, not {kind!r}.")
        self._plans: dict[tuple[str, str], _Plan] = {}

    def _plan(self, using: str) -> _Plan:
        key = (using, connections[using].vendor)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._compile(using)
        return plan

    def _compile(self, using: str) -> _Plan:
        queryset = self._build(**self._stand_ins)
        if queryset._iterable_class is not ModelIterable or queryset._prefetch_related_lookups:
            raise ImproperlyConfigured(
                "A compiled query returns model instances: no values(), values_list() or "
                "prefetch_related()."
            )
        compiler = queryset.query.get_compiler(using=using)
        # Compiling a query with row locks insists on a transaction, though it runs nothing: the
        # check belongs to each run (see all() and update_first()), not to this one compile.
        with transaction.atomic(using=using):
            sql, params = compiler.as_sql()
        by_value = {(type(v), v): name for name, v in self._stand_ins.items()}
        slots = tuple(by_value.get((type(value), value)) for value in params)
        for name, value in self._stand_ins.items():
            if name not in slots or str(value) in sql:
                raise ImproperlyConfigured(
                    f"Parameter {name} must appear in the query as a value of its own."
                )
        connection = connections[using]
        prefix = ""
        if self._settings and connection.vendor == "postgresql":
            prefix = "".join(
                f"SET LOCAL {connection.ops.quote_name(name)} = {_setting_value(value)}; "
                for name, value in self._settings.items()
            )
        select, klass_info = compiler.select, compiler.klass_info
        fields = [column[0] for column in select[: compiler.col_count]]
        start, end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
        return _Plan(
            prefix=prefix,
            sql=sql,
            params=tuple(params),
            slots=slots,
            in_transaction=bool(queryset.query.select_for_update or self._settings),
            model=klass_info["model"],
            start=start,
            end=end,
            init_list=tuple(column[0].target.attname for column in select[start:end]),
            converters=tuple(
                (position, tuple(functions), expression)
                for position, (functions, expression) in compiler.get_converters(fields).items()
            ),
            populators=get_related_populators(klass_info, select, using),
            annotations=tuple(compiler.annotation_col_map.items()),
        )

    def _bind(self, using: str, values: dict) -> tuple[_Plan, list]:
        if values.keys() != self._stand_ins.keys():
            raise TypeError(f"Give exactly these values: {', '.join(self._stand_ins)}.")
        plan = self._plan(using)
        params = [
            value if slot is None else values[slot]
            for slot, value in zip(plan.slots, plan.params, strict=True)
        ]
        return plan, params

    def _instances(self, plan: _Plan, rows: list, using: str) -> list:
        connection = connections[using]
        objects = []
        for row in rows:
            if plan.converters:
                row = list(row)
                for position, functions, expression in plan.converters:
                    for convert in functions:
                        row[position] = convert(row[position], expression, connection)
            obj = plan.model.from_db(using, plan.init_list, row[plan.start : plan.end])
            for populator in plan.populators:
                populator.populate(row, obj)
            for name, position in plan.annotations:
                setattr(obj, name, row[position])
            objects.append(obj)
        return objects

    def all(
        self,
        *,
        postgresql_preamble: tuple[str, list] | None = None,
        using: str = DEFAULT_DB_ALIAS,
        **values: int | str,
    ) -> list:
        """The query's instances. On PostgreSQL `postgresql_preamble` (SQL and its parameters,
        e.g. taking an advisory lock) goes ahead in the same round trip; the query itself then
        runs with a snapshot taken after it, so it sees what a lock holder committed."""
        plan, params = self._bind(using, values)
        connection = connections[using]
        if (plan.in_transaction or postgresql_preamble) and connection.get_autocommit():
            raise TransactionManagementError(
                "This query locks rows, sets planner settings or takes a preamble for its "
                "transaction: run it inside one (transaction.atomic)."
            )
        prefix, ahead = self._prefix(plan, connection, postgresql_preamble)
        with connection.cursor() as cursor:
            cursor.execute(prefix + plan.sql, [*ahead, *params])
            rows = cursor.fetchall()
        return self._instances(plan, rows, using)

    def first(
        self,
        *,
        postgresql_preamble: tuple[str, list] | None = None,
        using: str = DEFAULT_DB_ALIAS,
        **values: int | str,
    ) -> Any:
        """The first row's instance, or None. Slice the queryset (`[:1]`) in `build`."""
        objects = self.all(postgresql_preamble=postgresql_preamble, using=using, **values)
        return objects[0] if objects else None

    @staticmethod
    def _prefix(plan: _Plan, connection, preamble: tuple[str, list] | None) -> tuple[str, list]:
        """What goes ahead of the query in its round trip: the preamble, then planner settings."""
        if preamble is None or connection.vendor != "postgresql":
            return plan.prefix, []
        return f"{preamble[0]}; {plan.prefix}", list(preamble[1])

    def update_first(
        self,
        changes: dict[str, Any],
        *,
        postgresql_preamble: tuple[str, list] | None = None,
        using: str = DEFAULT_DB_ALIAS,
        **values: int | str,
    ) -> Any:
        """Apply `changes` to the query's first row and return it as updated: one statement.

        `UPDATE ... WHERE pk = (SELECT pk FROM (<the query>)) RETURNING <its columns>`: the
        query's row locks (`select_for_update(skip_locked=True)`) pick the row and the update
        follows in the same statement, so outside a transaction it commits on its own, with no
        BEGIN and COMMIT round trips. For querysets of one model without `select_related()` or
        annotations. On PostgreSQL `postgresql_preamble` (SQL and its parameters, e.g. taking an
        advisory lock) and the planner settings go ahead in the same round trip; without an
        open transaction PostgreSQL runs them and the update as one implicit transaction.
        """
        plan, params = self._bind(using, values)
        if plan.populators or plan.annotations:
            raise ImproperlyConfigured("update_first() needs a query of one model's columns.")
        connection = connections[using]
        quote = connection.ops.quote_name
        meta = plan.model._meta
        assignments, assigned = [], []
        for name, value in changes.items():
            field = meta.get_field(name)
            assignments.append(f"{quote(field.column)} = %s")
            assigned.append(field.get_db_prep_save(value, connection))
        columns = ", ".join(quote(meta.get_field(name).column) for name in plan.init_list)
        pk = quote(meta.pk.column)
        # Only quoted names from the model's metadata and the compiled query's own SQL are put
        # together here; every value travels as a parameter.
        sql = (
            f"UPDATE {quote(meta.db_table)} SET {', '.join(assignments)} "  # noqa: S608
            f"WHERE {pk} = (SELECT picked.{pk} FROM ({plan.sql}) picked) RETURNING {columns}"
        )
        prefix, ahead = self._prefix(plan, connection, postgresql_preamble)
        with connection.cursor() as cursor:
            cursor.execute(prefix + sql, [*ahead, *assigned, *params])
            rows = cursor.fetchall()
        objects = self._instances(plan, rows, using)
        return objects[0] if objects else None
