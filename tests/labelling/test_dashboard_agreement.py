"""The agreement page, a set's drill-down and the model leaderboard: figures checked by hand on
three small sets, access by role, htmx fragments, CSV downloads and malformed filters."""

import csv
import io
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from annotations.exclusions import annotator_exclude
from annotations.reliability import add_coincidences, krippendorff_alpha_ordinal, rank_coincidences
from labelling.dashboards.rollups import rollups_rebuild
from tests.factories import (
    ModelVersionFactory,
    ProjectFactory,
    make_ranking_set,
    ranked_set,
    say,
    start,
    trainers,
)

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
PAGES = ("dashboard-agreement", "dashboard-models")

# The three sets' orders, by candidate index (0: the new model's reply, 1: the old model's,
# 2: a person's). Pairwise agreement, by hand:
#   unanimous                                      -> 1
#   two say 0 > 1 > 2, one the reverse             -> (1 + 0 + 0) / 3 = 1/3
#   0 > 1 > 2, 1 > 0 > 2, 0 > 2 > 1                -> (2/3 + 2/3 + 1/3) / 3 = 5/9
# so the project's mean is (1 + 1/3 + 5/9) / 3 = 17/27. Every consensus is 0 > 1 > 2: the new
# model beats the old one and the person in all three sets, the old one beats the person.
ORDERS = {
    "unanimous": [[[0], [1], [2]]] * 3,
    "split": [[[0], [1], [2]], [[0], [1], [2]], [[2], [1], [0]]],
    "mixed": [[[0], [1], [2]], [[1], [0], [2]], [[0], [2], [1]]],
}
AGREEMENT = {"unanimous": 1.0, "split": 1 / 3, "mixed": 5 / 9}


@pytest.fixture
def sets(project):
    raters = trainers(project, 3)
    new, old = ModelVersionFactory(name="policy-v2"), ModelVersionFactory(name="policy-v1")
    made = {}
    for name, orders in ORDERS.items():
        context = start(project, f"Prompt {name} <script>x</script>", meta={"tags": [name]})
        writer = trainers(project, 1, prefix=f"w-{name}-")[0]
        replies = [
            say(context, f"<i>new</i> reply to {name}", model=new),
            say(context, f"old reply to {name}", model=old),
            say(context, f"human reply to {name}", user=writer),
        ]
        made[name] = ranked_set(
            project,
            context,
            replies,
            list(zip(raters, orders, strict=True)),
            flags={0: {2: ["harmful"]}, 1: {2: ["harmful"]}} if name == "unanimous" else None,
        )
    rollups_rebuild(project=project)
    return made, raters


def test_agreement_page_shows_the_hand_computed_figures(client, lead, project, sets):
    made, _ = sets
    for name, the_set in made.items():
        assert the_set.agreement == pytest.approx(AGREEMENT[name])
    client.force_login(lead)
    response = client.get(reverse("dashboard-agreement", args=[project.slug]))
    assert response.status_code == 200
    page = response.content.decode()
    assert f"{17 / 27:.3f}" in page  # 0.630
    interval = re.search(r"95% interval (0\.\d{3})–(1\.000|0\.\d{3})", page)
    assert interval is not None
    assert float(interval[1]) <= 17 / 27 <= float(interval[2])
    assert float(interval[1]) >= 0.333  # a bootstrap mean never leaves the values' range
    # The lowest agreement first, each linking to its drill-down; prompts escaped.
    order = [made["split"].pk, made["mixed"].pk, made["unanimous"].pk]
    links = [
        page.index(f'href="{reverse("dashboard-set", args=[project.slug, pk])}"') for pk in order
    ]
    assert links == sorted(links)
    assert "Prompt split &lt;script&gt;x&lt;/script&gt;" in page
    assert "<script>x</script>" not in page
    # The charts' data islands and tables (weekly, distribution, by model, language, tag).
    for name in ("weekly", "distribution", "by-model", "by-language", "by-tag"):
        assert f'id="chart-{name}-data"' in page
    # Fleiss' kappa of "harmful": 9 replies, 3 raters each; two raters flagged one reply.
    # P = (8 * 1 + 1/3) / 9 = 25/27, p(yes) = 2/27, Pe = (2/27)^2 + (25/27)^2 = 629/729,
    # kappa = (675 - 629) / (729 - 629) = 0.46. No other flag was used: no kappa.
    assert re.search(r"<th scope=\"row\">harmful</th><td>0\.460</td><td>9</td>", page)
    assert re.search(r"<th scope=\"row\">pii</th><td>–</td><td>9</td>", page)
    # Krippendorff's alpha over ranks, as the maths gives it on the nine orders directly.
    coincidences = [[0.0] * 9 for _ in range(9)]
    for the_set in made.values():
        orders = list(the_set.rankings.values_list("order", flat=True))
        coincidences = add_coincidences(coincidences, rank_coincidences(orders))
    alpha = krippendorff_alpha_ordinal(coincidences)
    assert 0 < alpha < 1
    assert (
        f'Krippendorff\'s alpha (ordinal, ranks)</span><span class="stat-value">{alpha:.3f}' in page
    )


