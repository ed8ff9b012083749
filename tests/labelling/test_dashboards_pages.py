"""The overview, trainers, trainer and length-bias dashboard pages: access, htmx panels, charts
and their CSV downloads, bad filters."""

import csv
import io
import json
import re

import pytest
from django.urls import reverse

from annotations.models import Membership
from labelling.dashboards.charts import ChartTable
from labelling.dashboards.outliers import Rule, outliers
from labelling.dashboards.rollups import rollups_refresh
from tests.factories import (
    MembershipFactory,
    ModelVersionFactory,
    UserFactory,
    ranked_set,
    say,
    start,
    trainers,
)

PAGES = ["dashboard-overview", "dashboard-trainers", "dashboard-length"]


@pytest.fixture
def filled(project):
    """Five trainers ranking the same 40 two-reply sets; t4 always prefers the shorter reply
    and so disagrees with everyone else (who prefer the longer one)."""
    people = trainers(project, 5)
    model = ModelVersionFactory(name="policy-a")
    for n in range(40):
        prompt = start(project, f"Prompt {n}")
        replies = [
            say(prompt, "short", model=model),
            say(prompt, "a much longer reply", model=model),
        ]
        rankings = [(person, [[1], [0]]) for person in people[:4]]
        rankings.append((people[4], [[0], [1]]))
        ranked_set(project, prompt, replies, rankings)
    rollups_refresh(project=project)
    return people


def _get(client, user, name, project, **params):
    client.force_login(user)
    return client.get(reverse(name, args=[project.slug]), params)


@pytest.mark.parametrize("name", PAGES)
def test_lead_and_engineer_see_the_pages(client, project, lead, engineer, filled, name):
    for user in (lead, engineer):
        response = _get(client, user, name, project)
        assert response.status_code == 200
        html = response.content.decode()
        assert "<html" in html
        assert 'id="dashboard-panel"' in html
        assert "vendor/chart.js/chart.umd.min.js" in html
        # Every script is either a file or a JSON data island: nothing inline to run.
        for tag in re.findall(r"<script[^>]*>", html):
            assert "src=" in tag or 'type="application/json"' in tag, tag


@pytest.mark.parametrize("name", PAGES)
def test_trainer_gets_403_and_outsider_404(client, project, trainer, outsider, name):
    assert _get(client, trainer, name, project).status_code == 403
    assert _get(client, outsider, name, project).status_code == 404


def test_trainer_sees_only_their_own_page(client, project, filled):
    me, other = filled[0], filled[1]
    client.force_login(me)
    own = client.get(reverse("dashboard-trainer", args=[project.slug, me.username]))
    assert own.status_code == 200
    assert "Your work" in own.content.decode()
    # No tabs to pages a trainer may not open.
    overview = reverse("dashboard-overview", args=[project.slug])
    assert f'href="{overview}"' not in own.content.decode()
    theirs = client.get(reverse("dashboard-trainer", args=[project.slug, other.username]))
    assert theirs.status_code == 403


def test_lead_opens_any_trainer_page_and_unknown_is_404(client, project, lead, filled):
    client.force_login(lead)
    response = client.get(reverse("dashboard-trainer", args=[project.slug, "t4"]))
    assert response.status_code == 200
    assert "trainer-trend" in response.content.decode()
    missing = client.get(reverse("dashboard-trainer", args=[project.slug, "nobody"]))
    assert missing.status_code == 404


def test_outsider_gets_404_on_a_trainer_page(client, project, outsider, filled):
    client.force_login(outsider)
    url = reverse("dashboard-trainer", args=[project.slug, filled[0].username])
    assert client.get(url).status_code == 404


def test_trainers_page_highlights_the_trainer_far_below_the_rest(client, project, lead, filled):
    response = _get(client, lead, "dashboard-trainers", project, sort="agreement")
    html = response.content.decode()
    rows = re.findall(r"<tr( class=\"highlight\")?>\s*<th scope=\"row\"><a [^>]*>(t\d)</a>", html)
    highlighted = [name for mark, name in rows if mark]
    assert highlighted == ["t4"]
    assert "agreement with the others&#x27; consensus 0%" in html
    # Sorted by agreement, lowest first: t4 leads the table.
    assert rows[0][1] == "t4"
    descending = _get(client, lead, "dashboard-trainers", project, sort="agreement", dir="desc")
    rows = re.findall(r"<th scope=\"row\"><a [^>]*>(t\d)</a>", descending.content.decode())
    assert rows[-1] == "t4"


