"""The claim query is compiled once per kind and then run with each caller's project and user."""

import pytest

from tests.factories import MembershipFactory, ProjectFactory, claim, make_ranking_set, trainers

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