def csv_rows(response):
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(response.content.decode())))


def test_agreement_charts_download_as_csv(client, lead, project, sets):
    client.force_login(lead)
    url = reverse("dashboard-agreement", args=[project.slug])
    rows = csv_rows(client.get(url, {"format": "csv", "chart": "distribution"}))
    assert rows[0] == ["Set agreement", "Sets", "Share"]
    counts = {row[0]: int(row[1]) for row in rows[1:]}
    # 1/3 in 0.3–0.4, 5/9 in 0.5–0.6, 1.0 in the last bin.
    assert counts == {
        **{f"{i / 10:.1f}–{(i + 1) / 10:.1f}": 0 for i in range(10)},
        "0.3–0.4": 1,
        "0.5–0.6": 1,
        "0.9–1.0": 1,
    }
    weekly = csv_rows(client.get(url, {"format": "csv", "chart": "weekly"}))
    assert weekly[0] == ["Week starting", "Agreement", "Sets completed"]
    assert len(weekly) == 2 and float(weekly[1][1]) == pytest.approx(17 / 27, abs=1e-5)
    assert weekly[1][2] == "3"
    by_model = {
        row[0]: (float(row[1]), int(row[2]))
        for row in csv_rows(client.get(url, {"format": "csv", "chart": "by-model"}))[1:]
    }
    assert by_model["policy-v2"] == (pytest.approx(17 / 27, abs=1e-5), 3)
    by_tag = csv_rows(client.get(url, {"format": "csv", "chart": "by-tag"}))[1:]
    assert {row[0]: float(row[1]) for row in by_tag} == {
        name: pytest.approx(value, abs=1e-5) for name, value in AGREEMENT.items()
    }
    assert client.get(url, {"format": "csv", "chart": "nope"}).status_code == 400


def test_filters_swap_the_panel_and_bad_ones_are_a_400(client, lead, project, sets):
    client.force_login(lead)
    url = reverse("dashboard-agreement", args=[project.slug])
    fragment = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert 'id="dashboard-panel"' in fragment and "<html" not in fragment
    # A range before the sets were completed holds none of them.
    past = (timezone.now() - timedelta(days=30)).date()
    empty = client.get(url, {"start": past - timedelta(days=7), "end": past}).content.decode()
    assert "No completed sets in this range." in empty
    for bad in ({"start": "yesterday"}, {"start": "2026-02-01", "end": "2026-01-01"}):
        response = client.get(url, bad)
        assert response.status_code == 400
        assert response.content.decode().startswith("start:")


