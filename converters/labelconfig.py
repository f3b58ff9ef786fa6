"""Label Studio labeling configs: read which control is which, and write configs that cover a label set.

Only two kinds of control carry Rekognition labels: ``<Choices>`` (image-level labels) and
``<RectangleLabels>`` (boxes). Every other control is known to be something else, and its results are
ignored rather than mistaken for labels.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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
    """``xml`` with the label ``old`` renamed ``new`` in place, in every label-carrying control."""
    root = _parse_xml(xml, source)
    for kind in (CHOICES, RECTANGLE_LABELS):
        for control in _controls_of(root, kind):
            for child in control.iter():
                if child is not control and child.get("value") == old:
                    child.set("value", new)
    return _serialize(root)


def remove_label(xml: str, name: str, *, source: str = "<label config>") -> str:
    """``xml`` without the label ``name``; a ``<Choices>`` left empty goes too (Label Studio refuses it)."""
    root = _parse_xml(xml, source)
    for kind in (CHOICES, RECTANGLE_LABELS):
        for control in _controls_of(root, kind):
            for child in list(control):
                if child.get("value") == name:
                    control.remove(child)
            if kind == CHOICES and not any(c.get("value") for c in control.iter() if c is not control):
                for parent in root.iter():
                    if control in list(parent):
                        parent.remove(control)
                        break
    return _serialize(root)
