"""Export choices: defaults, parsing from JSON with errors keyed by field, and the checks against
a project (flags, model versions, annotators) that every door shares."""

import dataclasses
import datetime as dt

import pytest
from django.core.exceptions import ValidationError

from exports.choices import (
    KIND_ONLY,
    MAX_SEED,
    ExportChoices,
    ExportKind,
    PairsFrom,
    PairStrategy,
    Ties,
)
from exports.pseudonyms import is_pseudonym
from exports.services import export_choices_clean
from tests.exports.conftest import pseudonym_of
from tests.factories import (
    MembershipFactory,
    ModelVersionFactory,
    UserFactory,
    ranked_set,
    say,
    start,
)


def errors_of(exc: pytest.ExceptionInfo) -> dict[str, list[str]]:
    return exc.value.message_dict


# --- Defaults and JSON ------------------------------------------------------------------------


def test_defaults():
    choices = ExportChoices.from_json({})
    assert choices == ExportChoices()
    assert ExportChoices.from_json(None) == ExportChoices()
    assert choices.since is None and choices.until is None
    assert choices.languages == () and choices.model_versions == () and choices.sources == ()
    assert choices.min_agreement is None
    assert choices.pairs_from == PairsFrom.CONSENSUS
    assert choices.pair_strategy == PairStrategy.ALL
    assert choices.ties == Ties.SKIP
    assert (choices.validation, choices.test, choices.seed) == (0.05, 0.0, 0)
    assert not any(
        (
            choices.include_rewrites,
            choices.length_balanced,
            choices.include_incomplete,
            choices.include_cancelled,
            choices.allow_model_turns,
            choices.best_path_only,
            choices.gzip,
        )
    )
    assert choices.splits == ("train", "validation")
    assert choices.changed() == {}


def test_every_field_has_a_json_default():
    as_json = ExportChoices().to_json()
    assert set(as_json) == {f.name for f in dataclasses.fields(ExportChoices)}
    assert as_json["since"] is None and as_json["languages"] == []
    assert as_json["pairs_from"] == "consensus" and as_json["ties"] == "skip"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("since", 20240101),
        ("since", "yesterday"),
        ("until", "2024-13-01"),
        ("languages", ["en", "fr", 3]),
        ("languages", {"en": True}),
        ("model_versions", 7),
        ("exclude_annotators", [None]),
        ("min_agreement", "high"),
        ("min_agreement", True),
        ("pairs_from", "everyone"),
        ("pair_strategy", ["all"]),
        ("ties", "random"),
        ("include_rewrites", "yes"),
        ("length_balanced", 1),
        ("gzip", None),
        ("validation", "0.1"),
        ("test", False),
        ("seed", 1.5),
        ("seed", "7"),
        ("seed", True),
    ],
)
def test_a_wrong_type_is_an_error_keyed_by_its_field(field, value):
    with pytest.raises(ValidationError) as exc:
        ExportChoices.from_json({field: value, "seed": 3} if field != "seed" else {field: value})
    assert set(errors_of(exc)) == {field}


def test_non_finite_numbers_are_refused():
    for value in (float("nan"), float("inf")):
        with pytest.raises(ValidationError) as exc:
            ExportChoices.from_json({"validation": value})
        assert set(errors_of(exc)) == {"validation"}


def test_every_error_is_reported_at_once():
    with pytest.raises(ValidationError) as exc:
        ExportChoices.from_json({"seed": "x", "ties": "maybe", "gzip": "no"})
    assert set(errors_of(exc)) == {"seed", "ties", "gzip"}


def test_unknown_keys_are_errors_naming_the_key():
    with pytest.raises(ValidationError) as exc:
        ExportChoices.from_json({"validaton": 0.1, "seed": 1})
    errors = errors_of(exc)
    assert set(errors) == {"validaton"}
    assert "validation" in errors["validaton"][0]  # the known choices are listed


def test_a_non_object_is_refused():
    with pytest.raises(ValidationError) as exc:
        ExportChoices.from_json(["seed", 1])
    assert set(errors_of(exc)) == {"choices"}


