"""An engineer creates a preferences export in Chromium, a real worker writes it, the page's
progress bar reaches done without a reload, and the split downloads match the manifest."""

import hashlib
from pathlib import Path

import pytest
from playwright.sync_api import expect

from exports.models import ExportSnapshot
from tests.browser.conftest import SCREENSHOT_DIR, log_in
from tests.factories import MembershipFactory, ProjectFactory, UserFactory, import_trees

pytestmark = [pytest.mark.browser, pytest.mark.worker]

# Written under var/ so test runs never touch the tracked docs/ copy; set
# PARLEY_SCREENSHOT_DIR=docs to refresh the README pictures.
SCREENSHOT = SCREENSHOT_DIR / "screenshot-export.png"
BUILD_TIMEOUT_MS = 90_000


def test_an_engineer_creates_a_preferences_export_and_downloads_it(
    page, start_celery_worker, settings, tmp_path
):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    project = ProjectFactory(slug="alpha", name="Alpha <Team>")
    import_trees(project)
    MembershipFactory(project=project, user=UserFactory(username="eve"), role="engineer")
    start_celery_worker(MEDIA_ROOT=settings.MEDIA_ROOT)

    log_in(page, "eve", "pw-for-tests")
    page.goto("/p/alpha/")
    page.get_by_role("link", name="Exports").click()
    expect(page.get_by_role("heading", name="Exports", exact=True)).to_be_visible()

    # Choices of other kinds are hidden, and shown for the kind they belong to.
    kind = page.get_by_label("Kind")
    best_path = page.locator("[data-field='best_path_only']")
    expect(kind).to_have_value("preferences")
    expect(best_path).to_be_hidden()
    kind.select_option("sft")
    expect(best_path).to_be_visible()
    expect(page.locator("[data-field='pair_strategy']")).to_be_hidden()
    kind.select_option("preferences")

    page.get_by_label("Validation share").fill("0.1")
    page.get_by_label("Split seed").fill("4")
    page.get_by_label("Pair strategy").select_option("best_vs_rest")
    page.get_by_role("checkbox", name="pii").check()
    page.get_by_role("button", name="Create export").click()

    # The export's own page; the fragment polls until the worker is done, with no reload.
    page.wait_for_url("**/p/alpha/exports/*/")
    progress = page.locator("#export-progress")
    expect(progress).to_have_attribute("data-state", "done", timeout=BUILD_TIMEOUT_MS)
    snapshot = ExportSnapshot.objects.get()
    assert snapshot.state == "done" and snapshot.choices["pair_strategy"] == "best_vs_rest"
    assert snapshot.choices["exclude_flags"] == ["pii"] and snapshot.choices["seed"] == 4
    bar = progress.locator("progress")
    expect(bar).to_have_attribute("value", "1")
    expect(bar).to_have_attribute("max", "1")
    expect(progress).to_contain_text(f"{snapshot.manifest['rows']} rows written")
    expect(page.locator("#error-banners .error-banner")).to_have_count(0)
    # The project's name is text, never markup.
    expect(page.locator(".breadcrumbs")).to_contain_text("Alpha <Team>")

    for split, entry in snapshot.manifest["splits"].items():
        with page.expect_download() as info:
            progress.get_by_role("link", name=split, exact=True).click()
        download = info.value
        assert download.suggested_filename == f"alpha-preferences-{snapshot.pk}-{split}.jsonl"
        data = Path(download.path()).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    expect(progress.get_by_role("link", name="manifest.json")).to_be_visible()

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
