"""A lead opens every dashboard page in Chromium: charts are drawn, filters swap the panel with
htmx, a set is reopened through the confirmation step, and each page is saved as a screenshot
(`dashboard-agreement.png` is the README's)."""

import random
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from annotations.exclusions import annotator_exclude
from annotations.models import Ranking, RankingSet
from annotations.rankings import ranking_set_create
from labelling.claims import task_claim_next, task_submit
from labelling.dashboards.rollups import rollups_rebuild
from labelling.models import Task
from tests.browser.conftest import SCREENSHOT_DIR, log_in
from tests.factories import (
    MembershipFactory,
    ModelVersionFactory,
    ProjectFactory,
    UserFactory,
    say,
    start,
)

pytestmark = pytest.mark.browser

# Written under var/ so test runs never touch the tracked docs/ copy; set
# PARLEY_SCREENSHOT_DIR=docs to refresh the README's picture (dashboard-agreement.png).

SETS = 36
WEEKS = 6
TOPICS = ["basil on a windowsill", "a leaking tap", "sourdough starter", "a cover letter"]


def ranked_project():
    """A project with SETS sets over WEEKS weeks, each ranked by three of five trainers through
    the ordinary claim and submit; the newer model usually wins, with some disagreement."""
    project = ProjectFactory(slug="alpha", name="Alpha")
    MembershipFactory(project=project, user=UserFactory(username="lee"), role="lead")
    people = [
        MembershipFactory(project=project, user=UserFactory(username=name), role="trainer").user
        for name in ("ana", "ben", "cho", "dev", "eli")
    ]
    writer = MembershipFactory(project=project, user=UserFactory(username="wes")).user
    new, old = ModelVersionFactory(name="policy-v2"), ModelVersionFactory(name="policy-v1")
    rng = random.Random(7)
    now = timezone.now()
    for number in range(SETS):
        topic = TOPICS[number % len(TOPICS)]
        context = start(
            project, f"Help me with {topic} (#{number})", meta={"tags": [topic.split()[-1]]}
        )
        replies = [
            say(context, f"A careful, detailed answer about {topic}. " * 3, model=new),
            say(context, f"A short answer about {topic}.", model=old),
            say(context, f"What a person wrote about {topic}, at medium length.", user=writer),
        ]
        ranking_set = ranking_set_create(
            project=project, context=context, rankings_needed=3, candidates=replies
        )
        Task.objects.bulk_create(
            Task(project=project, kind=Task.Kind.RANKING, ranking_set=ranking_set) for _ in range(3)
        )
        ids = [reply.pk for reply in replies]
        for offset in range(3):
            user = people[(number + offset) % len(people)]
            order = list(ids)
            if rng.random() < 0.35:
                i, j = rng.sample(range(3), 2)
                order[i], order[j] = order[j], order[i]
            task = task_claim_next(project=project, user=user, kind="ranking")
            task_submit(
                task_id=task.pk,
                user=user,
                data={
                    "order": [[pk] for pk in order],
                    "time_spent_ms": rng.randint(8, 90) * 1000,
                    # Some flag the person's reply; they agree more often than chance.
                    "flags": {str(ids[2]): ["untruthful"]}
                    if rng.random() < (number % 3) / 3
                    else {},
                },
            )
        when = now - timedelta(days=(number * 7 * WEEKS) // SETS, hours=1)
        RankingSet.objects.filter(pk=ranking_set.pk).update(completed_at=when)
        Ranking.objects.filter(ranking_set=ranking_set).update(created_at=when)
        Task.objects.filter(ranking_set=ranking_set).update(
            done_at=when, assigned_at=when - timedelta(minutes=1)
        )
    rollups_rebuild(project=project)
    return project


def shoot(page, name, *, height=None):
    """The whole page, or its top `height` pixels (the README's picture)."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    clip = {"x": 0, "y": 0, "width": 1280, "height": height} if height else None
    page.screenshot(path=str(SCREENSHOT_DIR / f"{name}.png"), full_page=True, clip=clip)


def expect_drawn(page, count_at_least=1):
    """Chart.js drew into the canvases (it sizes each one), and no request failed."""
    canvases = page.locator("figure.dashboard-chart canvas")
    expect(canvases.first).to_be_visible()
    assert canvases.count() >= count_at_least
    page.wait_for_function(
        "() => [...document.querySelectorAll('figure.dashboard-chart canvas')]"
        ".every(c => window.Chart && window.Chart.getChart(c))"
    )
    expect(page.locator("#error-banners .error-banner")).to_have_count(0)


def test_a_lead_opens_every_dashboard(page):
    project = ranked_project()
    lowest = RankingSet.objects.filter(project=project).order_by("agreement", "pk").first()
    log_in(page, "lee", "pw-for-tests")

    pages = [
        ("dashboard-overview", "/p/alpha/dashboard/", "Overview"),
        ("dashboard-trainers", "/p/alpha/dashboard/trainers/", "Trainers"),
        ("dashboard-trainer", "/p/alpha/dashboard/trainers/ana/", "ana"),
        ("dashboard-length", "/p/alpha/dashboard/length/", "Length bias"),
        ("dashboard-models", "/p/alpha/dashboard/models/", "Model leaderboard"),
    ]
    for name, url, heading in pages:
        page.goto(url)
        expect(page.get_by_role("heading", level=1)).to_contain_text(heading)
        expect_drawn(page)
        shoot(page, name)

    # Agreement: the figures, the charts, and a date filter that swaps only the panel.
    page.goto("/p/alpha/dashboard/agreement/")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Agreement")
    expect_drawn(page, count_at_least=4)
    expect(page.locator(".stat-value").first).to_have_text(f"{_mean(project):.3f}")
    shoot(page, "dashboard-agreement", height=1500)
    page.evaluate("window.__kept = true")  # gone if the page reloads
    start_field = page.locator("input[name=start]")
    start_field.fill((timezone.now() - timedelta(days=10)).date().isoformat())
    start_field.dispatch_event("change")
    page.wait_for_url("**start=*")
    expect(page.get_by_role("heading", name="sets with the lowest agreement")).to_be_visible()
    assert page.evaluate("window.__kept === true")
    expect_drawn(page)

    # The lowest set's drill-down, and its reopening through the confirmation step.
    page.goto(f"/p/alpha/dashboard/sets/{lowest.pk}/")
    expect(page.get_by_role("heading", name="Rankings beside the consensus")).to_be_visible()
    expect(page.locator("table.set-rankings tbody tr")).to_have_count(3)
    shoot(page, "dashboard-set")
    page.get_by_role("link", name="Reopen for more rankings…").click()
    expect(page.get_by_role("spinbutton", name="Ranking set")).to_have_value(str(lowest.pk))
    page.locator("#reopen").get_by_label("Reason").fill("Two trainers split; ask a third <b>")
    page.get_by_role("button", name="Review the reopening…").click()
    confirm = page.locator("#confirm")
    expect(confirm).to_contain_text(f"Reopen ranking set {lowest.pk}")
    lowest.refresh_from_db()
    assert lowest.state == RankingSet.State.COMPLETE
    confirm.get_by_role("button", name="Yes, reopen the set").click()
    expect(page.locator(".message.success")).to_contain_text("reopened")
    log = page.locator("table.audit-log")
    expect(log).to_contain_text("ranking_set.reopen")
    expect(log).to_contain_text("Two trainers split; ask a third <b>")
    lowest.refresh_from_db()
    assert lowest.state == RankingSet.State.COLLECTING
    assert lowest.rankings_needed == 4
    shoot(page, "dashboard-actions")


def _mean(project) -> float:
    values = list(
        RankingSet.objects.filter(project=project, agreement__isnull=False).values_list(
            "agreement", flat=True
        )
    )
    return sum(values) / len(values)


def test_a_lead_lifts_an_exclusion_through_the_confirmation(page):
    project = ProjectFactory(slug="alpha", name="Alpha")
    lead = MembershipFactory(project=project, user=UserFactory(username="lee"), role="lead").user
    ana = MembershipFactory(project=project, user=UserFactory(username="ana"), role="trainer").user
    exclusion = annotator_exclude(
        project=project,
        annotator=ana,
        since=timezone.now() - timedelta(days=2),
        actor=lead,
        reason="Ranked at random",
    ).exclusion
    log_in(page, "lee", "pw-for-tests")
    page.goto("/p/alpha/dashboard/actions/")
    page.get_by_label("Exclusion").select_option(str(exclusion.pk))
    page.locator("#lift-reason").fill("Appeal upheld <b>")
    page.get_by_role("button", name="Review the lifting…").click()
    confirm = page.locator("#confirm")
    expect(confirm).to_contain_text("Lift the exclusion of ana since")
    expect(confirm).to_contain_text("Sets reopened for one more ranking stay open")
    shoot(page, "dashboard-actions-lift")
    exclusion.refresh_from_db()
    assert exclusion.lifted_at is None
    confirm.get_by_role("button", name="Yes, lift the exclusion").click()
    expect(page.locator(".message.success")).to_contain_text("Lifted the exclusion of ana")
    expect(page.locator("table.audit-log")).to_contain_text("annotator.lift")
    expect(page.locator("table.audit-log")).to_contain_text("Appeal upheld <b>")
    expect(page.get_by_text("Nobody is excluded.")).to_be_visible()
    exclusion.refresh_from_db()
    assert exclusion.lifted_at is not None
