"""A double click on a form that creates something sends one request: "Start the run" twice in
a row leaves one training run, and the browser posted the form once (`data-once` in parley.js);
a GET submit of the same form ("Show this stage's settings") is not held back."""

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import SCREENSHOT_DIR, log_in
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
