"""How the pages show a service's refusal: the one mapping from the services' exceptions.

Services refuse by raising: ValidationError when the input is wrong (400), TaskConflict when it
clashes with the task's state (409: not yours any more, already submitted, over a limit). A page
view does not catch them itself. It is decorated with `@shows_refusals(show)`, and `show(request,
refusal, *args, **kwargs)` answers for it, as that page answers (the page again with its errors,
a fragment, JSON, a message on the next page). The REST API maps the same exceptions in
config.api.exception_handler.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps

from django import forms
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse

from labelling.leases import TaskConflict

REFUSALS = (ValidationError, TaskConflict)


@dataclass(frozen=True)
class Refusal:
    """A service's refusal as a page shows it."""

    status: int  # 400 for a ValidationError, 409 for a TaskConflict
    errors: dict[str, list[str]]  # the messages by field; "" for those about no field
    code: str = ""  # a TaskConflict's code

    @classmethod
    def of(cls, exc: ValidationError | TaskConflict) -> Refusal:
        if isinstance(exc, TaskConflict):
            return cls(status=409, errors={"": [exc.message]}, code=exc.code)
        if hasattr(exc, "error_dict"):
            return cls(status=400, errors=exc.message_dict)
        return cls(status=400, errors={"": list(exc.messages)})

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def messages(self) -> list[str]:
        return [message for messages in self.errors.values() for message in messages]

    @property
    def text(self) -> str:
        """Every message, in one line."""
        return " ".join(self.messages)

    def lines(self, label: Callable[[str], str] = lambda field: "") -> list[str]:
        """One line per message, each after its field's `label` (none by default)."""
        return [
            label(field) + message
            for field, messages in self.errors.items()
            for message in messages
        ]

    def on_form(self, form: forms.Form) -> None:
        """Show the refusal on `form`: each message on the field it names where the form has
        that field, the rest above the form."""
        for field, messages in self.errors.items():
            form.add_error(field if field in form.fields else None, messages)

    def as_json(self) -> dict:
        """The body the API gives for the same refusal (see config.api)."""
        if self.conflict:
            return {"detail": self.text, "code": self.code}
        return {field or "non_field_errors": messages for field, messages in self.errors.items()}


View = Callable[..., HttpResponse]


def shows_refusals(show: View) -> Callable[[View], View]:
    """Decorate a view (or a helper that answers for one): a ValidationError or TaskConflict it
    raises is answered by `show(request, refusal, *args, **kwargs)`, with the view's arguments."""

    def decorate(view: View) -> View:
        @wraps(view)
        def answer(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            try:
                return view(request, *args, **kwargs)
            except REFUSALS as exc:
                return show(request, Refusal.of(exc), *args, **kwargs)

        return answer

    return decorate


def refusal_as_json(request: HttpRequest, refusal: Refusal, *args, **kwargs) -> JsonResponse:
    """For the pages' JSON calls (autosaves): the API's body and status."""
    return JsonResponse(refusal.as_json(), status=refusal.status)


def refusal_as_text(request: HttpRequest, refusal: Refusal, *args, **kwargs) -> HttpResponse:
    """For htmx calls whose answer is shown as it is."""
    return HttpResponse(refusal.text, status=refusal.status, content_type="text/plain")