def test_names_may_come_as_a_comma_separated_string_and_are_sorted_and_deduplicated():
    choices = ExportChoices.from_json({"languages": "fr, en,en", "model_versions": ["b", "a"]})
    assert choices.languages == ("en", "fr")
    assert choices.model_versions == ("a", "b")


def test_invalid_names_are_refused():
    with pytest.raises(ValidationError) as exc:
        ExportChoices.from_json({"exclude_flags": ["harmful", "not a name!"]})
    assert set(errors_of(exc)) == {"exclude_flags"}


@pytest.mark.parametrize(
    ("name", "value", "kind"),
    [
        ("allow_model_turns", True, "preferences"),
        ("best_path_only", True, "rankings"),
        ("sources", ["oasst"], "prompts"),
        ("exclude_sources", ["oasst"], "preferences"),
        ("model_versions", ["m"], "sft"),
        ("min_agreement", 0.5, "prompts"),
        ("pairs_from", "annotator", "rankings"),
        ("pair_strategy", "adjacent", "sft"),
        ("ties", "keep", "rankings"),
        ("include_rewrites", True, "sft"),
        ("length_balanced", True, "rankings"),
        ("include_incomplete", True, "sft"),
        ("include_cancelled", True, "prompts"),
        ("exclude_flags", ["harmful"], "prompts"),
    ],
)
def test_a_choice_for_other_kinds_is_refused(name, value, kind):
    with pytest.raises(ValidationError) as exc:
        ExportChoices.from_json({name: value}, kind=kind)
    errors = errors_of(exc)
    assert set(errors) == {name}
    assert kind in errors[name][0]
    # ... and accepted by a kind it belongs to.
    for allowed in KIND_ONLY[name]:
        ExportChoices.from_json({name: value}, kind=allowed)


def test_every_kind_only_choice_is_tested_above():
    # A new kind-only choice must be added to the parametrisation above.
    assert set(KIND_ONLY) == {
        "allow_model_turns", "best_path_only", "sources", "exclude_sources", "model_versions",
        "min_agreement", "pairs_from", "pair_strategy", "ties", "include_rewrites",
        "length_balanced", "include_incomplete", "include_cancelled", "exclude_flags",
    }  # fmt: skip


def test_an_unknown_kind_is_an_error_keyed_kind():
    with pytest.raises(ValidationError) as exc:
        ExportChoices.from_json({}, kind="dpo")
    assert set(errors_of(exc)) == {"kind"}


@pytest.mark.parametrize("value", [-0.01, 1.01, 2])
def test_min_agreement_is_a_share(value):
    with pytest.raises(ValidationError) as exc:
        ExportChoices.from_json({"min_agreement": value}, kind="preferences")
    assert set(errors_of(exc)) == {"min_agreement"}


@pytest.mark.parametrize("value", [0, 0.0, 0.5, 1])
def test_min_agreement_bounds_are_inclusive(value):
    assert ExportChoices.from_json({"min_agreement": value}).min_agreement == float(value)


@pytest.mark.parametrize(
    ("validation", "test", "field"),
    [(-0.1, 0, "validation"), (1.0, 0, "validation"), (0, 1.0, "test"), (0.5, 0.5, "test"),
     (0.6, 0.45, "test"), (0.1, -0.2, "test")],
)  # fmt: skip
def test_split_shares_must_leave_rows_for_train(validation, test, field):
    with pytest.raises(ValidationError) as exc:
        ExportChoices.from_json({"validation": validation, "test": test})
    assert set(errors_of(exc)) == {field}


def test_split_names_follow_the_shares():
    assert ExportChoices.from_json({"validation": 0}).splits == ("train",)
    assert ExportChoices.from_json({"validation": 0.1, "test": 0.1}).splits == (
        "train",
        "validation",
        "test",
    )
    assert ExportChoices.from_json({"validation": 0, "test": 0.2}).splits == ("train", "test")


@pytest.mark.parametrize("seed", [-1, MAX_SEED + 1, 2**64])
def test_seed_range(seed):
    with pytest.raises(ValidationError) as exc:
        ExportChoices.from_json({"seed": seed})
    assert set(errors_of(exc)) == {"seed"}


