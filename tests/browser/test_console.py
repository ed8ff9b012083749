"""A project run from the app: staff create it, a lead writes guidelines with their preview,
shapes the label schema and adds a member, without the admin."""

import pytest

from annotations.audit import audit_log
from annotations.models import Membership, Project
from tests.browser.conftest import SCREENSHOT_DIR, log_in
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# PARLEY_SCREENSHOT_DIR=docs to refresh the README pictures.
SETTINGS_SHOT = SCREENSHOT_DIR / "screenshot-console.png"
SCHEMA_SHOT = SCREENSHOT_DIR / "screenshot-label-schema.png"
MEMBERS_SHOT = SCREENSHOT_DIR / "screenshot-members.png"


def test_staff_create_a_project_and_write_its_guidelines(page):
    UserFactory(username="sam", is_staff=True)
    log_in(page, "sam", "pw-for-tests")
    page.get_by_role("link", name="New project").click()
    page.wait_for_url("**/projects/new/")
    page.get_by_label("Name").fill("Support chats")
    page.get_by_label("Address").fill("support")
    page.get_by_role("button", name="Create the project").click()
    page.wait_for_url("**/p/support/settings/")

    guidelines = page.get_by_label("Guidelines")
    guidelines.fill("# Tone\n\nBe **brief**. <script>window.hacked = 1</script>")
    preview = page.locator("#guidelines-preview")
    preview.locator("h1", has_text="Tone").wait_for()
    assert preview.locator("strong").inner_text() == "brief"
    assert preview.locator("script").count() == 0
    assert page.evaluate("window.hacked") is None

    page.get_by_label("Replies per ranking set (K)").fill("6")
    page.get_by_label("Languages").fill("en, fr")
    page.get_by_role("button", name="Save settings").click()
    page.get_by_text("K and N apply to ranking sets made from now on.").wait_for()
    project = Project.objects.get(slug="support")
    assert (project.replies_per_set, project.languages) == (6, ["en", "fr"])
    assert project.guidelines.startswith("# Tone")
    recent = page.locator("[data-audit-action='project.update']").first
    assert "replies_per_set" in recent.inner_text()
    page.screenshot(path=str(SETTINGS_SHOT), full_page=True)

    # An error names its field and keeps what was typed.
    page.get_by_label("Languages").fill("en, french!")
    page.get_by_role("button", name="Save settings").click()
    field = page.locator(".field.has-error", has=page.get_by_label("Languages"))
    field.wait_for()
    assert "Not a language code: french!" in field.inner_text()
    assert page.get_by_label("Languages").input_value() == "en, french!"
    assert Project.objects.get(slug="support").languages == ["en", "fr"]


def test_lead_edits_the_label_schema(page):
    lead = UserFactory(username="lee")
    project = Project.objects.create(slug="alpha", name="Alpha")
    Membership.objects.create(project=project, user=lead, role="lead")
    log_in(page, "lee", "pw-for-tests")
    page.goto("/p/alpha/")
    page.get_by_role("link", name="Settings").click()
    page.get_by_role("link", name="Label schema").click()
    page.wait_for_url("**/p/alpha/settings/labels/")

    rows = page.locator("[data-label-row]")
    assert rows.count() == 6
    # Rename pii, remove untruthful, move quality to the top, add a Likert label.
    rows.nth(3).locator("input[name$='-name']").fill("personal_data")
    rows.nth(1).get_by_label("Remove").check()
    assert "is-removed" in (rows.nth(1).get_attribute("class") or "")
    for position in range(5, 0, -1):  # quality climbs from the last row to the first
        page.locator("[data-label-row]").nth(position).get_by_role("button", name="Move up").click()
    page.get_by_role("button", name="Add a label").click()
    new_row = page.locator("[data-label-row]").last
    assert new_row.locator("input[name$='-name']").evaluate("e => e === document.activeElement")
    new_row.locator("input[name$='-name']").fill("concise")
    new_row.locator("select[name$='-kind']").select_option("likert")
    new_row.locator("input[name$='-description']").fill("Says it in few words.")
    page.screenshot(path=str(SCHEMA_SHOT), full_page=True)
    page.get_by_role("button", name="Save the schema").click()
    page.get_by_text("Label schema saved.").wait_for()

    project.refresh_from_db()
    assert [(label["name"], label["kind"]) for label in project.label_schema] == [
        ("quality", "likert"),
        ("harmful", "flag"),
        ("fails_instruction", "flag"),
        ("personal_data", "flag"),
        ("wrong_language", "flag"),
        ("concise", "likert"),
    ]
    assert audit_log(project, actions=["project.label_schema"]).get().actor == lead

    # A bad name is refused on its row.
    page.locator("[data-label-row]").first.locator("input[name$='-name']").fill("Quality!")
    page.get_by_role("button", name="Save the schema").click()
    page.locator("tr.has-error").first.wait_for()
    assert "lower-case letters" in page.locator("tr.has-error").first.inner_text()


def test_lead_adds_changes_and_removes_a_member(page):
    lead = UserFactory(username="lee")
    UserFactory(username="alice", email="alice@example.com")
    project = Project.objects.create(slug="alpha", name="Alpha")
    Membership.objects.create(project=project, user=lead, role="lead")
    log_in(page, "lee", "pw-for-tests")
    page.goto("/p/alpha/members/")

    page.get_by_label("Username or e-mail").fill("alice@example.com")
    page.get_by_label("Role", exact=True).select_option("trainer")
    page.get_by_role("button", name="Add", exact=True).click()
    row = page.locator("[data-member='alice']")
    row.wait_for()
    page.get_by_text("alice added as trainer.").wait_for()
    assert Membership.objects.get(project=project, user__username="alice").role == "trainer"

    page.get_by_label("Username or e-mail").fill("nobody")
    page.get_by_role("button", name="Add", exact=True).click()
    page.get_by_text("No active account has this username or e-mail.").wait_for()

    page.get_by_label("Role of alice").select_option("engineer")
    page.locator("[data-member='alice']").get_by_role("button", name="Change role").click()
    page.get_by_text("alice is now engineer.").wait_for()
    assert Membership.objects.get(project=project, user__username="alice").role == "engineer"
    page.screenshot(path=str(MEMBERS_SHOT), full_page=True)

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Remove alice").click()
    page.get_by_text("alice removed.").wait_for()
    assert page.locator("[data-member='alice']").count() == 0
    assert not Membership.objects.filter(project=project, user__username="alice").exists()
    page.get_by_role("link", name="Change log").click()
    assert page.locator("[data-audit-action^='member.']").count() == 3
