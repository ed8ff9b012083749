"""The leads' import page: upload prompts, trees or conversations, see what came in or not."""

from dataclasses import asdict

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.defaultfilters import filesizeformat
from django.views.decorators.http import require_http_methods

from annotations.access import project_for_member
from labelling.importers import (
    DATASET_NAME_RULE,
    dataset_name_problem,
    import_max_bytes,
    prompt_file_import,
)

PAGE = "labelling/import.html"
# A refused file can have a problem on every line; the page lists this many, the command all.
SHOWN_PROBLEMS = 1000


class ImportForm(forms.Form):
    file = forms.FileField(label="File")
    format = forms.ChoiceField(
        label="Format",
        required=False,
        choices=[
            ("", "Detect from the file"),
            ("jsonl", "JSONL prompts"),
            ("csv", "CSV with a prompt column"),
            ("oasst", "Open Assistant message trees"),
            ("messages", "Conversations (messages JSONL)"),
            ("instruction", "Prompt and completion pairs"),
        ],
    )
    dataset = forms.CharField(
        label="Dataset name",
        required=False,
        strip=True,
        help_text=(
            "Where these come from, kept with every imported conversation so exports can "
            f"include or leave it out: {DATASET_NAME_RULE}. Default: the file's name."
        ),
    )

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        limit = filesizeformat(import_max_bytes())
        self.fields["file"].help_text = f"UTF-8, at most {limit}."
        self.fields["file"].widget.attrs["accept"] = ".jsonl,.json,.ndjson,.csv,.tsv,.txt"

    def clean_dataset(self) -> str | None:
        name = self.cleaned_data["dataset"]
        if not name:
            return None
        if dataset_name_problem(name):
            raise forms.ValidationError(f"Expected {DATASET_NAME_RULE}.", code="invalid")
        return name


def _session_key(project) -> str:
    return f"prompt-import:{project.pk}"


@login_required
@require_http_methods(["GET", "POST"])
def prompt_import(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for_member(request.user, slug, capability="manage")
    form = ImportForm(request.POST, request.FILES) if request.method == "POST" else ImportForm()
    report = None
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        report = prompt_file_import(
            project=project,
            source=upload,
            filename=upload.name,
            fmt=form.cleaned_data["format"] or None,
            dataset=form.cleaned_data["dataset"],
            user=request.user,
        )
        if report.ok:
            # Redirect after the post, so a reload does not send the file again.
            summary = asdict(report) | {"text": report.summary(), "unit": report.unit}
            summary["file"] = upload.name
            request.session[_session_key(project)] = summary
            return redirect("prompt-import", slug=project.slug)
    context = {
        "project": project,
        "form": form,
        "summary": request.session.pop(_session_key(project), None)
        if request.method == "GET"
        else None,
        "report": report,
        "problems": report.errors[:SHOWN_PROBLEMS] if report else [],
        "hidden_problems": max(0, len(report.errors) - SHOWN_PROBLEMS) if report else 0,
    }
    status = 400 if request.method == "POST" else 200
    return render(request, PAGE, context, status=status)