def test_seed_bounds_are_accepted():
    assert ExportChoices.from_json({"seed": 0}).seed == 0
    assert ExportChoices.from_json({"seed": MAX_SEED}).seed == MAX_SEED


def test_dates():
    choices = ExportChoices.from_json({"since": "2024-01-31", "until": "2024-02-01"})
    assert (choices.since, choices.until) == (dt.date(2024, 1, 31), dt.date(2024, 2, 1))
    assert ExportChoices.from_json({"since": "", "until": None}).since is None
    same_day = ExportChoices.from_json({"since": "2024-02-01", "until": "2024-02-01"})
    assert same_day.since == same_day.until
    with pytest.raises(ValidationError) as exc:
        ExportChoices.from_json({"since": "2024-02-02", "until": "2024-02-01"})
    assert set(errors_of(exc)) == {"until"}


def test_length_balance_needs_ties_skipped():
    with pytest.raises(ValidationError) as exc:
        ExportChoices.from_json({"length_balanced": True, "ties": "keep"}, kind="preferences")
    assert set(errors_of(exc)) == {"length_balanced"}


def test_a_source_cannot_be_kept_and_left_out():
    with pytest.raises(ValidationError) as exc:
        ExportChoices.from_json({"sources": ["a", "b"], "exclude_sources": ["b"]}, kind="sft")
    assert set(errors_of(exc)) == {"exclude_sources"}


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("preferences", {
            "since": "2024-01-01", "until": "2024-03-01", "languages": ["en", "de"],
            "model_versions": ["human", "tiny-v1"], "min_agreement": 0.6,
            "exclude_annotators": ["ann-0123456789abcdef"], "exclude_flags": ["pii"],
            "pairs_from": "annotator", "pair_strategy": "best_vs_rest", "ties": "skip",
            "include_rewrites": True, "length_balanced": True, "include_incomplete": True,
            "include_cancelled": True, "validation": 0.1, "test": 0.05, "seed": 42, "gzip": True,
        }),
        ("sft", {"allow_model_turns": True, "best_path_only": True, "sources": ["oasst"],
                 "exclude_sources": ["dolly"], "validation": 0}),
        ("rankings", {"min_agreement": 0, "ties": "skip"}),
        ("prompts", {}),
    ],
)  # fmt: skip
def test_to_json_round_trips(kind, data):
    choices = ExportChoices.from_json(data, kind=kind)
    as_json = choices.to_json()
    assert ExportChoices.from_json(as_json, kind=kind) == choices
    for key, value in data.items():
        expected = sorted(value) if isinstance(value, list) else value
        assert as_json[key] == expected, key
    assert choices.changed() == {
        k: v for k, v in as_json.items() if v != ExportChoices().to_json()[k]
    }


def test_every_kind_takes_the_defaults():
    for kind in ExportKind:
        assert ExportChoices.from_json(ExportChoices().to_json(), kind=kind) == ExportChoices()


# --- Checked against a project -------------------------------------------------------------


@pytest.mark.django_db
def test_an_unknown_kind_is_refused_by_the_service(project):
    for kind in ("dpo", None, 3):
        with pytest.raises(ValidationError) as exc:
            export_choices_clean(project=project, kind=kind, choices={})
        assert set(errors_of(exc)) == {"kind"}


@pytest.mark.django_db
def test_unknown_flag_is_an_error_naming_the_field(project):
    assert export_choices_clean(
        project=project, kind="preferences", choices={"exclude_flags": ["harmful", "pii"]}
    ).exclude_flags == ("harmful", "pii")
    # "quality" is a Likert label of the default schema, not a flag.
    for name in ("offensive", "quality"):
        with pytest.raises(ValidationError) as exc:
            export_choices_clean(
                project=project, kind="preferences", choices={"exclude_flags": [name]}
            )
        assert set(errors_of(exc)) == {"exclude_flags"}
        assert name in errors_of(exc)["exclude_flags"][0]


