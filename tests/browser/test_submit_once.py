"""A double click on a form that creates something sends one request: "Start the run" twice in
a row leaves one training run, and the browser posted the form once (`data-once` in parley.js);
a GET submit of the same form ("Show this stage's settings") is not held back."""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from annotations.models import AnnotatorExclusion
from tests.browser.conftest import SCREENSHOT_DIR, log_in
from tests.factories import MembershipFactory, ProjectFactory, UserFactory
from tests.trainer_bridge.conftest import (  # noqa: F401 (fixtures)
    media_root,
    signal_data,
    snapshot_of,
    tiny_models,
)
from trainer_bridge.models import TrainingRun

pytestmark = pytest.mark.browser


def test_a_double_click_on_start_the_run_starts_one_run(
    page, transactional_db, engineer, mocker, request
):
    mocker.patch("trainer_bridge.tasks.train_run.delay")
    # The training tests' fixtures (imported above): tiny models, ranked sets, a snapshot.
    request.getfixturevalue("signal_data")(sets=3, prompts=20)
    snapshot = request.getfixturevalue("snapshot_of")("preferences")
    posts: list[str] = []
    page.on(
        "request",
        lambda r: posts.append(r.url) if r.method == "POST" and "/training/new" in r.url else None,
    )

    log_in(page, "eve", "pw-for-tests")
    page.goto("/p/alpha/training/new")
    page.get_by_label(f"#{snapshot.pk} preferences", exact=False).check()
    page.get_by_role("button", name="Start the run").dblclick()
    page.wait_for_url("**/p/alpha/training/*/")
    run = TrainingRun.objects.get()
    assert page.url.endswith(f"/p/alpha/training/{run.pk}/")
    expect(page.get_by_text("is queued")).to_be_visible()
    assert TrainingRun.objects.count() == 1
    assert len(posts) == 1, posts
    page.screenshot(path=str(SCREENSHOT_DIR / "screenshot-training-started-once.png"))

    # The GET button of the same form still works, as often as one likes.
    page.goto("/p/alpha/training/new")
    page.get_by_label("Stage").select_option("sft")
    page.get_by_role("button", name="Show this stage's settings").click()
    expect(page.get_by_label("Stage")).to_have_value("sft")
    page.get_by_role("button", name="Show this stage's settings").click()
    expect(page.get_by_role("button", name="Start the run")).to_be_enabled()
    assert TrainingRun.objects.count() == 1


def test_a_double_click_on_confirming_an_exclusion_excludes_once(page, transactional_db):
    project = ProjectFactory(slug="alpha", name="Alpha")
    MembershipFactory(project=project, user=UserFactory(username="lee"), role="lead")
    MembershipFactory(project=project, user=UserFactory(username="ana"), role="trainer")
    posts: list[str] = []
    page.on(
        "request",
        lambda r: posts.append(r.post_data or "") if r.method == "POST" else None,
    )
    log_in(page, "lee", "pw-for-tests")
    page.goto("/p/alpha/dashboard/actions/")
    page.locator("#exclude-annotator").select_option("ana")
    page.locator("#exclude-since").fill((timezone.localdate() - timedelta(days=1)).isoformat())
    page.locator("#exclude-reason").fill("Ranked at random")
    page.get_by_role("button", name="Review the exclusion…").click()
    confirm = page.locator("#confirm")
    expect(confirm).to_contain_text("Exclude 0 rankings by ana")
    posts.clear()
    confirm.get_by_role("button", name="Yes, exclude the rankings").dblclick()
    expect(page.locator(".message.success")).to_contain_text("Excluded 0 rankings by ana")
    expect(page.locator("#error-banners .error-banner")).to_have_count(0)
    expect(page.get_by_text("is already excluded")).to_have_count(0)
    assert len(posts) == 1 and "confirmed=yes" in posts[0], posts
    assert AnnotatorExclusion.objects.filter(annotator__username="ana").count() == 1
    # The panel swapped in is a fresh one: its forms submit again.
    expect(page.get_by_role("button", name="Review the exclusion…")).to_be_enabled()
    page.screenshot(path=str(SCREENSHOT_DIR / "screenshot-exclusion-confirmed-once.png"))
