"""The demo project's images and tasks."""

from __future__ import annotations

import io

from PIL import Image, ImageOps

from plugin.localstack.demo import SAMPLES, demo_definition, demo_task

DEMO = SAMPLES / "demo"


def test_demo_images_are_small_files_and_one_is_a_portrait_phone_photo() -> None:
    definition = demo_definition()
    sides = {image["dataset"] for image in definition["images"]}
    assert sides == {"train", "test"}
    for image in definition["images"]:
        raw = (DEMO / image["file"]).read_bytes()
        assert len(raw) < 10_000
        shown = ImageOps.exif_transpose(Image.open(io.BytesIO(raw)))
        assert list(shown.size) == image["size"]
    portrait = Image.open(DEMO / "phone-portrait.jpg")
    assert portrait.size == (320, 240) and portrait.getexif().get(0x0112) == 6


def test_demo_tasks_carry_the_dataset_and_boxes_in_percent_of_the_displayed_image() -> None:
    image = {"file": "p.jpg", "dataset": "train", "label": "night", "size": [240, 320],
             "boxes": [["circle", 60, 40, 120, 120]]}  # fmt: skip
    task = demo_task(image, "s3://b/p.jpg")
    assert task["data"] == {"image": "s3://b/p.jpg", "dataset": "train"}
    choice, box = task["annotations"][0]["result"]
    assert choice["value"] == {"choices": ["night"]} and choice["from_name"] == "label"
    assert (box["original_width"], box["original_height"]) == (240, 320)
    assert box["value"]["x"] == 25.0 and box["value"]["y"] == 12.5 and box["value"]["width"] == 50.0
    assert "annotations" not in demo_task({**image, "label": None, "boxes": []}, "s3://b/p.jpg")
