"""The data explorer's pages: who may open them (the 404/403 matrix), the filters and search,
the tree and set pages, and a lead's exclusions with a reason."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db import connection
from django.urls import reverse

from annotations.audit import audit_log
from annotations.models import Label, Message, PromptReport, Ranking
from tests.factories import (
    MembershipFactory,
    ModelVersionFactory,
    ProjectFactory,
    make_ranking_set,
    ranked_set,
    say,
    start,
    trainers,
)

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}


@pytest.fixture
def world(project, trainer):
    """A conversation with two branches (a person's and a model's), labels and a report; and a
    complete set ranked by three trainers."""
    model = ModelVersionFactory(name="tiny-policy-v1")
    prompt = start(project, "How do teapots <b>work</b>?", user=trainer)
    draft = say(prompt, "A model draft about kettles.", model=model)
    human = say(prompt, "Teapots steep leaves in hot water.", user=trainer, draft=draft)
    follow = say(human, "And kettles?", user=trainer)
    Label.objects.create(message=human, name="harmful", value=1, annotator=trainer)
    PromptReport.objects.create(project=project, message=prompt, reporter=trainer, reason="pii")
    other = start(project, "Unrelated question about trains", source="prompt")
    r1, r2, r3 = trainers(project, 3, prefix="ranker")
    context = start(project, "Which reply is best?")
    replies = [say(context, f"reply {x}", model=model) for x in "abc"]
    the_set = ranked_set(
        project,
        context,
        replies,
        [(r1, [[0], [1], [2]]), (r2, [[0], [1], [2]]), (r3, [[2], [1], [0]])],
    )
    return {
        "prompt": prompt, "draft": draft, "human": human, "follow": follow, "other": other,
        "set": the_set, "replies": replies, "rankers": (r1, r2, r3),
    }  # fmt: skip


def urls(project, world) -> dict[str, tuple[str, str]]:
    """Every explorer URL: (method, url)."""
    slug = project.slug
    ranking = Ranking.objects.filter(ranking_set=world["set"]).first()
    return {
        "conversations": ("get", reverse("explore-conversations", args=[slug])),
        "conversation": (
            "get",
            reverse("explore-conversation", args=[slug, world["prompt"].conversation_id]),
        ),
        "sets": ("get", reverse("explore-sets", args=[slug])),
        "set": ("get", reverse("explore-set", args=[slug, world["set"].pk])),
        "message-exclusion": (
            "post",
            reverse("explore-message-exclusion", args=[slug, world["human"].pk]),
        ),
        "ranking-exclusion": (
            "post",
            reverse("explore-ranking-exclusion", args=[slug, ranking.pk]),
        ),
    }


BODY = {"action": "exclude", "reason": "Checked"}


def test_outsiders_get_404_trainers_403_engineers_read_leads_also_exclude(
    client, project, world, trainer, lead, engineer, outsider
):
    for name, (method, url) in urls(project, world).items():
        send = getattr(client, method)
        client.logout()
        anonymous = send(url, BODY)
        assert anonymous.status_code == 302 and "login" in anonymous["Location"], name
        client.force_login(outsider)
        assert send(url, BODY).status_code == 404, name
        client.force_login(trainer)
        assert send(url, BODY).status_code == 403, name
        client.force_login(engineer)
        assert send(url, BODY).status_code == (200 if method == "get" else 403), name
    client.force_login(lead)
    for name, (method, url) in urls(project, world).items():
        if method == "get":
            assert client.get(url).status_code == 200, name
            assert client.post(url).status_code == 405, name
        else:
            assert client.get(url).status_code == 405, name
            assert client.post(url, BODY).status_code == 302, name


def test_ids_of_another_project_or_none_at_all_are_404(client, project, world, lead):
    elsewhere = ProjectFactory(slug="beta")
    MembershipFactory(project=elsewhere, user=lead, role="lead")
    client.force_login(lead)
    for name, (method, url) in urls(project, world).items():
        moved = url.replace("/p/alpha/", "/p/beta/")
        if moved.rstrip("/").endswith(("explore", "sets")):
            continue  # the lists: beta's own, empty
        response = getattr(client, method)(moved, BODY)
        assert response.status_code == 404, name
    assert client.get("/p/alpha/explore/conversations/99999999/").status_code == 404
    assert client.get("/p/alpha/explore/sets/99999999/").status_code == 404
    assert not Message.objects.filter(is_excluded=True).exists()


def listed(response) -> set[int]:
    return {row.pk for row in response.context["page"].object_list}


def test_the_conversations_list_filters_and_searches(client, project, world, lead, trainer):
    client.force_login(lead)
    url = reverse("explore-conversations", args=[project.slug])
    first, other = world["prompt"].conversation_id, world["other"].conversation_id
    everything = client.get(url)
    assert everything.status_code == 200
    assert {first, other} <= listed(everything)
    if connection.vendor == "postgresql":
        # Full-text search on PostgreSQL stems words: "steeping" finds "steep".
        assert listed(client.get(url, {"q": "steeping leaves"})) == {first}
    else:
        # The fallback elsewhere matches the words as written.
        assert listed(client.get(url, {"q": "steep"})) == {first}
    assert listed(client.get(url, {"q": "trains"})) == {other}
    assert listed(client.get(url, {"source": "prompt"})) == {other}
    assert listed(client.get(url, {"author": trainer.username})) == {first}
    model_written = listed(client.get(url, {"model": "tiny-policy-v1"}))
    assert first in model_written and other not in model_written
    assert listed(client.get(url, {"flag": "harmful"})) == {first}
    assert listed(client.get(url, {"flag": "reported"})) == {first}
    assert listed(client.get(url, {"flag": "excluded"})) == set()
    tomorrow = (dt.date.today() + dt.timedelta(days=2)).isoformat()
    assert listed(client.get(url, {"since": tomorrow})) == set()
    # The htmx request gets the results only.
    fragment = client.get(url, {"q": "trains"}, headers=HTMX).content.decode()
    assert fragment.lstrip().startswith('<section id="explore-results"') and "<html" not in fragment


def test_bad_filters_are_a_400_naming_the_field(client, project, world, lead):
    client.force_login(lead)
    url = reverse("explore-conversations", args=[project.slug])
    bad_date = client.get(url, {"since": "2024-13-45"})
    assert bad_date.status_code == 400 and "From: Enter a valid date." in bad_date.content.decode()
    backwards = client.get(url, {"since": "2025-02-01", "until": "2025-01-01"})
    assert backwards.status_code == 400
    assert "To: The end date comes before the start date." in backwards.content.decode()
    unknown = client.get(url, {"author": "nobody-here"})
    assert unknown.status_code == 400 and "Written by:" in unknown.content.decode()
    sets = reverse("explore-sets", args=[project.slug])
    for params, field in (
        ({"min_agreement": "2"}, "Agreement from"),
        ({"min_agreement": "nan-ish"}, "Agreement from"),
        ({"min_agreement": "0.8", "max_agreement": "0.2"}, "Agreement to"),
        ({"state": "nonsense"}, "State"),
    ):
        response = client.get(sets, params)
        assert response.status_code == 400, params
        assert f"{field}:" in response.content.decode(), params
    assert client.get(url, {"page": "9999"}).status_code == 200  # the last page instead


def test_the_conversations_list_is_paginated(client, project, lead):
    for i in range(30):
        start(project, f"Prompt number {i}", source="prompt")
    client.force_login(lead)
    url = reverse("explore-conversations", args=[project.slug])
    first = client.get(url)
    assert len(first.context["page"].object_list) == 25
    assert "Page 1 of 2" in first.content.decode()
    second = client.get(url, {"page": 2, "source": "prompt"})
    assert len(second.context["page"].object_list) == 5
    assert "?page=1&amp;source=prompt" in second.content.decode()


def test_the_tree_shows_every_branch_with_authors_drafts_labels_and_reports(
    client, project, world, lead
):
    client.force_login(lead)
    url = reverse("explore-conversation", args=[project.slug, world["prompt"].conversation_id])
    response = client.get(url, {"q": "kettles"})
    body = response.content.decode()
    nodes = response.context["nodes"]
    assert [n.message.pk for n in nodes] == [
        world["prompt"].pk, world["draft"].pk, world["human"].pk, world["follow"].pk
    ]  # fmt: skip
    assert [n.depth for n in nodes] == [0, 1, 1, 2]
    assert [n.author for n in nodes] == ["tina", "tiny-policy-v1", "tina", "tina"]
    assert {n.message.pk for n in nodes if n.matches} == {world["draft"].pk, world["follow"].pk}
    assert f"from #{world['draft'].pk} by tiny-policy-v1, edit distance 3" in body
    assert "harmful = 1 · tina" in body
    assert "Personal information (Waiting for a lead)" in body
    # User text is escaped, never markup.
    assert "How do teapots &lt;b&gt;work&lt;/b&gt;?" in body and "<b>work</b>" not in body


def test_a_lead_excludes_a_message_with_htmx_and_the_log_says_why(client, project, world, lead):
    client.force_login(lead)
    human = world["human"]
    url = reverse("explore-message-exclusion", args=[project.slug, human.pk])
    refused = client.post(url, {"action": "exclude", "reason": "  "}, headers=HTMX)
    assert refused.status_code == 400
    assert "Reason: Say why it leaves the exports." in refused.content.decode()
    human.refresh_from_db()
    assert not human.is_excluded

    response = client.post(url, {"action": "exclude", "reason": "Copied <text>"}, headers=HTMX)
    assert response.status_code == 200
    fragment = response.content.decode()
    assert fragment.lstrip().startswith('<li class="tree-node turn assistant is-excluded')
    assert "excluded from exports" in fragment and "Copied &lt;text&gt;" in fragment
    human.refresh_from_db()
    assert human.is_excluded
    entry = audit_log(project).get()
    assert (entry.action, entry.actor, entry.reason) == ("message.exclude", lead, "Copied <text>")

    conversations = reverse("explore-conversations", args=[project.slug])
    assert listed(client.get(conversations, {"flag": "excluded"})) == {human.conversation_id}

    back = client.post(url, {"action": "include", "reason": ""})
    assert back.status_code == 302 and back["Location"].endswith(f"#message-{human.pk}")
    human.refresh_from_db()
    assert not human.is_excluded
    assert client.post(url, {"action": "drop"}).status_code == 400


def test_the_set_page_shows_each_trainers_order_beside_the_consensus(
    client, project, world, engineer
):
    client.force_login(engineer)
    the_set = world["set"]
    response = client.get(reverse("explore-set", args=[project.slug, the_set.pk]))
    view = response.context["view"]
    assert not view.hidden
    assert [row.annotator for row in view.rankings] == ["ranker0", "ranker1", "ranker2"]
    assert [row.ranks for row in view.rankings] == [[1, 2, 3], [1, 2, 3], [3, 2, 1]]
    assert [c.consensus_rank for c in view.candidates] == [1, 2, 3]
    # ranker2 agrees with the others' consensus (a > b > c) on none of the three pairs; each of
    # the other two faces a consensus of two opposite orders, which ties everything.
    assert [row.agreement for row in view.rankings] == [0.0, 0.0, 0.0]
    body = response.content.decode()
    assert "reply a" in body and "Exclude this ranking" not in body  # engineers do not exclude


def test_the_set_page_places_a_tie_as_the_drill_down_does(client, project, engineer):
    """A tie group takes its first place and the next group skips past it (1, 2, 2, 4), on the
    explorer's page as on the dashboards' drill-down of the same set."""
    a, b = trainers(project, 2, prefix="tier")
    context = start(project, "Which of four?")
    replies = [say(context, f"four {x}") for x in "abcd"]
    orders = [(a, [[0], [1, 2], [3]]), (b, [[3], [0, 1], [2]])]
    the_set = ranked_set(project, context, replies, orders)
    client.force_login(engineer)
    response = client.get(reverse("explore-set", args=[project.slug, the_set.pk]))
    view = response.context["view"]
    assert [row.ranks for row in view.rankings] == [[1, 2, 2, 4], [2, 2, 4, 1]]
    body = response.content.decode()
    table = body[body.index("<tbody>") : body.index("</tbody>")]
    cells = [re.findall(r'<td class="num">(\d+)</td>', row) for row in table.split("</tr>")[:4]]
    assert cells == [["1", "2"], ["2", "2"], ["2", "4"], ["4", "1"]]
    drill = client.get(reverse("dashboard-set", args=[project.slug, the_set.pk])).context["drill"]
    assert [column.annotator for column in drill.rankings] == ["tier0", "tier1"]
    places = {row.message.pk: [place.rank for place in row.places] for row in drill.rows}
    consensus = {row.message.pk: row.consensus.rank for row in drill.rows}
    for i, candidate in enumerate(view.candidates):
        assert places[candidate.message.pk] == [row.ranks[i] for row in view.rankings]
        assert consensus[candidate.message.pk] == candidate.consensus_rank


def test_a_lead_excludes_a_ranking_and_sees_the_consensus_again(client, project, world, lead):
    client.force_login(lead)
    the_set = world["set"]
    dissent = Ranking.objects.get(ranking_set=the_set, annotator=world["rankers"][2])
    url = reverse("explore-ranking-exclusion", args=[project.slug, dissent.pk])
    response = client.post(url, {"action": "exclude", "reason": "Random clicks"}, headers=HTMX)
    assert response.status_code == 200
    fragment = response.content.decode()
    assert fragment.lstrip().startswith('<div id="set-rankings">')
    assert "Agreement of the set: <strong>1.00</strong>" in fragment
    assert "Random clicks" in fragment and "Include this ranking again" in fragment
    the_set.refresh_from_db()
    assert the_set.agreement == 1.0
    # Without ranker2, the other two each agree fully with the other's order.
    agreements = [row.agreement for row in response.context["view"].rankings]
    assert agreements == [1.0, 1.0, 0.0]
    assert audit_log(project, actions=["ranking.exclude"]).get().reason == "Random clicks"
    refused = client.post(url, {"action": "include", "reason": "x" * 3000}, headers=HTMX)
    assert refused.status_code == 400 and "Reason: " in refused.content.decode()


def test_rankings_stay_hidden_from_a_lead_who_may_still_rank_the_set(
    client, project, lead, engineer
):
    ranking_set = make_ranking_set(project, needed=3)
    (first,) = trainers(project, 1, prefix="early")
    ids = list(ranking_set.entries.order_by("position").values_list("message_id", flat=True))
    Ranking.objects.create(ranking_set=ranking_set, annotator=first, order=[[i] for i in ids])
    url = reverse("explore-set", args=[project.slug, ranking_set.pk])
    client.force_login(lead)  # leads annotate too: this one could be handed the set next
    response = client.get(url)
    assert response.context["view"].hidden and response.context["view"].rankings == []
    body = response.content.decode()
    assert "stay hidden while you may still rank it" in body and "early0" not in body
    client.force_login(engineer)  # engineers never rank
    assert "early0" in client.get(url).content.decode()
    Ranking.objects.create(ranking_set=ranking_set, annotator=lead, order=[[i] for i in ids])
    client.force_login(lead)  # once they ranked it, nothing can sway them any more
    assert not client.get(url).context["view"].hidden


def test_the_sets_list_filters_by_agreement_state_ranker_and_text(client, project, world, lead):
    collecting = make_ranking_set(project)
    client.force_login(lead)
    url = reverse("explore-sets", args=[project.slug])
    done = world["set"].pk
    assert listed(client.get(url)) == {done, collecting.pk}
    assert listed(client.get(url, {"state": "collecting"})) == {collecting.pk}
    assert listed(client.get(url, {"min_agreement": "0.5"})) == set()
    assert listed(client.get(url, {"max_agreement": "0.5"})) == {done}
    assert listed(client.get(url, {"author": "ranker1"})) == {done}
    assert listed(client.get(url, {"q": "best"})) == {done}
    assert listed(client.get(url, {"model": "tiny-policy-v1"})) == {done}
    assert listed(client.get(url, {"source": "prompt"})) == {collecting.pk}


def test_search_falls_back_to_a_substring_match_off_postgresql(project, world, monkeypatch):
    from annotations import explorer
    from annotations.explorer import ExplorerFilters, conversations_explored

    class SQLite:
        vendor = "sqlite"

    monkeypatch.setattr(explorer, "connection", SQLite())
    found = conversations_explored(project=project, filters=ExplorerFilters(q="TEAPOTS <B>"))
    assert list(found.values_list("pk", flat=True)) == [world["prompt"].conversation_id]
    # No stemming in the fallback: the substring must be there.
    none = conversations_explored(project=project, filters=ExplorerFilters(q="steeping"))
    assert not none.exists()


def test_the_project_page_links_the_explorer_for_leads_and_engineers_only(
    client, project, trainer, lead, engineer
):
    url = reverse("project-detail", args=[project.slug])
    explore = reverse("explore-conversations", args=[project.slug])
    for user, shown in ((trainer, False), (lead, True), (engineer, True)):
        client.force_login(user)
        assert (explore in client.get(url).content.decode()) is shown, user.username


# At scale: kept filter choices, and pages read by their keys.


def test_a_person_new_to_the_project_can_be_filtered_on_at_once(client, project, world, lead):
    """The filter forms' choices are kept a few minutes; a value they lack is looked up again
    before the form refuses it."""
    client.force_login(lead)
    url = reverse("explore-conversations", args=[project.slug])
    assert "newcomer" not in client.get(url).content.decode()  # the choices are kept now
    newcomer = MembershipFactory(project=project, role="trainer", user__username="newcomer").user
    mine = start(project, "A newcomer's first prompt", user=newcomer)
    response = client.get(url, {"author": "newcomer"})
    assert response.status_code == 200
    assert listed(response) == {mine.conversation_id}
    sets = reverse("explore-sets", args=[project.slug])
    ranked = ranked_set(project, mine, [say(mine, "x"), say(mine, "y")], [(newcomer, [[0], [1]])])
    assert listed(client.get(sets, {"author": "newcomer"})) == {ranked.pk}
    assert client.get(url, {"author": "nobody-at-all"}).status_code == 400


def test_a_deep_page_shows_its_rows_with_their_summaries_in_constant_queries(
    client, project, lead, django_assert_max_num_queries
):
    prompts = []
    for i in range(30):
        prompt = start(project, f"Prompt number {i}")
        say(prompt, f"Answer {i}")
        prompts.append(prompt)
    client.force_login(lead)
    url = reverse("explore-conversations", args=[project.slug])
    client.get(url)  # the filter choices are read and kept
    with django_assert_max_num_queries(8):
        first = client.get(url)
    with django_assert_max_num_queries(8):
        second = client.get(url, {"page": 2})
    newest_first = [p.conversation_id for p in reversed(prompts)]
    assert [c.pk for c in first.context["page"].object_list] == newest_first[:25]
    rows = second.context["page"].object_list
    assert [c.pk for c in rows] == newest_first[25:]
    assert [c.first_text for c in rows] == [f"Prompt number {i}" for i in range(4, -1, -1)]
    assert {c.message_count for c in rows} == {2}
    assert all(c.last_message_at for c in rows)
    html = second.content.decode()
    assert "30 conversations" in html and "Page 2 of 2" in html


def test_the_sets_list_shows_each_sets_context_and_candidate_count(client, project, world, lead):
    client.force_login(lead)
    response = client.get(reverse("explore-sets", args=[project.slug]))
    rows = response.context["page"].object_list
    assert [(r.pk, r.candidate_count, r.context.text) for r in rows] == [
        (world["set"].pk, 3, "Which reply is best?")
    ]
