"""The claim query is compiled once per kind and then run with each caller's project and user."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from labelling.claim_query import first_locked
from labelling.models import Task
from tests.factories import MembershipFactory, ProjectFactory
from tests.labelling.test_rankings import claim, make_ranking_set, trainers

pytestmark = pytest.mark.django_db


def test_one_compiled_query_serves_every_project_and_user():
    alpha, beta = ProjectFactory(slug="alpha"), ProjectFactory(slug="beta")
    [writer, reader] = trainers(alpha, 2)
    MembershipFactory(project=beta, user=writer, role="trainer")
    MembershipFactory(project=beta, user=reader, role="trainer")
    own = make_ranking_set(alpha, authors=[writer])
    other = make_ranking_set(beta)

    # The first claim compiles the query; the later ones must not carry its ids along.
    assert claim(alpha, reader).ranking_set == own
    assert claim(alpha, writer) is None
    assert claim(beta, writer).ranking_set == other
    assert claim(beta, reader).ranking_set == other


def test_a_query_that_ignores_the_user_is_refused():
    project = ProjectFactory()
    [trainer] = trainers(project, 1)

    def every_open_task(project, user):
        return Task.objects.filter(project=project, state=Task.State.OPEN)

    with transaction.atomic(), pytest.raises(ImproperlyConfigured, match="by user"):
        first_locked("no_user_filter", every_open_task, project=project, user=trainer)