def test_htmx_filter_returns_only_the_panel(client, project, lead, filled):
    client.force_login(lead)
    response = client.get(
        reverse("dashboard-overview", args=[project.slug]),
        {"kind": "ranking", "trainer": "t1"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html
    assert html.strip().startswith('<div id="dashboard-panel">')
    assert "Tasks done per day by t1" in html
    assert "HX-Request" in response["Vary"]


def test_length_page_shows_project_and_trainer_charts(client, project, lead, filled):
    response = _get(client, lead, "dashboard-length", project, trainer="t4")
    html = response.content.decode()
    data = json.loads(
        re.search(
            r'<script id="chart-length-trainer-data" type="application/json">(.*?)</script>', html
        ).group(1)
    )
    # t4 preferred the shorter reply of every pair (a 14-character difference): 0% won.
    assert data["labels"][0] == "1–49 chars"
    assert data["datasets"][0]["data"][0] == 0.0
    project_data = json.loads(
        re.search(
            r'<script id="chart-length-data" type="application/json">(.*?)</script>', html
        ).group(1)
    )
    assert project_data["datasets"][0]["data"][0] == pytest.approx(160 / 200)


def test_csv_download_of_a_chart(client, project, lead, filled):
    response = _get(client, lead, "dashboard-length", project, format="csv", chart="length")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "alpha-length.csv" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0][:3] == ["Length difference", "Pairs", "Longer won"]
    assert rows[1][:3] == ["1–49 chars", "200", "160"]


def test_csv_of_an_unknown_chart_is_400(client, project, lead, filled):
    response = _get(client, lead, "dashboard-overview", project, format="csv", chart="nope")
    assert response.status_code == 400
    assert b"chart" in response.content


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"start": "2026-13-01"}, b"start"),
        ({"end": "yesterday"}, b"end"),
        ({"kind": "painting"}, b"kind"),
        ({"trainer": "nobody"}, b"trainer"),
        ({"start": "2026-05-02", "end": "2026-05-01"}, b"start"),
    ],
)
def test_malformed_filters_are_400_naming_the_field(client, project, lead, params, field):
    response = _get(client, lead, "dashboard-overview", project, **params)
    assert response.status_code == 400
    assert response.content.startswith(field)


def test_bad_sort_is_400(client, project, lead):
    response = _get(client, lead, "dashboard-trainers", project, sort="password")
    assert response.status_code == 400
    assert response.content.startswith(b"sort")


def test_user_text_is_escaped(client, project, lead):
    MembershipFactory(
        project=project, user=UserFactory(username="<b>x</b>"), role=Membership.Role.TRAINER
    )
    html = _get(client, lead, "dashboard-length", project).content.decode()
    assert "<b>x</b>" not in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html


def test_project_page_links_to_dashboards(client, project, lead, trainer):
    client.force_login(lead)
    html = client.get(reverse("project-detail", args=[project.slug])).content.decode()
    overview = reverse("dashboard-overview", args=[project.slug])
    assert f'href="{overview}"' in html
    client.force_login(trainer)
    html = client.get(reverse("project-detail", args=[project.slug])).content.decode()
    assert reverse("dashboard-trainer", args=[project.slug, trainer.username]) in html
    assert f'href="{overview}"' not in html


def test_chart_table_csv_neutralises_formulas_and_checks_its_shape():
    table = ChartTable(
        name="t",
        title="T",
        x_label="x",
        y_label="y",
        columns=["Who", "Share"],
        rows=[("=HYPERLINK(1)", 0.5), ("bob", None)],
        series=["Share"],
        percent=True,
    )
    assert table.csv_text().splitlines() == ["Who,Share", "'=HYPERLINK(1),0.5", "bob,"]
    assert table.display_rows() == [["=HYPERLINK(1)", "50.0%"], ["bob", "–"]]
    with pytest.raises(ValueError):
        ChartTable(name="t", title="", x_label="", y_label="", columns=["a"], rows=[(1, 2)])
    with pytest.raises(ValueError):
        ChartTable(
            name="t", title="", x_label="", y_label="", columns=["a", "b"], rows=[], series=["c"]
        )


def test_outliers_use_median_and_mad():
    rule = Rule("agreement", low=True, floor=0.01, reason="{value:.2f} vs {median:.2f}")
    values = {"a": 0.80, "b": 0.82, "c": 0.78, "d": 0.81, "e": 0.40}
    assert outliers(values, rule) == {"e": "0.40 vs 0.80"}
    # Too few trainers to say who is unusual.
    assert outliers({"a": 0.9, "b": 0.1}, rule) == {}


def test_kind_filter_narrows_the_throughput_chart(client, project, lead, filled):
    response = _get(client, lead, "dashboard-overview", project, kind="ranking")
    html = response.content.decode()
    data = json.loads(
        re.search(
            r'<script id="chart-tasks-done-data" type="application/json">(.*?)</script>', html
        ).group(1)
    )
    assert [dataset["label"] for dataset in data["datasets"]] == ["Rank replies"]
    assert data["xLabel"] == "Day (UTC)"
    assert data["yLabel"] == "Tasks done"


def test_actions_tab_only_for_those_who_may_act(client, project, lead, engineer, filled):
    actions = reverse("dashboard-actions", args=[project.slug])
    assert f'href="{actions}"' in _get(client, lead, "dashboard-trainers", project).content.decode()
    html = _get(client, engineer, "dashboard-trainers", project).content.decode()
    assert f'href="{actions}"' not in html


def test_trainer_downloads_their_own_trend_as_csv(client, project, filled):
    me = filled[4]
    client.force_login(me)
    url = reverse("dashboard-trainer", args=[project.slug, me.username])
    response = client.get(url, {"format": "csv", "chart": "trainer-length"})
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    # t4 preferred the shorter reply in all of their 40 pairs.
    assert rows[1][:3] == ["1–49 chars", "40", "0"]
