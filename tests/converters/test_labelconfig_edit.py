"""Editing labeling configs (add, rename, remove labels), finding renames, and renaming results."""

from __future__ import annotations

import re
from typing import Any

import pytest
from defusedxml import ElementTree as SafeET
from hypothesis import given, settings
from hypothesis import strategies as st

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


# ------------------------------------------------- rename and remove edit the text in place (property)

VALUES = ["cat", "dog", "a&b", 'say "hi"', "it's", "<x>", "Ünïcødé", "two  spaces", "tab\tin", "é>"]
Piece = tuple[str, str]  # ("text", literal) or ("value", the value as written between its quotes)


@st.composite
def written(draw: st.DrawFn, value: str, quote: str) -> str:
    """``value`` as a config may write it between ``quote`` characters (references chosen freely)."""
    out = []
    for char in value:
        if char == "&":
            out.append(draw(st.sampled_from(["&amp;", "&#38;", "&#x26;"])))
        elif char == "<":
            out.append(draw(st.sampled_from(["&lt;", "&#60;"])))
        elif char == quote:
            out.append(draw(st.sampled_from(["&quot;", "&#34;"] if quote == '"' else ["&apos;", "&#39;"])))
        elif char == "\t":
            out.append("&#9;")
        elif char in "\"'>":
            out.append(draw(st.sampled_from([char, f"&#{ord(char)};"])))
        else:
            out.append(char)
    return "".join(out)


@st.composite
def element(draw: st.DrawFn, tag: str, value: str) -> list[Piece]:
    """One ``<Choice>``/``<Label>`` with other attributes, odd spacing and either quote."""
    quote = draw(st.sampled_from(['"', "'"]))
    other = draw(st.sampled_from(["", ' hotkey="1"', " background='#f00'", '\n      alias="x y"']))
    first = draw(st.booleans())
    equals = draw(st.sampled_from(["=", " = "]))
    close = draw(st.sampled_from(["/>", " />", "\n    />", f"></{tag}>", f"><!-- c --></{tag} >"]))
    return [
        ("text", f"<{tag}{other if first else ''} value{equals}{quote}"),
        ("value", draw(written(value, quote))),
        ("text", f"{quote}{'' if first else other}{close}"),
    ]


@st.composite
def configs(draw: st.DrawFn) -> tuple[list[Any], list[str], list[str]]:
    """A config as pieces (a child ``<Choice>``/``<Label>`` is a list: what comes before it on its line,
    its pieces, what follows it to the end of its line) and the labels of its two controls."""
    choices = draw(st.lists(st.sampled_from(VALUES), min_size=1, max_size=4, unique=True))
    boxes = draw(st.lists(st.sampled_from(VALUES), min_size=0, max_size=3, unique=True))
    head = draw(st.sampled_from(["", '<?xml version="1.0" encoding="UTF-8"?>\n', "<?xml version='1.0'?>"]))
    comment = draw(st.sampled_from(["", '<!-- <Choice value="cat"/> stays a comment -->\n', "<!--x-->"]))
    pieces: list[Any] = [("text", f"{head}{comment}<View>\n  <Image name='image' value=\"$image\"/>\n")]
    for tag, parent, values in (("Choice", "Choices", choices), ("Label", "RectangleLabels", boxes)):
        if parent == "RectangleLabels" and not values and draw(st.booleans()):
            continue
        pieces.append(("text", f'  <{parent} name="{parent.lower()}" toName="image">  <!-- {parent} -->\n'))
        for value in values:
            own = draw(element(tag, value))
            if draw(st.integers(0, 3)):  # alone on its line
                pieces.append(
                    [("text", "    "), *own, ("text", draw(st.sampled_from(["\n", "  \n", "\t\n"])))]
                )
            else:
                pieces.append([("text", "<!-- before --> "), *own, ("text", " <!-- after -->\n")])
        pieces.append(("text", f"  </{parent}>\n"))
    pieces.append(("text", "</View>" + draw(st.sampled_from(["", "\n", "\n<!-- end -->\n"]))))
    return pieces, choices, boxes


def flat(pieces: list[Any]) -> list[Piece]:
    return [p for item in pieces for p in (item if isinstance(item, list) else [item])]


def text_of(pieces: list[Any]) -> str:
    return "".join(piece[1] for piece in flat(pieces))


def value_of(child: list[Piece]) -> str | None:
    """The value a parser reads from a child's element (its pieces but the first and the last)."""
    value: str | None = SafeET.fromstring(text_of(child[1:-1])).get("value")
    return value


@settings(max_examples=300, deadline=None)
@given(configs(), st.data())
def test_rename_changes_only_the_value_attributes_that_held_the_label(made: Any, data: st.DataObject) -> None:
    pieces, choice_values, box_values = made
    xml = text_of(pieces)
    declared = choice_values + box_values
    old = data.draw(st.sampled_from(declared))
    new = data.draw(st.sampled_from([v for v in [*VALUES, "new name", "q'\"&<>\n"] if v not in declared]))
    out = rename_label(xml, old, new)
    assert labels(out) == (
        [new if v == old else v for v in choice_values],
        [new if v == old else v for v in box_values],
    )
    # Byte for byte the same but for the value attributes that held ``old``, which now read ``new``.
    pattern = "".join(re.escape(p[1]) if p[0] == "text" else "(.*?)" for p in flat(pieces))
    match = re.fullmatch(pattern, out, re.DOTALL)
    assert match is not None
    children = [item for item in pieces if isinstance(item, list)]
    for child, now in zip(children, match.groups(), strict=True):
        if value_of(child) == old:
            assert value_of([child[0], child[1], ("value", now), *child[3:]]) == new
        else:
            assert now == child[2][1]


@settings(max_examples=300, deadline=None)
@given(configs(), st.data())
def test_remove_cuts_just_that_element_and_its_line_when_alone(made: Any, data: st.DataObject) -> None:
    pieces, choice_values, box_values = made
    xml = text_of(pieces)
    name = data.draw(st.sampled_from(choice_values + box_values))
    out = remove_label(xml, name)
    left = [v for v in choice_values if v != name]
    assert labels(out) == (left, [v for v in box_values if v != name])
    if not left:
        assert "<Choices" not in out  # an emptied <Choices> goes too
        return
    kept: list[Any] = []
    for item in pieces:
        if isinstance(item, list) and value_of(item) == name:
            if item[0][1].strip():  # not alone on its line: only the element goes
                kept.append([item[0], item[-1]])
            continue
        kept.append(item)
    assert out == text_of(kept)


def test_rename_and_remove_keep_comments_declaration_and_quoting() -> None:
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<!-- pets -->\n<View>\n  <Image name='image' value=\"$image\"/>\n"
        "  <Choices name='label' toName='image' choice=\"single\">\n"
        "    <!-- <Choice value='cat'/> is not an element -->\n"
        "    <Choice value='cat' hotkey=\"1\"/>\n"
        '    <Choice   value = "dog"/> <!-- the dog -->\n'
        "  </Choices>\n</View>\n"
    )
    renamed = rename_label(xml, "cat", 'it\'s "a" <cat> & co')
    assert renamed == xml.replace(
        "<Choice value='cat' hotkey", "<Choice value='it&apos;s \"a\" &lt;cat&gt; &amp; co' hotkey"
    )
    assert labels(renamed) == (['it\'s "a" <cat> & co', "dog"], [])
    assert remove_label(xml, "cat") == xml.replace("    <Choice value='cat' hotkey=\"1\"/>\n", "")
    assert remove_label(xml, "dog") == xml.replace('<Choice   value = "dog"/>', "")
    assert rename_label(xml, "owl", "x") is xml
