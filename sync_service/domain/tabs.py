"""The Data Manager tabs we make in a project: the training and test datasets (a filter on the task data
field ``dataset``) and the entries ``customlabels dataset check`` found leaking between them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sync_service.edges.labelstudio import LabelStudio

TABS = (("Training dataset", "train"), ("Test dataset", "test"))
"""The dataset tabs: title and the ``data.dataset`` value they show."""


def tab_filter(dataset: str) -> dict[str, Any]:
    """The Data Manager filter of a dataset tab: ``data.dataset`` equals ``dataset``."""
    return {
        "conjunction": "and",
        "items": [
            {"filter": "filter:tasks:data.dataset", "operator": "equal", "type": "String", "value": dataset}
        ],
    }


LEAK_TAB = "Leaking entries"
"""The Data Manager tab of the images ``customlabels dataset check`` found in both train and test."""


def leak_filter(task_ids: Sequence[int]) -> dict[str, Any]:
    """The Data Manager filter of the leaking-entries tab: any of ``task_ids`` (none: an id no task has)."""
    return {
        "conjunction": "or",
        "items": [
            {"filter": "filter:tasks:id", "operator": "equal", "type": "Number", "value": task_id}
            for task_id in (task_ids or [0])
        ],
    }


def show_leaks(ls: LabelStudio, project_id: int, task_ids: Sequence[int]) -> int:
    """Make (or refresh) the project's leaking-entries tab so that it lists ``task_ids``; its view id."""
    data = {"title": LEAK_TAB, "filters": leak_filter(sorted(task_ids))}
    have = tab_ids(ls.views(project_id))
    if LEAK_TAB in have:
        return int(ls.update_view(have[LEAK_TAB], project_id, data)["id"])
    return int(ls.create_view(project_id, data)["id"])


def tab_ids(views: Sequence[dict[str, Any]]) -> dict[str, int]:
    """The ids of Data Manager tabs by their titles (tabs without a title are left out)."""
    have = {}
    for view in views:
        data = view.get("data")
        title = data.get("title") if isinstance(data, dict) else None
        if title:
            have[str(title)] = int(view["id"])
    return have
