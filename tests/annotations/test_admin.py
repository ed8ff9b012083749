"""Every model has an admin page that loads for staff."""

import pytest
from django.contrib import admin
from django.urls import reverse

from annotations.services import conversation_start
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_every_model_of_ours_has_a_working_admin(client, project):
    conversation_start(project=project, text="Hello")
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    ours = [
        model
        for model in admin.site._registry
        if model._meta.app_label in {"annotations", "labelling", "exports", "trainer_bridge"}
    ]
    names = {model.__name__ for model in ours}
    assert {
        "Project", "Membership", "ModelVersion", "Conversation", "Message", "RankingSet",
        "Ranking", "Label", "GenerationRequest", "PromptReport", "Task",
    } <= names  # fmt: skip
    for model in ours:
        opts = model._meta
        changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        assert client.get(changelist).status_code == 200, changelist
        add = reverse(f"admin:{opts.app_label}_{opts.model_name}_add")
        assert client.get(add).status_code == 200, add
