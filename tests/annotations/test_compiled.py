"""Compiled querysets give what the ORM gives, with each call's own values, or refuse to compile."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import Count
from django.db.transaction import TransactionManagementError

from annotations.compiled import CompiledQuery
from annotations.models import Message
from labelling.models import Task
from tests.factories import ConversationFactory, MessageFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


def messages_of(conversation_id, author_id):
    return (
        Message.objects.filter(conversation_id=conversation_id)
        .exclude(author_user_id=author_id)
        .select_related("conversation__project", "author_user")
        .annotate(replies=Count("children"))
        .order_by("depth", "id")
    )


MESSAGES = CompiledQuery(messages_of, conversation_id=int, author_id=int)


def thread(project, writer, other):
    conversation = ConversationFactory(project=project)
    root = MessageFactory(conversation=conversation, author_user=writer, meta={"k": [1, 2]})
    reply = MessageFactory(
        conversation=conversation, parent=root, depth=1, role="assistant", author_user=other
    )
    MessageFactory(conversation=conversation, parent=reply, depth=2, author_user=writer)
    return conversation


def test_rows_become_the_instances_the_orm_builds():
    project = ProjectFactory()
    writer, other = UserFactory(), UserFactory()
    conversation = thread(project, writer, other)

    for author in (writer, other):
        compiled = MESSAGES.all(conversation_id=conversation.pk, author_id=author.pk)
        expected = list(messages_of(conversation.pk, author.pk))
        assert [m.pk for m in compiled] == [m.pk for m in expected]
        for got, want in zip(compiled, expected, strict=True):
            assert (got.text, got.depth, got.meta, got.created_at, got.replies) == (
                want.text, want.depth, want.meta, want.created_at, want.replies
            )  # fmt: skip
            # select_related objects arrive filled in, the JSON field decoded, times aware.
            assert got.conversation.project.slug == project.slug
            assert got.author_user.username == want.author_user.username
            assert got.created_at.tzinfo is not None
    root = MESSAGES.first(conversation_id=conversation.pk, author_id=other.pk)
    assert root.meta == {"k": [1, 2]} and root.replies == 1


def test_each_call_runs_with_its_own_values(django_assert_num_queries):
    project = ProjectFactory()
    writer, other = UserFactory(), UserFactory()
    first, second = thread(project, writer, other), thread(project, other, writer)

    with django_assert_num_queries(2):
        a = MESSAGES.all(conversation_id=first.pk, author_id=other.pk)
        b = MESSAGES.all(conversation_id=second.pk, author_id=other.pk)
    assert {m.conversation_id for m in a} == {first.pk}
    assert {m.conversation_id for m in b} == {second.pk}
    assert len(a) == 2 and len(b) == 1
    assert MESSAGES.first(conversation_id=first.pk + 1000, author_id=other.pk) is None


@pytest.mark.parametrize(
    "build",
    [
        # The value never reaches the query.
        lambda slug, user_id: Task.objects.filter(assignee_id=user_id),
        # It reaches it only inside a pattern, so the compiled SQL would not take a new one.
        lambda slug, user_id: Task.objects.filter(
            project__slug__contains=slug, assignee_id=user_id
        ),
    ],
)
def test_a_value_that_is_not_a_parameter_of_its_own_is_refused(build):
    query = CompiledQuery(build, slug=str, user_id=int)
    with pytest.raises(ImproperlyConfigured, match="slug"):
        query.all(slug="x", user_id=1)


def test_only_model_instances_and_known_values():
    values = CompiledQuery(lambda pk: Task.objects.filter(pk=pk).values("id"), pk=int)
    with pytest.raises(ImproperlyConfigured, match="model instances"):
        values.all(pk=1)
    tasks = CompiledQuery(lambda pk: Task.objects.filter(pk=pk), pk=int)
    with pytest.raises(TypeError, match="pk"):
        tasks.all(id=1)
    with pytest.raises(TypeError):
        CompiledQuery(lambda when: Task.objects.filter(created_at=when), when=float)


@pytest.mark.django_db(transaction=True)
def test_row_locks_need_a_transaction():
    # (A test of its own outside the per-test transaction, which would hide the missing one.)
    locked = CompiledQuery(lambda pk: Task.objects.select_for_update().filter(pk=pk), pk=int)
    with transaction.atomic():
        assert locked.all(pk=1) == []
    with pytest.raises(TransactionManagementError):
        locked.all(pk=1)


OPEN_RANKING = CompiledQuery(
    lambda project_id: (
        Task.objects.select_for_update(skip_locked=True)
        .filter(project_id=project_id, state="open")
        .order_by("-priority", "id")[:1]
    ),
    project_id=int,
)


def _open_tasks(project, count):
    from tests.factories import make_ranking_set

    make_ranking_set(project, needed=count)
    return list(Task.objects.filter(project=project).order_by("id"))


@pytest.mark.django_db(transaction=True)
def test_update_first_takes_the_first_row_and_returns_it_updated():
    project, other = ProjectFactory(), ProjectFactory()
    trainer = UserFactory()
    tasks = _open_tasks(project, 3)
    _open_tasks(other, 1)
    Task.objects.filter(pk=tasks[1].pk).update(priority=5)
    from django.utils import timezone

    now = timezone.now()
    changes = {
        "state": "assigned",
        "assignee_id": trainer.pk,
        "assigned_at": now,
        "lease_expires_at": now,
    }
    # No transaction is open: the statement commits on its own.
    taken = OPEN_RANKING.update_first(changes, project_id=project.pk)
    assert taken.pk == tasks[1].pk and taken.priority == 5
    assert (taken.state, taken.assignee_id, taken.assigned_at) == ("assigned", trainer.pk, now)
    stored = Task.objects.get(pk=taken.pk)
    assert (stored.state, stored.assignee_id, stored.assigned_at) == ("assigned", trainer.pk, now)
    assert stored.autosave == taken.autosave == {}  # columns come back converted
    assert Task.objects.filter(state="assigned").count() == 1
    # The next call takes the next row in order; none is left after the project's three.
    assert OPEN_RANKING.update_first(changes, project_id=project.pk).pk == tasks[0].pk
    assert OPEN_RANKING.update_first(changes, project_id=project.pk).pk == tasks[2].pk
    assert OPEN_RANKING.update_first(changes, project_id=project.pk) is None
    assert Task.objects.filter(project=other, state="open").count() == 1


def test_update_first_needs_one_models_columns():
    joined = CompiledQuery(
        lambda pk: Task.objects.select_related("project").filter(pk=pk)[:1], pk=int
    )
    with pytest.raises(ImproperlyConfigured, match="one model"):
        joined.update_first({"priority": 1}, pk=1)


@pytest.mark.django_db(transaction=True)
def test_a_preamble_runs_ahead_of_the_query_in_its_transaction():
    from django.db import connection

    project = ProjectFactory()
    first = _open_tasks(project, 2)[0]
    preamble = ("SELECT pg_advisory_xact_lock(%s)", [4242])
    held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242"
    with pytest.raises(TransactionManagementError, match="preamble"):
        OPEN_RANKING.first(postgresql_preamble=preamble, project_id=project.pk)
    with transaction.atomic():
        taken = OPEN_RANKING.first(postgresql_preamble=preamble, project_id=project.pk)
        assert taken.pk == first.pk  # the query's own rows, not the preamble's
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(held)
                assert cursor.fetchone() == (1,)
    if connection.vendor == "postgresql":  # released with its transaction
        with connection.cursor() as cursor:
            cursor.execute(held)
            assert cursor.fetchone() == (0,)
