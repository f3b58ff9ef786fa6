"""Editing labeling configs (add, rename, remove labels), finding renames, and renaming results."""

from __future__ import annotations

import pytest

from converters.errors import LabelConfigError
from converters.labelconfig import (
    CHOICES,
    RECTANGLE_LABELS,
    add_labels,
    build_label_config,
    label_lists,
    label_renames,
    parse_label_config,
    remove_label,
    rename_label,
)
from converters.labelstudio import rename_labels
from tests.builders import choices, rect

BOTH = build_label_config(choices=["cat", "dog"], boxes=["cat", "bird"])


def labels(xml: str) -> tuple[list[str], list[str]]:
    config = parse_label_config(xml)
    return config.labels_of(CHOICES), config.labels_of(RECTANGLE_LABELS)


def test_add_labels_appends_only_what_is_missing_in_order() -> None:
    xml = add_labels(BOTH, choices=["dog", "owl", "owl", "ant"], boxes=["cat", "fish"])
    assert labels(xml) == (["cat", "dog", "owl", "ant"], ["cat", "bird", "fish"])
    assert parse_label_config(xml).image_key == "image"


def test_add_labels_changes_nothing_when_nothing_is_missing() -> None:
    assert add_labels(BOTH, choices=["cat"], boxes=["bird"]) is BOTH
    assert add_labels(BOTH) is BOTH


def test_add_labels_adds_a_missing_control_bound_to_the_image() -> None:
    boxes_only = build_label_config(boxes=["cat"])
    xml = add_labels(boxes_only, choices=["indoor"])
    config = parse_label_config(xml)
    control = config.first(CHOICES)
    assert control is not None and control.labels == ("indoor",) and control.to_name == "image"
    assert control.name == "label" and not control.multiple
    choices_only = build_label_config(choices=["a", "b"])
    box = parse_label_config(add_labels(choices_only, boxes=["car"])).first(RECTANGLE_LABELS)
    assert box is not None and box.labels == ("car",) and box.name == "bbox"


def test_add_labels_multiple_makes_the_choices_a_multiple_choice() -> None:
    xml = add_labels(BOTH, choices=["cat"], multiple=True)  # nothing new, but the mode changes
    control = parse_label_config(xml).first(CHOICES)
    assert control is not None and control.multiple
    assert add_labels(xml, choices=["cat"], multiple=True) is xml  # already multiple
    fresh = parse_label_config(add_labels(build_label_config(boxes=["x"]), choices=["a", "b"], multiple=True))
    assert fresh.first(CHOICES) is not None and fresh.first(CHOICES).multiple  # type: ignore[union-attr]


def test_add_labels_keeps_other_elements_and_attributes() -> None:
    xml = (
        '<View><Header value="Pick"/><Image name="img" value="$url" zoom="true"/>'
        '<Choices name="c" toName="img" choice="single" required="true"><Choice value="a" hotkey="1"/></Choices>'
        '<TextArea name="notes" toName="img"/></View>'
    )
    out = add_labels(xml, choices=["b"], boxes=["car"])
    config = parse_label_config(out)
    assert config.image_key == "url"
    assert config.controls["c"].labels == ("a", "b")
    assert config.kind_of("notes") == "textarea"
    box = config.first(RECTANGLE_LABELS)
    assert box is not None and box.to_name == "img"
    assert 'hotkey="1"' in out and 'required="true"' in out and '<Header value="Pick"' in out


def test_rename_label_renames_in_every_control_in_place() -> None:
    xml = rename_label(BOTH, "cat", "kitty")
    assert labels(xml) == (["kitty", "dog"], ["kitty", "bird"])
    assert labels(rename_label(BOTH, "none", "x")) == labels(BOTH)


def test_remove_label_drops_it_everywhere_and_an_emptied_choices() -> None:
    xml = remove_label(BOTH, "cat")
    assert labels(xml) == (["dog"], ["bird"])
    xml = remove_label(xml, "dog")
    assert parse_label_config(xml).first(CHOICES) is None  # Label Studio refuses an empty <Choices>
    xml = remove_label(xml, "bird")
    box = parse_label_config(xml).first(RECTANGLE_LABELS)
    assert box is not None and box.labels == ()  # an empty <RectangleLabels> is accepted


def test_edits_refuse_what_is_not_a_config() -> None:
    for edit in (
        lambda: add_labels("<View", choices=["a"]),
        lambda: rename_label("not xml", "a", "b"),
        lambda: remove_label("", "a"),
    ):
        with pytest.raises(LabelConfigError):
            edit()


def test_label_renames_finds_renames_in_place_only() -> None:
    before = label_lists(parse_label_config(BOTH))
    assert label_renames(before, parse_label_config(rename_label(BOTH, "cat", "kitty"))) == {
        "label": {"cat": "kitty"},
        "bbox": {"cat": "kitty"},
    }
    # Added, removed or reordered labels are no renames.
    assert label_renames(before, parse_label_config(add_labels(BOTH, choices=["owl"]))) == {}
    assert label_renames(before, parse_label_config(remove_label(BOTH, "dog"))) == {}
    swapped = build_label_config(choices=["dog", "cat"], boxes=["cat", "bird"])
    assert label_renames(before, parse_label_config(swapped)) == {}
    # A control that went away has nothing to rename.
    assert label_renames({"gone": ["a"]}, parse_label_config(BOTH)) == {}


def test_rename_labels_renames_results_of_the_named_controls() -> None:
    results = [choices("cat", "dog"), rect("cat", 1, 2, 3, 4), rect("bird", 1, 1, 1, 1, rid="r2")]
    out = rename_labels(results, {"label": {"cat": "kitty"}, "bbox": {"bird": "owl"}})
    assert out is not None
    assert out[0]["value"]["choices"] == ["kitty", "dog"]
    assert out[1]["value"]["rectanglelabels"] == ["cat"]  # another control's rename does not apply
    assert out[2]["value"]["rectanglelabels"] == ["owl"]
    assert results[0]["value"]["choices"] == ["cat", "dog"]  # the input is not changed


def test_rename_labels_says_none_when_nothing_changes() -> None:
    assert rename_labels([choices("dog")], {"label": {"cat": "kitty"}}) is None
    assert rename_labels([choices("cat")], {}) is None
    assert rename_labels(None, {"label": {"cat": "kitty"}}) is None
    assert rename_labels(["not a result", {"from_name": "label"}], {"label": {"cat": "x"}}) is None
