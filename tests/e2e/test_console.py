"""The dataset console in a real headless Chromium: sign in with the Label Studio account, open the page,
import from S3, see the counts change, follow the link into Label Studio's gallery."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import StackFactory
from tests.e2e.stack import CUSTOMLABELS, Stack, jpeg
from tests.realparts import LabelStudioServer

CHROMIUM = Path("/usr/bin/chromium")
# The README's screenshots are refreshed with CUSTOMLABELS_SCREENSHOTS=1; otherwise they go to a temp dir.
README_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (scripts/test.sh installs it)"
)


@pytest.fixture
def stack(make_stack: StackFactory) -> Stack:
    return make_stack()


def test_import_from_s3_in_the_console_and_open_the_gallery(
    stack: Stack, label_studio: LabelStudioServer, s3: Any, bucket: str, tmp_path: Path
) -> None:
    shots = README_SCREENSHOTS if os.environ.get("CUSTOMLABELS_SCREENSHOTS") == "1" else tmp_path
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    title = f"Console {uuid.uuid4().hex[:6]}"
    done = subprocess.run(
        [CUSTOMLABELS, "project", "create", "--title", title, "--labels", "cat,dog", "--json"],
        env=stack.env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    pid = json.loads(done.stdout)["project"]
    for name in ("cat/1.jpg", "cat/2.jpg", "dog/1.jpg", "dog/2.jpg"):
        s3.client.put_object(Bucket=bucket, Key=f"incoming/{name}", Body=jpeg(96, 80))

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"],
        )  # fmt: skip
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{stack.url}/console/")
            assert "/console/sign-in" in page.url  # nothing without signing in
            page.get_by_label("Email").fill(label_studio.username)
            page.get_by_label("Password").fill(label_studio.password)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_load_state()
            assert page.url.rstrip("/").endswith("/console")
            page.get_by_role("link", name=title).click()
            assert page.locator('[data-stat="train-TotalEntries"]').inner_text() == "0"
            form = page.locator("form", has=page.get_by_role("button", name="Import from S3"))
            form.get_by_label("S3 folder").fill(f"s3://{bucket}/incoming/")
            form.get_by_label("labels from folders").check()
            form.get_by_role("button", name="Import from S3").click()
            assert "queued" in page.get_by_role("status").inner_text()
            deadline = time.monotonic() + 60
            while page.locator('[data-stat="train-TotalEntries"]').inner_text() != "4":
                assert time.monotonic() < deadline, stack.logs()
                time.sleep(0.5)
                page.reload()
            assert page.locator('[data-stat="train-LabeledEntries"]').inner_text() == "4"
            labels = page.locator("#labels").inner_text()
            assert "cat\t2\t0" in labels and "dog\t2\t0" in labels
            shots.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shots / "console.png"), full_page=True)

            page.get_by_role("link", name="Open the training images in Label Studio").click()
            page.wait_for_load_state()
            if "/user/login" in page.url:
                page.fill("input[name=email]", label_studio.username)
                page.fill("input[name=password]", label_studio.password)
                page.click("button[type=submit]")
                page.wait_for_load_state()
            assert f"/projects/{pid}/data" in page.url
            page.wait_for_timeout(3000)
            page.screenshot(path=str(shots / "label-studio-gallery.png"))
        finally:
            browser.close()
