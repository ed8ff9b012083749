"""A service's refusal shown on a form (labelling.views.errors.Refusal.on_form)."""

from django import forms
from django.core.exceptions import ValidationError

from labelling.views.errors import Refusal


class ReasonForm(forms.Form):
    reason = forms.CharField()


def _bound() -> ReasonForm:
    form = ReasonForm({"reason": "fine"})
    assert form.is_valid()
    return form


def test_a_message_about_a_field_of_the_form_goes_on_that_field():
    form = _bound()
    Refusal.of(ValidationError({"reason": "Say why."})).on_form(form)
    assert form.errors == {"reason": ["Say why."]}


def test_a_message_about_a_field_the_form_lacks_goes_above_the_form():
    form = _bound()
    Refusal.of(ValidationError({"ranking": "The ranking belongs to another project."})).on_form(
        form
    )
    assert form.non_field_errors() == ["The ranking belongs to another project."]
    assert "reason" not in form.errors


def test_a_message_about_no_field_goes_above_the_form():
    form = _bound()
    Refusal.of(ValidationError("Nothing to change.")).on_form(form)
    assert form.non_field_errors() == ["Nothing to change."]