def test_models_page_ranks_the_new_policy_first(client, lead, project, sets):
    client.force_login(lead)
    url = reverse("dashboard-models", args=[project.slug])
    page = client.get(url).content.decode()
    assert page.index("<strong>policy-v2</strong>") < page.index("<strong>policy-v1</strong>")
    assert page.index("<strong>policy-v1</strong>") < page.index("<strong>human</strong>")
    assert "9 games between 3 models" in page
    strengths = csv_rows(client.get(url, {"format": "csv", "chart": "strengths"}))
    assert [row[0] for row in strengths[1:]] == ["policy-v2", "policy-v1", "human"]
    for row in strengths[1:]:
        low, strength, high = float(row[2]), float(row[1]), float(row[3])
        assert low < strength < high
        assert int(row[5]) == 6  # each model met each of the other two in all three sets
    rates = csv_rows(client.get(url, {"format": "csv", "chart": "win-rates"}))
    assert rates[0] == ["Model", "vs policy-v2", "vs policy-v1", "vs human"]
    assert rates[1] == ["policy-v2", "", "1.0", "1.0"]
    assert rates[2] == ["policy-v1", "0.0", "", "1.0"]


@pytest.mark.parametrize("name", PAGES)
def test_dashboard_pages_by_role(client, project, lead, engineer, trainer, outsider, name):
    url = reverse(name, args=[project.slug])
    for user, status in {lead: 200, engineer: 200, trainer: 403, outsider: 404}.items():
        client.force_login(user)
        assert client.get(url).status_code == status, user.username


# ---------------------------------------------------------------------------- drill-down


def test_drill_down_shows_each_ranking_beside_the_consensus(client, lead, project, sets):
    made, (a, b, c) = sets
    the_set = made["split"]
    annotator_exclude(
        project=project,
        annotator=c,
        since=timezone.now() - timedelta(days=1),
        actor=lead,
        reason="x",
    )
    client.force_login(lead)
    response = client.get(reverse("dashboard-set", args=[project.slug, the_set.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert "&lt;i&gt;new&lt;/i&gt; reply to split" in page and "<i>new</i>" not in page
    assert "old reply to split" in page and "human reply to split" in page
    header = page[page.index("<thead>") : page.index("</thead>")]
    assert all(user.username in header for user in (a, b, c))
    assert header.count("excluded") == 1  # c's ranking
    # Each trainer's name leads to their own dashboard page.
    assert reverse("dashboard-trainer", args=[project.slug, a.username]) in header
    # Rows in consensus order; c's column ranks them 3, 2, 1.
    body = page[page.index("<tbody>") : page.index("</tbody>")]
    rows = body.split("</tr>")[:3]
    assert ["policy-v2" in rows[0], "policy-v1" in rows[1], "human" in rows[2]] == [True] * 3
    cells = [re.findall(r"<td>(\d)</td>", row) for row in rows]
    assert cells == [["1", "1", "3"], ["2", "2", "2"], ["3", "3", "1"]]
    assert "Prompt split &lt;script&gt;" in page
    # A lead may reopen it from here.
    assert reverse("dashboard-actions", args=[project.slug]) + f"?set={the_set.pk}" in page


def test_drill_down_marks_ties_and_flags(client, engineer, project):
    a, b = trainers(project, 2)
    context = start(project, "Tie?")
    replies = [say(context, f"r{i}") for i in range(3)]
    the_set = ranked_set(
        project, context, replies, [(a, [[0, 1], [2]]), (b, [[2], [0], [1]])],
        flags={1: {2: ["pii"]}},
    )  # fmt: skip
    client.force_login(engineer)
    page = client.get(reverse("dashboard-set", args=[project.slug, the_set.pk])).content.decode()
    assert "<td>1=</td>" in page  # a's tie for first
    assert "pii" in page
    assert "Reopen for more rankings" not in page  # engineers do not manage


def test_drill_down_of_another_projects_set_is_a_404(client, lead, project, trainer, outsider):
    other = make_ranking_set(ProjectFactory(slug="beta"), k=2)
    mine = make_ranking_set(project, k=2)
    client.force_login(lead)
    assert client.get(reverse("dashboard-set", args=[project.slug, other.pk])).status_code == 404
    assert client.get(reverse("dashboard-set", args=[project.slug, mine.pk])).status_code == 200
    client.force_login(trainer)
    assert client.get(reverse("dashboard-set", args=[project.slug, mine.pk])).status_code == 403
    client.force_login(outsider)
    assert client.get(reverse("dashboard-set", args=[project.slug, mine.pk])).status_code == 404
