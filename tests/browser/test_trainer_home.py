"""A trainer's home in Chromium: today's and this week's work, an empty ranking queue that says
why, and that shows a button by itself once a set is ready."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from annotations.models import RankingSet
from annotations.services import conversation_start
from labelling.models import RankingSetSampling, Task
from tests.browser.conftest import SCREENSHOT_DIR, log_in
from tests.factories import (
    MembershipFactory,
    ModelVersionFactory,
    ProjectFactory,
    UserFactory,
    claim,
    make_ranking_set,
    rank,
)
from trainer_bridge.models import GenerationRequest

pytestmark = pytest.mark.browser

# Written under var/ so test runs never touch the tracked docs/ copy; set
# PARLEY_SCREENSHOT_DIR=docs to refresh the README pictures.
SCREENSHOT = SCREENSHOT_DIR / "screenshot-trainer-home.png"


def test_trainer_home_explains_an_empty_queue_and_refreshes_itself(page, monkeypatch):
    monkeypatch.setattr("labelling.views.work.POLL_SECONDS", 1)
    model = ModelVersionFactory(name="cand-a")
    project = ProjectFactory(slug="alpha", name="Alpha", rankings_per_set=1)
    project.candidate_models.add(model)
    trainer = MembershipFactory(project=project, user=UserFactory(username="tina")).user
    # Done today: one ranking (of a set now complete).
    make_ranking_set(project, texts=["Water it weekly.", "Never water it.", "Sun.", "Shade."])
    rank(claim(project, trainer), trainer)
    # One set being sampled: its request is queued.
    _, context = conversation_start(project=project, text="Name a river.", source="prompt")
    sampling = RankingSet.objects.create(
        project=project, context=context, state=RankingSet.State.SAMPLING
    )
    request = GenerationRequest.objects.create(
        project=project, context=context, model_version=model, purpose="candidates", n=4
    )
    RankingSetSampling.objects.create(ranking_set=sampling, generation_request=request)
    # An earlier candidates request took five minutes from queue to done: the estimate.
    earlier = GenerationRequest.objects.create(
        project=project, context=context, model_version=model, purpose="candidates", n=4
    )
    finished = timezone.now() - timedelta(hours=1)
    GenerationRequest.objects.filter(pk=earlier.pk).update(
        state="done", queued_at=finished - timedelta(minutes=5), finished_at=finished
    )

    log_in(page, "tina", "pw-for-tests")
    page.get_by_role("link", name="Your work").click()
    expect(page.get_by_role("heading", name="Your work in Alpha")).to_be_visible()
    ranking_row = page.locator("#work-counts tr[data-kind='ranking']")
    expect(ranking_row.locator(".count-today")).to_have_text("1")
    expect(ranking_row.locator(".count-week")).to_have_text("1")
    queue = page.locator("#ranking-queue")
    expect(queue).to_contain_text("Nothing to rank right now")
    expect(queue).to_contain_text("1 set is being sampled (1 generation request queued or running)")
    expect(queue).to_contain_text(
        re.compile(r"The next set is expected around \d\d:\d\d \(in about 5 min\)")
    )
    recent = page.locator("#recent-submissions > li")
    expect(recent).to_have_count(1)
    recent.locator("summary").click()
    expect(recent).to_contain_text("1. Water it weekly.")
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    # A set becomes ready: the queue shows it without a reload, and stops asking.
    make_ranking_set(project, texts=["A", "B", "C", "D"])
    ready = queue.get_by_role("button", name="Rank replies")
    expect(ready).to_be_visible(timeout=10_000)
    expect(page.locator("#ranking-queue")).to_have_attribute("data-state", "ready")
    expect(page.locator("#ranking-queue")).not_to_have_attribute("hx-trigger", "every 1s")
    ready.click()
    expect(page).to_have_url(re.compile(r"/tasks/\d+/rank$"))
    assert Task.objects.filter(assignee=trainer, state="assigned", kind="ranking").exists()