@pytest.mark.django_db
def test_unknown_model_version_is_an_error_naming_the_field(project):
    ModelVersionFactory(name="tiny-v1")
    cleaned = export_choices_clean(
        project=project, kind="rankings", choices={"model_versions": ["tiny-v1", "human"]}
    )
    assert cleaned.model_versions == ("human", "tiny-v1")
    with pytest.raises(ValidationError) as exc:
        export_choices_clean(
            project=project, kind="rankings", choices={"model_versions": ["tiny-v1", "tiny-v9"]}
        )
    assert set(errors_of(exc)) == {"model_versions"}
    assert "tiny-v9" in errors_of(exc)["model_versions"][0]


@pytest.mark.django_db
def test_annotators_by_username_or_pseudonym_are_stored_as_pseudonyms(project, trainer):
    other = MembershipFactory(project=project, user=UserFactory(username="tom")).user
    by_name = export_choices_clean(
        project=project, kind="sft", choices={"exclude_annotators": ["tina"]}
    )
    assert by_name.exclude_annotators == (pseudonym_of(project, trainer),)
    assert is_pseudonym(by_name.exclude_annotators[0])
    assert "tina" not in str(by_name.to_json())
    both = export_choices_clean(
        project=project,
        kind="sft",
        choices={"exclude_annotators": ["tom", pseudonym_of(project, trainer), "tina"]},
    )
    assert both.exclude_annotators == tuple(
        sorted({pseudonym_of(project, trainer), pseudonym_of(project, other)})
    )
    # Stored choices go through the service again unchanged (a snapshot rebuilt by a worker).
    again = export_choices_clean(project=project, kind="sft", choices=both.to_json())
    assert again == both


@pytest.mark.django_db
def test_a_former_member_who_wrote_messages_can_be_named_by_pseudonym(project):
    gone = UserFactory(username="gone")
    say(start(project, "Hi"), "Hello!", user=gone)  # wrote a reply, then left the project
    cleaned = export_choices_clean(
        project=project, kind="sft", choices={"exclude_annotators": [pseudonym_of(project, gone)]}
    )
    assert cleaned.exclude_annotators == (pseudonym_of(project, gone),)


@pytest.mark.django_db
def test_a_former_member_who_only_ranked_can_be_named_by_pseudonym(project):
    gone = UserFactory(username="gone")
    context = start(project, "Hi")
    replies = [say(context, text) for text in ("Hello!", "Hey.")]
    ranked_set(project, context, replies, [(gone, [[0], [1]])])
    cleaned = export_choices_clean(
        project=project,
        kind="preferences",
        choices={"exclude_annotators": [pseudonym_of(project, gone)]},
    )
    assert cleaned.exclude_annotators == (pseudonym_of(project, gone),)


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["olga", "nobody", "ann-0123456789abcdef"])
def test_unknown_annotator_is_an_error_naming_the_field(project, trainer, outsider, name):
    # olga exists but is not in the project; a pseudonym of nobody here is unknown too.
    with pytest.raises(ValidationError) as exc:
        export_choices_clean(
            project=project, kind="preferences", choices={"exclude_annotators": ["tina", name]}
        )
    assert set(errors_of(exc)) == {"exclude_annotators"}
    assert name in errors_of(exc)["exclude_annotators"][0]


@pytest.mark.django_db
def test_a_pseudonym_of_another_project_is_unknown(project, trainer):
    from tests.factories import ProjectFactory

    other = ProjectFactory()
    MembershipFactory(project=other, user=trainer)
    with pytest.raises(ValidationError) as exc:
        export_choices_clean(
            project=project,
            kind="sft",
            choices={"exclude_annotators": [pseudonym_of(other, trainer)]},
        )
    assert set(errors_of(exc)) == {"exclude_annotators"}


@pytest.mark.django_db
def test_service_errors_from_every_field_come_together(project):
    with pytest.raises(ValidationError) as exc:
        export_choices_clean(
            project=project,
            kind="preferences",
            choices={"exclude_flags": ["nope"], "model_versions": ["nope"],
                     "exclude_annotators": ["nope"]},
        )  # fmt: skip
    assert set(errors_of(exc)) == {"exclude_flags", "model_versions", "exclude_annotators"}
