"""`seed_demo` builds the demo project and its accounts, and running it again changes nothing."""

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import CommandError, call_command
from django.test import override_settings

from annotations.models import Conversation, Membership, Project
from labelling.demo import DEMO_PROMPTS

pytestmark = pytest.mark.django_db


@override_settings(DEBUG=True)
def test_seed_demo_is_idempotent(capsys):
    call_command("seed_demo")
    out = capsys.readouterr().out
    for username in ("trainer", "lead", "engineer"):
        assert f"{username}" in out
        assert authenticate(username=username, password="parley-demo") is not None
    project = Project.objects.get(slug="demo")
    roles = dict(Membership.objects.filter(project=project).values_list("user__username", "role"))
    assert roles == {"trainer": "trainer", "lead": "lead", "engineer": "engineer"}
    prompts = Conversation.objects.filter(project=project, source="prompt")
    assert prompts.count() == len(DEMO_PROMPTS) >= 24
    assert get_user_model().objects.get(username="lead").is_staff

    call_command("seed_demo")
    assert Project.objects.filter(slug="demo").count() == 1
    assert prompts.count() == len(DEMO_PROMPTS)
    assert Membership.objects.filter(project=project).count() == 3


@override_settings(DEBUG=False)
def test_seed_demo_refuses_without_debug():
    with pytest.raises(CommandError, match="known passwords"):
        call_command("seed_demo")
    assert not Project.objects.exists()
