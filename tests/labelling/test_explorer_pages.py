"""The explorer's lists past the count's cap: what they say of their length, and pages that go
on by number, each row once and in order, as far as the list goes."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from annotations.models import Conversation, RankingSet
from labelling import explorer_pages
from labelling.views import explorer as explorer_views
from tests.factories import make_ranking_set, start

pytestmark = pytest.mark.django_db
CAP = 5
PER_PAGE = 2


@pytest.fixture
def small_cap(monkeypatch):
    monkeypatch.setattr(explorer_pages, "COUNT_CAP", CAP)
    monkeypatch.setattr(explorer_views, "PER_PAGE", PER_PAGE)


@pytest.fixture
def matches(project):
    """Eleven conversations that a search for "number" finds (more than the cap), newest first,
    and one it does not."""
    for i in range(11):
        start(project, f"Prompt number {i}", source="prompt")
    start(project, "Something else entirely", source="prompt")
    return newest_first(
        Conversation.objects.filter(project=project, messages__text__contains="number")
    )


def newest_first(rows) -> list[int]:
    """The keys of `rows` in the explorer's order, newest first."""
    return list(rows.order_by("-created_at", "-id").values_list("pk", flat=True))


def searched_as_lead(client, project, lead, q: str):
    """(the conversations list's url, its response to a search for `q` as the project's lead,
    the queries that response made)."""
    client.force_login(lead)
    url = reverse("explore-conversations", args=[project.slug])
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, {"q": q})
    return url, response, queries


def heading(response) -> str:
    return re.search(r'<h2 id="results-title">(.*?)</h2>', response.content.decode()).group(1)


def next_link(response) -> str | None:
    found = re.search(r'href="\?([^"]*)" rel="next"', response.content.decode())
    return found.group(1).replace("&amp;", "&") if found else None


def read_every_page(client, url: str, query: str) -> list[list[int]]:
    """The rows of each page, following Next from the first page."""
    pages = []
    while query is not None:
        response = client.get(f"{url}?{query}")
        pages.append([row.pk for row in response.context["page"].object_list])
        query = next_link(response)
    assert not response.context["page"].has_next()
    return pages


def assert_every_match_once_in_order(pages: list[list[int]], matches: list[int]) -> None:
    assert all(1 <= len(rows) <= PER_PAGE for rows in pages)
    seen = [pk for rows in pages for pk in rows]
    assert len(seen) == len(set(seen))  # no row twice
    assert seen == matches  # every match, newest first, and nothing else


def test_a_search_dense_among_the_newest_rows_is_counted_to_the_cap_by_reading_them(
    client, project, lead, small_cap, matches
):
    url, response, queries = searched_as_lead(client, project, lead, "number")
    assert heading(response) == "5+ conversations"
    paginator = response.context["page"].paginator
    assert paginator.capped and paginator.count == CAP + 1
    assert paginator.leading == matches[: CAP + 1]
    assert not [q for q in queries if q["sql"].startswith("SELECT COUNT(*)")]
    body = response.content.decode()
    assert "<span>Page 1</span>" in body and " of " not in body.split('aria-label="Pages"')[1]
    # Pages 1 and 2 come from the rows read newest first, the rest through the search index.
    pages = read_every_page(client, url, "q=number")
    assert len(pages) == 6
    assert_every_match_once_in_order(pages, matches)
    # A search within the cap still says exactly how many it found.
    narrow = client.get(url, {"q": "number 1"})
    assert not narrow.context["page"].paginator.capped
    assert re.fullmatch(r"\d conversations?", heading(narrow))


def test_a_search_rare_among_the_newest_rows_is_counted_to_the_cap_through_its_index(
    client, project, lead, small_cap, matches
):
    for i in range(explorer_pages.DENSE * explorer_pages.FIRST_LOOK):  # none of the newest match
        start(project, f"Later prompt {i}", source="prompt")
    url, response, queries = searched_as_lead(client, project, lead, "number")
    assert heading(response) == "5+ conversations"
    paginator = response.context["page"].paginator
    assert paginator.capped and paginator.count == CAP + 1 and paginator.leading is None
    # The count reads cap + 1 rows at most, in no order.
    counts = [q["sql"] for q in queries if q["sql"].startswith("SELECT COUNT(*)")]
    assert len(counts) == 1 and f"LIMIT {CAP + 1}" in counts[0]
    assert "ORDER BY" not in counts[0]
    assert_every_match_once_in_order(read_every_page(client, url, "q=number"), matches)


def test_an_unsearched_list_past_the_cap_is_counted_to_the_cap(client, project, lead, small_cap):
    for i in range(CAP + 3):
        start(project, f"Prompt {i}", source="prompt")
    newest = newest_first(Conversation.objects.filter(project=project))
    client.force_login(lead)
    url = reverse("explore-conversations", args=[project.slug])
    assert heading(client.get(url)) == "5+ conversations"
    assert_every_match_once_in_order(read_every_page(client, url, "source=prompt"), newest)


def test_a_page_number_past_the_end_of_a_capped_list_is_its_last_page(
    client, project, lead, small_cap, matches
):
    client.force_login(lead)
    url = reverse("explore-conversations", args=[project.slug])
    response = client.get(url, {"q": "number", "page": 99})
    page = response.context["page"]
    assert [c.pk for c in page.object_list] == matches[10:]
    # It took counting the whole list, which the page now says exactly.
    assert heading(response) == "11 conversations"
    assert "<span>Page 6 of 6</span>" in response.content.decode()
    assert client.get(url, {"q": "number", "page": "x"}).context["page"].number == 1


def test_the_sets_list_is_capped_the_same_way(client, project, lead, small_cap):
    for _ in range(explorer_pages.FIRST_LOOK + 2):
        make_ranking_set(project, k=2)
    newest = newest_first(RankingSet.objects.filter(project=project))
    client.force_login(lead)
    url = reverse("explore-sets", args=[project.slug])
    first = client.get(url)
    assert heading(first) == "5+ ranking sets"
    assert_every_match_once_in_order(read_every_page(client, url, "page=1"), newest)
    # Searched: every set matches (each context is "Turn 1 (user)"), read newest first.
    searched = client.get(url, {"q": "turn"})
    assert heading(searched) == "5+ ranking sets"
    assert searched.context["page"].paginator.leading == newest[: CAP + 1]
    assert_every_match_once_in_order(read_every_page(client, url, "q=turn"), newest)


@pytest.mark.parametrize("number", ["9" * 30, "-3", "0", "2.5", "abc", ""])
def test_any_typed_page_number_gives_a_page_never_an_error(
    client, project, lead, small_cap, matches, number
):
    client.force_login(lead)
    url = reverse("explore-conversations", args=[project.slug])
    response = client.get(url, {"q": "number", "page": number})
    assert response.status_code == 200
    rows = [row.pk for row in response.context["page"].object_list]
    assert rows and set(rows) <= set(matches)


@pytest.mark.parametrize("query", ["(", "!", "'", "a & b | !c", "number:*", "\x00", "é" * 300])
def test_any_typed_search_gives_a_page_or_a_form_error(client, project, lead, small_cap, query):
    client.force_login(lead)
    for name in ("explore-conversations", "explore-sets"):
        response = client.get(reverse(name, args=[project.slug]), {"q": query, "page": "2"})
        assert response.status_code in (200, 400), (name, query, response.status_code)
