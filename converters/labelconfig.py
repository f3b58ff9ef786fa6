"""Label Studio labeling configs: read which control is which, and write configs that cover a label set.

Only two kinds of control carry Rekognition labels: ``<Choices>`` (image-level labels) and
``<RectangleLabels>`` (boxes). Every other control is known to be something else, and its results are
ignored rather than mistaken for labels.

Renaming and removing a label edit the user's text in place (a small scanner finds each element's exact
span and attributes; defusedxml still parses and checks the text before and after), so comments, order
and formatting survive; adding labels writes the config anew.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from xml.etree import ElementTree
from xml.etree.ElementTree import Element

from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException

from converters.errors import LabelConfigError

CHOICES = "choices"
RECTANGLE_LABELS = "rectanglelabels"
DEFAULT_IMAGE_NAME = "image"
DEFAULT_IMAGE_KEY = "image"
DEFAULT_CHOICES_NAME = "label"
DEFAULT_BOXES_NAME = "bbox"
TEMPLATES = ("classification", "multilabel", "detection", "both")

# Label Studio tags that hold no label of ours but may appear beside them.
_OBJECT_TAGS = {"image", "text", "hypertext", "audio", "video", "header", "view", "style", "table"}


@dataclass(frozen=True, slots=True)
class Control:
    """A labeling control: its ``name`` (a result's ``from_name``), tag (lower case), labels, options."""

    name: str
    kind: str
    to_name: str
    labels: tuple[str, ...] = ()
    multiple: bool = False


@dataclass(slots=True)
class LabelConfig:
    """What a labeling config says: its controls by name and the task data key holding the image URL."""

    controls: dict[str, Control] = field(default_factory=dict)
    image_key: str = DEFAULT_IMAGE_KEY
    _allowed: dict[str, frozenset[str] | None] = field(default_factory=dict, repr=False, compare=False)

    def allowed_labels(self, from_name: str) -> frozenset[str] | None:
        """The labels the control named ``from_name`` declares; None when it declares none (or is unknown).

        A label that an annotation carries but the config no longer declares was removed or renamed in
        the config: readers drop it, as Rekognition drops a deleted label from every image.
        """
        if from_name not in self._allowed:
            control = self.controls.get(from_name)
            self._allowed[from_name] = frozenset(control.labels) if control and control.labels else None
        return self._allowed[from_name]

    def kind_of(self, from_name: str) -> str | None:
        """The tag (lower case) of the control named ``from_name``, or None when the config has none."""
        control = self.controls.get(from_name)
        return control.kind if control else None

    def labels_of(self, kind: str) -> list[str]:
        """Every label value of all controls of ``kind``, in config order, without repeats."""
        seen: dict[str, None] = {}
        for control in self.controls.values():
            if control.kind == kind:
                for value in control.labels:
                    seen.setdefault(value, None)
        return list(seen)

    def first(self, kind: str) -> Control | None:
        """The first control of ``kind``."""
        return next((c for c in self.controls.values() if c.kind == kind), None)


def parse_label_config(xml: str, *, source: str = "<label config>") -> LabelConfig:
    """Read a labeling config; raise :class:`LabelConfigError` naming ``source`` when it is not one."""
    try:
        root = SafeET.fromstring(xml)
    except (SafeET.ParseError, DefusedXmlException) as exc:
        raise LabelConfigError(f"not a labeling config: {exc}", source=source) from exc
    config = LabelConfig()
    image_found = False
    for element in root.iter():
        tag = element.tag.lower() if isinstance(element.tag, str) else ""
        name = element.get("name")
        if tag == "image" and not image_found:
            value = element.get("value", "")
            if value.startswith("$"):
                config.image_key = value[1:]
                image_found = True
            continue
        if not name or tag in _OBJECT_TAGS:
            continue
        config.controls[name] = Control(
            name=name,
            kind=tag,
            to_name=element.get("toName", ""),
            labels=tuple(_values(element)),
            multiple=element.get("choice", "single").lower() == "multiple",
        )
    return config


def _values(element: Element) -> list[str]:
    out = []
    for child in element.iter():
        if child is element or not isinstance(child.tag, str):
            continue
        if child.tag.lower() in ("choice", "label"):
            value = child.get("value")
            if value is not None:
                out.append(value)
    return out


def build_label_config(
    *,
    choices: Iterable[str] = (),
    boxes: Iterable[str] = (),
    multiple: bool = False,
    template: str | None = None,
    image_name: str = DEFAULT_IMAGE_NAME,
    image_key: str = DEFAULT_IMAGE_KEY,
    choices_name: str = DEFAULT_CHOICES_NAME,
    boxes_name: str = DEFAULT_BOXES_NAME,
) -> str:
    """A labeling config with a ``<Choices>`` for ``choices`` and a ``<RectangleLabels>`` for ``boxes``.

    ``template`` (one of :data:`TEMPLATES`) forces the controls present even with no labels yet:
    ``classification`` (single choice), ``multilabel`` (multiple choice), ``detection`` (boxes) or
    ``both``. Without it, a control is present when it has labels (both when neither has). A
    ``<Choices>`` with no labels is never written: Label Studio refuses it ("'Choice' is a required
    property"), while an empty ``<RectangleLabels>`` is accepted.
    """
    # Imported here: it imports urllib.request, which every command would pay for at start.
    from xml.sax.saxutils import quoteattr  # noqa: PLC0415

    choice_list = list(dict.fromkeys(choices))
    box_list = list(dict.fromkeys(boxes))
    if template is not None and template not in TEMPLATES:
        raise LabelConfigError(f"unknown template {template!r}; expected one of {', '.join(TEMPLATES)}")
    if template is None:
        want_choices = bool(choice_list) or not box_list
        want_boxes = bool(box_list) or not choice_list
    else:
        want_choices = template in ("classification", "multilabel", "both") or bool(choice_list)
        want_boxes = template in ("detection", "both") or bool(box_list)
        multiple = multiple or template == "multilabel"
    lines = [
        "<View>",
        f'  <Image name={quoteattr(image_name)} value={quoteattr("$" + image_key)} zoom="true"/>',
    ]
    if want_boxes:
        lines.append(f"  <RectangleLabels name={quoteattr(boxes_name)} toName={quoteattr(image_name)}>")
        lines += [f"    <Label value={quoteattr(v)}/>" for v in box_list]
        lines.append("  </RectangleLabels>")
    if want_choices and choice_list:
        mode = "multiple" if multiple else "single"
        lines.append(
            f"  <Choices name={quoteattr(choices_name)} toName={quoteattr(image_name)} "
            f'choice="{mode}" showInline="true">'
        )
        lines += [f"    <Choice value={quoteattr(v)}/>" for v in choice_list]
        lines.append("  </Choices>")
    lines.append("</View>")
    return "\n".join(lines) + "\n"


def label_lists(config: LabelConfig) -> dict[str, list[str]]:
    """Each label-carrying control's labels, in config order: what a later config is compared with."""
    return {
        name: list(control.labels)
        for name, control in config.controls.items()
        if control.kind in (CHOICES, RECTANGLE_LABELS)
    }


def label_renames(old: Mapping[str, Sequence[str]], new: LabelConfig) -> dict[str, dict[str, str]]:
    """Labels renamed between two versions of a config, per control: ``{control: {old: new}}``.

    Label Studio's settings edit a label in place, so a rename is a label that left a position of a
    control's list while a label that was not there before took it, the list keeping its length.
    Anything else (a label removed, added, or moved) is not a rename.
    """
    renames: dict[str, dict[str, str]] = {}
    for name, before in old.items():
        control = new.controls.get(name)
        if control is None or len(control.labels) != len(before):
            continue
        after = control.labels
        pairs = {
            a: b for a, b in zip(before, after, strict=True) if a != b and a not in after and b not in before
        }
        if pairs:
            renames[name] = pairs
    return renames


_CHILD = {CHOICES: "Choice", RECTANGLE_LABELS: "Label"}
_TAG = {CHOICES: "Choices", RECTANGLE_LABELS: "RectangleLabels"}


def _parse_xml(xml: str, source: str) -> Element:
    try:
        root: Element = SafeET.fromstring(xml)
    except (SafeET.ParseError, DefusedXmlException) as exc:
        raise LabelConfigError(f"not a labeling config: {exc}", source=source) from exc
    return root


def _controls_of(root: Element, kind: str) -> list[Element]:
    return [e for e in root.iter() if isinstance(e.tag, str) and e.tag.lower() == kind]


def _serialize(root: Element) -> str:
    ElementTree.indent(root, space="  ")
    return ElementTree.tostring(root, encoding="unicode") + "\n"


def add_labels(
    xml: str,
    *,
    choices: Iterable[str] = (),
    boxes: Iterable[str] = (),
    multiple: bool = False,
    source: str = "<label config>",
) -> str:
    """``xml`` with the labels it lacks added: image-level ones to its first ``<Choices>``, box labels to
    its first ``<RectangleLabels>`` (a control is added when the config has none). ``multiple`` (images
    with several image-level labels arrive) makes that ``<Choices>`` a multiple choice. Unchanged when
    nothing is missing; other elements and attributes are kept.
    """
    root = _parse_xml(xml, source)
    changed = False
    for kind, names in (
        (CHOICES, list(dict.fromkeys(choices))),
        (RECTANGLE_LABELS, list(dict.fromkeys(boxes))),
    ):
        if not names:
            continue
        controls = _controls_of(root, kind)
        if controls:
            control = controls[0]
        else:
            image = next(
                (e for e in root.iter() if isinstance(e.tag, str) and e.tag.lower() == "image"), None
            )
            to_name = image.get("name", DEFAULT_IMAGE_NAME) if image is not None else DEFAULT_IMAGE_NAME
            name = DEFAULT_CHOICES_NAME if kind == CHOICES else DEFAULT_BOXES_NAME
            control = ElementTree.SubElement(root, _TAG[kind], {"name": name, "toName": to_name})
            if kind == CHOICES:
                control.set("choice", "single")
                control.set("showInline", "true")
        if kind == CHOICES and multiple and control.get("choice", "single").lower() != "multiple":
            control.set("choice", "multiple")
            changed = True
        have = {child.get("value") for child in control.iter() if child is not control}
        for label in names:
            if label not in have:
                ElementTree.SubElement(control, _CHILD[kind], {"value": label})
                changed = True
    return _serialize(root) if changed else xml


def rename_label(xml: str, old: str, new: str, *, source: str = "<label config>") -> str:
    """``xml`` with the label ``old`` renamed ``new`` in every label-carrying control.

    The text is edited in place: only the ``value`` attributes that held ``old`` change (``new`` escaped
    for the attribute's own quote); comments, order, formatting and the XML declaration stay as written.
    """
    _parse_xml(xml, source)
    elements = _scan(xml)
    edits: list[tuple[int, int, str]] = []
    for index in sorted(_label_elements(elements, lambda e, control: True)):
        value = elements[index].attrs.get("value")
        if value is not None and value.text == old:
            edits.append((value.start, value.end, _escape_attribute(new, value.quote)))
    return _applied(xml, edits, source)


def remove_label(xml: str, name: str, *, source: str = "<label config>") -> str:
    """``xml`` without the label ``name``; a ``<Choices>`` left empty goes too (Label Studio refuses it).

    The text is edited in place: the element is cut out, with its line when it stood alone on it; the
    rest of the config stays as written.
    """
    _parse_xml(xml, source)
    elements = _scan(xml)
    removed = _label_elements(elements, lambda e, control: e.parent == control)
    removed = {i for i in removed if _value(elements[i]) == name}
    for index, element in enumerate(elements):
        if element.tag.lower() != CHOICES or element.parent is None:
            continue
        kept = [
            i
            for i in range(len(elements))
            if i != index and i not in removed and _within(elements, i, index) and _value(elements[i])
        ]
        if not kept:
            removed.add(index)
    # An element inside one that goes goes with it.
    outer = [i for i in removed if not any(_within(elements, i, j) for j in removed if j != i)]
    edits = [(*_cut(xml, elements[i].start, elements[i].end), "") for i in outer]
    return _applied(xml, edits, source)


# ------------------------------------------------------------------- the config's text, with positions


@dataclass(frozen=True, slots=True)
class _Attribute:
    """An attribute's value in the source: ``start``/``end`` bound the text between the quotes."""

    start: int
    end: int
    quote: str
    text: str  # the value as a parser reads it (references resolved, whitespace normalized)


@dataclass(slots=True)
class _Element:
    """An element in the source: ``start`` is its ``<``, ``end`` just after its end tag (or ``/>``)."""

    tag: str
    start: int
    end: int
    parent: int | None
    attrs: dict[str, _Attribute]


_START_TAG = re.compile(r"""<([^\s/>!?]+)((?:\s+[^\s/>=]+\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*(/?)>""")
_ATTRIBUTE = re.compile(r"""([^\s/>=]+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_REFERENCE = re.compile(r"&(#x[0-9a-fA-F]+|#[0-9]+|lt|gt|amp|quot|apos);")
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}
# Characters XML 1.0 cannot hold, escaped or not.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
# Markup that holds no element, and where it ends.
_SKIPPED = (("<!--", "-->"), ("<![CDATA[", "]]>"), ("<?", "?>"))


def _scan(xml: str) -> list[_Element]:
    """Every element of a well-formed config (checked by the parser first), in document order."""
    elements: list[_Element] = []
    stack: list[int] = []
    pos = 0
    while (at := xml.find("<", pos)) != -1:
        skipped = next((end for begin, end in _SKIPPED if xml.startswith(begin, at)), None)
        if skipped is not None:
            pos = xml.index(skipped, at) + len(skipped)
        elif xml.startswith("<!", at):  # a DOCTYPE, perhaps with an internal subset in brackets
            close = xml.index(">", at)
            bracket = xml.find("[", at, close)
            pos = (xml.index(">", xml.index("]", bracket)) if bracket != -1 else close) + 1
        elif xml.startswith("</", at):
            pos = xml.index(">", at) + 1
            elements[stack.pop()].end = pos
        else:
            match = _START_TAG.match(xml, at)
            if match is None:
                raise LabelConfigError(f"cannot read the tag at character {at}", source="<label config>")
            attrs: dict[str, _Attribute] = {}
            base = match.start(2)
            for attr in _ATTRIBUTE.finditer(match.group(2)):
                group = 2 if attr.group(2) is not None else 3
                attrs[attr.group(1)] = _Attribute(
                    base + attr.start(group),
                    base + attr.end(group),
                    '"' if group == 2 else "'",
                    _attribute_text(attr.group(group)),
                )
            elements.append(_Element(match.group(1), at, match.end(), stack[-1] if stack else None, attrs))
            if not match.group(3):
                stack.append(len(elements) - 1)
            pos = match.end()
    return elements


def _attribute_text(raw: str) -> str:
    """An attribute value as the XML parser reads it: literal whitespace made spaces, references resolved."""
    spaced = raw.replace("\r\n", " ").translate({ord("\r"): " ", ord("\n"): " ", ord("\t"): " "})

    def resolve(ref: re.Match[str]) -> str:
        name = ref.group(1)
        if name.startswith("#x"):
            return chr(int(name[2:], 16))
        if name.startswith("#"):
            return chr(int(name[1:]))
        return _NAMED[name]

    return _REFERENCE.sub(resolve, spaced)


def _escape_attribute(value: str, quote: str) -> str:
    """``value`` written between ``quote`` characters so that a parser reads ``value`` back."""
    if _NOT_XML.search(value):
        raise LabelConfigError(f"{value!r} holds a character XML cannot hold", source="<label config>")
    out = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    out = out.replace(quote, "&quot;" if quote == '"' else "&apos;")
    return out.replace("\t", "&#9;").replace("\n", "&#10;").replace("\r", "&#13;")


def _value(element: _Element) -> str | None:
    value = element.attrs.get("value")
    return value.text if value is not None else None


def _within(elements: list[_Element], index: int, ancestor: int) -> bool:
    parent = elements[index].parent
    while parent is not None:
        if parent == ancestor:
            return True
        parent = elements[parent].parent
    return False


def _label_elements(elements: list[_Element], take: Callable[[_Element, int], bool]) -> set[int]:
    """The elements under a ``<Choices>`` or ``<RectangleLabels>`` that ``take(element, control)`` takes."""
    controls = [i for i, e in enumerate(elements) if e.tag.lower() in (CHOICES, RECTANGLE_LABELS)]
    return {
        i
        for control in controls
        for i, element in enumerate(elements)
        if _within(elements, i, control) and take(element, control)
    }


def _cut(xml: str, start: int, end: int) -> tuple[int, int]:
    """The span to delete for the element at ``start:end``: its whole line when nothing else is on it."""
    line_start = xml.rfind("\n", 0, start) + 1
    line_end = xml.find("\n", end)
    line_end = len(xml) if line_end == -1 else line_end + 1
    if not xml[line_start:start].strip() and not xml[end:line_end].strip():
        return line_start, line_end
    return start, end


def _applied(xml: str, edits: list[tuple[int, int, str]], source: str) -> str:
    """``xml`` with each ``(start, end, text)`` edit made (the spans do not overlap), checked to parse."""
    if not edits:
        return xml
    out: list[str] = []
    pos = 0
    for start, end, text in sorted(edits):
        out += [xml[pos:start], text]
        pos = end
    out.append(xml[pos:])
    edited = "".join(out)
    _parse_xml(edited, source)
    return edited
