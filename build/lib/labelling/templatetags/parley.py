"""Template helpers for Parley's pages."""

from django import template
from django.utils.safestring import mark_safe

from labelling.markup import render_markdown

register = template.Library()


@register.filter(name="markdown")
def markdown_filter(text: str) -> str:
    # Safe to mark: render_markdown runs the HTML through an allow-list sanitiser.
    return mark_safe(render_markdown(text))  # noqa: S308
