"""The part of the guidelines for a kind of task, computed by hand on small texts."""

from labelling.demo import DEMO_GUIDELINES
from labelling.guidelines import guidelines_for_kind, heading_kinds

TEXT = """\
# Rules

Be kind.

## Writing demonstrations
Write both sides.

### Drafts
Edit them.

## When ranking replies
Order best first.

### Ties
Rarely.

```
# not a heading about ranking
```

## Style
Short paragraphs.
"""


def test_heading_kinds_are_read_from_whole_words():
    assert heading_kinds("When ranking replies") == {"ranking"}
    assert heading_kinds("Writing demonstrations") == {"demonstration"}
    assert heading_kinds("Style") == set()
    assert heading_kinds("Franking machines") == set()  # not the word "rank"


def test_demonstration_part_leaves_out_ranking_and_its_subsections():
    part = guidelines_for_kind(TEXT, "demonstration")
    assert part.trimmed
    assert "Order best first" not in part.text and "Rarely" not in part.text
    assert "not a heading" not in part.text  # a fence inside the ranking section
    assert (
        "Be kind." in part.text and "Edit them." in part.text and "Short paragraphs." in part.text
    )


def test_ranking_part_leaves_out_writing():
    part = guidelines_for_kind(TEXT, "ranking")
    assert part.trimmed
    assert "Write both sides" not in part.text and "Edit them" not in part.text
    assert "Order best first." in part.text and "Rarely." in part.text
    assert "# not a heading about ranking" in part.text  # inside a code fence: kept as code


def test_a_ranking_subsection_inside_a_writing_title_is_kept_for_ranking():
    part = guidelines_for_kind(DEMO_GUIDELINES, "ranking")
    assert "Order them from best to worst." in part.text
    assert "Helpful: answer" not in part.text
    demo = guidelines_for_kind(DEMO_GUIDELINES, "demonstration")
    assert "Order them from best to worst." not in demo.text and "Helpful: answer" in demo.text


def test_guidelines_without_kind_sections_are_whole():
    part = guidelines_for_kind("# Be kind\n\nAlways.", "demonstration")
    assert part == type(part)(text="# Be kind\n\nAlways.", trimmed=False)
    assert guidelines_for_kind("", "ranking").text == ""
