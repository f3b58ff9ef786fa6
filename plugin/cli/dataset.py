"""``customlabels dataset ...`` and ``customlabels snapshot ...``: Rekognition's dataset workflow.

PROJECT is a Label Studio project id, the project's S3 folder name, its title, or its Rekognition
name. Settings come from the environment (``sync_service.config``). Every command prints a readable
summary, or JSON with ``--json`` (standard output holds nothing else). The long ones (``create``,
``distribute``, ``update``, ``delete``, ``snapshot PROJECT``) show their progress on standard error: a
bar on a terminal, plain lines elsewhere and with ``--json``, nothing with ``--quiet``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from converters.labelconfig import CHOICES, RECTANGLE_LABELS
from plugin.cli.common import print_result
from plugin.progress import ItemProgress
from sync_service.config import load_settings

if TYPE_CHECKING:
    from sync_service.domain.datasets import Datasets, ImportResult
    from sync_service.domain.projects import ProjectInfo
    from sync_service.domain.status import DatasetStatus

# The dataset module pulls in the whole service (boto3, rq, httpx): imported when a command runs, so
# that ``customlabels convert ...`` starts fast.
DATASETS = ("train", "test")

SOURCES = ("from_s3", "from_dir", "from_manifest", "from_dataset", "from_coco", "from_csv")


def open_datasets(progress: ItemProgress | None = None) -> Datasets:
    """The dataset operations over connections made from the settings (the environment)."""
    from sync_service.domain.context import make_context  # noqa: PLC0415 - the service costs start-up time
    from sync_service.domain.datasets import (  # noqa: PLC0415 - the service costs start-up time
        ON_THIS_MACHINE,
        Datasets,
    )

    # The user's own machine and credentials: local files and any bucket they reach are sources here.
    return Datasets(make_context(load_settings()), progress=progress, sources=ON_THIS_MACHINE)


def progress_for(args: argparse.Namespace) -> ItemProgress:
    """The progress display of a command: on standard error, a bar on a terminal; plain lines with
    ``--json`` (whatever stderr is) or elsewhere; nothing with ``--quiet``."""
    return ItemProgress(tty=False if args.json else None, enabled=not getattr(args, "quiet", False))


def _error(message: str) -> Exception:
    from sync_service.domain.datasets import invalid  # noqa: PLC0415 - the service costs start-up time

    return invalid(message)


def _status(ops: Datasets) -> DatasetStatus:
    from sync_service.domain.status import DatasetStatus  # noqa: PLC0415 - the service costs start-up time

    return DatasetStatus(ops)


def _created_message(args: argparse.Namespace) -> str | None:
    """Rekognition's StatusMessage for a dataset created from the source given (None: its default)."""
    from sync_service.domain import status  # noqa: PLC0415 - the service costs start-up time

    if args.from_manifest:
        return status.CREATED_FROM_MANIFEST
    if args.from_dataset:
        return status.CREATED_FROM_DATASET
    return None


def cmd_create(args: argparse.Namespace) -> int:
    """Create a dataset (if the project lacks it) and fill it from one source."""
    given = [name for name in SOURCES if getattr(args, name)]
    if len(given) > 1:
        raise _error(
            "give one source: " + ", ".join(f"--{g.replace('_', '-')}" for g in given),
        )
    if args.labels_from_folders and not (args.from_s3 or args.from_dir):
        raise _error("--labels-from-folders goes with --from-s3 or --from-dir")
    if args.from_dataset and args.from_dataset.rpartition("/")[2] not in DATASETS:
        raise _error("--from-dataset takes PROJECT/train or PROJECT/test")
    if args.from_coco and not args.s3_prefix:
        raise _error("--from-coco needs --s3-prefix s3://bucket/prefix/")
    with progress_for(args) as progress:
        ops = open_datasets(progress)
        info = ops.project(args.project)
        created = not ops.has_dataset(info, args.dataset)
        if created:
            info = ops.create_dataset(info, args.dataset, status="CREATE_IN_PROGRESS")
        message = _created_message(args) if created else None
        with _status(ops).running(info, [args.dataset], created=created, message=message):
            result = _import_source(ops, info, args)
    doc = {"project": info.label_studio_project_id, "dataset": args.dataset, **result.as_json()}
    text = f"{info.title} / {args.dataset}: {result.added} added, {result.updated} updated, {result.skipped} already there"
    if result.rejected:
        text += f", {len(result.rejected)} lines rejected:"
        for item in result.rejected[:20]:
            text += f"\n  line {item['line']}: {item['code']}"
    return print_result(args, doc, text)


def _import_source(ops: Datasets, info: ProjectInfo, args: argparse.Namespace) -> ImportResult:
    """Fill the dataset from the one source given (nothing: an empty dataset)."""
    if args.from_s3:
        result = ops.from_s3(info, args.dataset, args.from_s3, labels_from_folders=args.labels_from_folders)
    elif args.from_dir:
        result = ops.from_dir(info, args.dataset, args.from_dir, labels_from_folders=args.labels_from_folders)
    elif args.from_manifest:
        result = ops.from_manifest(info, args.dataset, args.from_manifest)
    elif args.from_dataset:
        project, _, side = args.from_dataset.rpartition("/")
        result = ops.from_dataset(info, args.dataset, ops.project(project), side)
    elif args.from_coco:
        result = ops.from_coco(info, args.dataset, args.from_coco, s3_prefix=args.s3_prefix)
    elif args.from_csv:
        result = ops.from_csv(info, args.dataset, args.from_csv, s3_prefix=args.s3_prefix)
    else:
        from sync_service.domain.datasets import ImportResult as Empty  # noqa: PLC0415 - the service costs start-up time

        result = Empty()  # an empty dataset
    return result


def cmd_distribute(args: argparse.Namespace) -> int:
    """Move 20% of the training entries into the empty test dataset."""
    with progress_for(args) as progress:
        ops = open_datasets(progress)
        info = ops.project(args.project)
        with _status(ops).running(info, [d for d in DATASETS if ops.has_dataset(info, d)]):
            counts = ops.distribute(info, fraction=args.test_fraction)
    return print_result(
        args, counts, f"{info.title}: train {counts['train']} entries, test {counts['test']} entries"
    )


def cmd_check(args: argparse.Namespace) -> int:
    """Leakage (duplicate images across train and test), duplicates within a dataset, images labelled
    two ways, and label coverage against Rekognition's rules; ``--fix`` moves the leaking images."""
    with progress_for(args) as progress:
        ops = open_datasets(progress)
        info = ops.project(args.project)
        report = ops.check(info, fix=args.fix, region=args.region or ops.ctx.settings.s3_region)
    code = 1 if report["crossing"] and not report["fix"]["applied"] else 0
    print_result(args, report, check_text(report))
    return code


def check_text(report: dict[str, Any]) -> str:
    """The check's report for a person: what leaks, what repeats, what disagrees, what is short."""
    out = [f"{report['images']} images, {report['groups']} groups of duplicates"]
    crossing = report["crossing"]
    out.append(f"{len(crossing)} group(s) cross train and test" + (":" if crossing else ""))
    for group in crossing:
        out.append(f"  group {group['group']} ({group['kind']}): train {', '.join(group['train'])}")
        out.append(f"  {' ' * len(str(group['group']))}        test  {', '.join(group['test'])}")
    within = report["within"]
    out.append(f"{len(within)} group(s) inside one dataset" + (":" if within else ""))
    out.extend(
        f"  group {g['group']} ({g['kind']}, {g['dataset']}): {', '.join(g['images'])}" for g in within
    )
    for group in report["label_disagreements"]:
        labelled = "; ".join(
            f"{i['source-ref']} [{', '.join(i['labels']) or 'no label'}]" for i in group["images"]
        )
        out.append(f"labelled two ways, group {group['group']}: {labelled}")
    cover = report["coverage"]
    if cover["missing_from_test"]:
        out.append(f"labels missing from test: {', '.join(cover['missing_from_test'])}")
    out.extend(
        f"label {b['label']!r}: {b['images']} image(s), "
        + (f"at most {b['maximum']}" if "maximum" in b else f"at least {b['minimum']}")
        + f" ({b['rule']})"
        for b in cover["below_minimum"]
    )
    out.extend(f"the {side} dataset is over the region's limit" for side in cover["over_limit"])
    moves = report["fix"]["moves"]
    if moves:
        verb = "moved" if report["fix"]["applied"] else "--fix would move"
        out.append(f"{verb} {len(moves)} image(s):")
        out.extend(f"  {m['source-ref']}: {m['from']} -> {m['to']}" for m in moves)
    return "\n".join(out)


def cmd_describe(args: argparse.Namespace) -> int:
    """DescribeDataset's numbers."""
    ops = open_datasets()
    info = ops.project(args.project)
    stats = ops.describe(info, args.dataset)
    _say_freshness(ops, info)
    record = (info.datasets or {}).get(args.dataset, {})
    doc = {"DatasetStats": stats, "Status": record.get("status", "CREATE_COMPLETE")}
    text = "\n".join(f"{k}: {v}" for k, v in stats.items())
    return print_result(args, doc, text)


def _say_freshness(ops: Datasets, info: ProjectInfo) -> None:
    """On standard error: when the entries read were published, and the changes received since."""
    fresh = ops.freshness(info)
    pending = fresh["pending_events"]
    since = f"; {pending} change(s) received since, not yet in these numbers" if pending else ""
    print(f"# as published {fresh['published'] or '(never)'}{since}", file=sys.stderr)


def cmd_entries(args: argparse.Namespace) -> int:
    """ListDatasetEntries, with its filters and pagination."""
    ops = open_datasets()
    info = ops.project(args.project)
    lines, token = ops.list_entries(
        info,
        args.dataset,
        contains_labels=[n for n in (args.contains_labels or "").split(",") if n] or None,
        labeled=args.labeled,
        source_ref_contains=args.source_ref_contains,
        has_errors=args.has_errors or None,
        next_token=args.next_token,
        max_results=args.max_results,
    )
    _say_freshness(ops, info)
    if args.json:
        print(json.dumps({"DatasetEntries": lines, **({"NextToken": token} if token else {})}, indent=2))
        return 0
    for line in lines:
        print(line)
    if token:
        print(f"# more: --next-token {token}", file=sys.stderr)
    return 0


def cmd_labels(args: argparse.Namespace) -> int:
    """List labels with counts, or add, rename or delete one."""
    ops = open_datasets()
    info = ops.project(args.project)
    action = args.action or "list"
    if action == "list":
        stats = ops.labels(info, args.dataset)
        doc = [
            {"LabelName": s.name, "LabelStats": {"EntryCount": s.entries, "BoundingBoxCount": s.boxes}}
            for s in stats
        ]
        text = "\n".join(f"{s.name}: {s.entries} entries, {s.boxes} boxes" for s in stats) or "(no labels)"
        return print_result(args, doc, text)
    names = args.names
    if action == "add" and len(names) == 1:
        ops.add_label(info, names[0], kind=RECTANGLE_LABELS if args.boxes else CHOICES)
    elif action == "rename" and len(names) == 2:
        ops.rename_label(info, names[0], names[1])
    elif action == "delete" and len(names) == 1:
        ops.delete_label(info, names[0])
    else:
        raise _error(
            f"usage: labels PROJECT {action} " + ("OLD NEW" if action == "rename" else "NAME"),
        )
    return print_result(args, {"action": action, "labels": names}, f"{action}: {' -> '.join(names)}")


def cmd_update(args: argparse.Namespace) -> int:
    """UpdateDatasetEntries from a file of manifest lines."""
    with progress_for(args) as progress:
        ops = open_datasets(progress)
        info = ops.project(args.project)
        try:
            with open(args.lines, "rb") as f:
                body = f.read()
        except OSError as exc:
            raise _error(f"{args.lines}: {exc.strerror}") from exc
        with _status(ops).running(info, [args.dataset] if ops.has_dataset(info, args.dataset) else []):
            result = ops.update_entries(info, args.dataset, body)
    return print_result(
        args,
        result.as_json(),
        f"{result.added} added, {result.updated} replaced, {len(result.rejected)} rejected",
    )


def cmd_delete(args: argparse.Namespace) -> int:
    """Delete a dataset and its tasks."""
    with progress_for(args) as progress:
        ops = open_datasets(progress)
        info = ops.project(args.project)
        ops.delete_dataset(info, args.dataset)
    return print_result(
        args, {"deleted": args.dataset}, f"deleted the {args.dataset} dataset of {info.title}"
    )


def cmd_snapshot(args: argparse.Namespace) -> int:
    """``snapshot PROJECT`` freezes; ``snapshot list PROJECT``; ``snapshot diff PROJECT/A PROJECT/B``."""
    ops = open_datasets()
    words = args.words
    if words and words[0] == "diff" and len(words) == 3:
        project_a, _, a = words[1].rpartition("/")
        project_b, _, b = words[2].rpartition("/")
        project = project_a or project_b or args.project
        if not project or (project_a and project_b and project_a != project_b):
            raise _error("diff takes PROJECT/ID PROJECT/ID of one project (or --project)")
        info = ops.project(project)
        diff = ops.diff(info, a, b)
        text = "\n".join(
            [f"+ {d['source-ref']} {d['labels']}" for d in diff["added"]]
            + [f"- {d['source-ref']} {d['labels']}" for d in diff["removed"]]
            + [
                f"~ {d['source-ref']} {d['before']['labels']} -> {d['after']['labels']}"
                for d in diff["relabelled"]
            ]
        )
        return print_result(args, diff, text or "no differences")
    if words and words[0] == "list" and len(words) == 2:
        ids = ops.snapshots(ops.project(words[1]))
        return print_result(args, ids, "\n".join(ids) or "(no snapshots)")
    if len(words) == 1:
        with progress_for(args) as progress:
            ops.progress = progress
            info = ops.project(words[0])
            record = ops.snapshot(info)
        folder = ops.ctx.projects.key(info, f"snapshots/{record['id']}/")
        where = f"s3://{ops.ctx.storage.bucket}/{folder}"
        return print_result(args, {**record, "s3": where}, f"snapshot {record['id']}: {where}")
    raise _error("usage: snapshot PROJECT | snapshot list PROJECT | snapshot diff A B")


def add_parsers(sub: Any) -> None:
    """Add ``dataset`` and ``snapshot`` to ``customlabels``' subparsers."""
    dataset = sub.add_parser(
        "dataset", help="Rekognition datasets: create from sources, split, labels, stats, entries"
    )
    dsub = dataset.add_subparsers(dest="dataset_command", metavar="ACTION")

    def common(p: argparse.ArgumentParser, *, dataset_required: bool = True) -> None:
        p.add_argument("project", metavar="PROJECT", help="project id, folder, title or Rekognition name")
        if dataset_required:
            p.add_argument("--dataset", choices=DATASETS, required=True)
        p.add_argument("--json", action="store_true", help="print JSON")
        _quiet(p)

    p = dsub.add_parser(
        "create", help="create a dataset from S3, a folder, a manifest, another dataset, COCO or CSV"
    )
    common(p)
    p.add_argument("--from-s3", metavar="s3://bucket/prefix/", help="one task per PNG/JPEG under the prefix")
    p.add_argument(
        "--labels-from-folders", action="store_true", help="label = the image's child folder of the prefix"
    )
    p.add_argument(
        "--from-dir", metavar="DIR", help="images from this computer, copied into the project's S3 folder"
    )
    p.add_argument(
        "--from-manifest", metavar="MANIFEST", help="Ground Truth manifest: s3://... or a local file"
    )
    p.add_argument("--from-dataset", metavar="PROJECT/train|test", help="copy another dataset")
    p.add_argument("--from-coco", metavar="COCO.json", help="COCO object detection file")
    p.add_argument("--from-csv", metavar="INPUT.csv", help="CSV image,label,...")
    p.add_argument("--s3-prefix", metavar="s3://bucket/prefix/", help="where COCO/CSV images are")
    p.set_defaults(func=cmd_create)

    p = dsub.add_parser("distribute", help="move 20%% of the training entries into the empty test dataset")
    common(p, dataset_required=False)
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.set_defaults(func=cmd_distribute)

    p = dsub.add_parser(
        "check",
        help="duplicate images across train and test (leakage), within a dataset, labelled two ways; "
        "label coverage (exit 1 when images leak)",
    )
    common(p, dataset_required=False)
    p.add_argument(
        "--fix", action="store_true", help="move each leaking group to one side (default: dry run)"
    )
    p.add_argument("--region", help="the AWS region the model trains in, for its dataset limits")
    p.set_defaults(func=cmd_check)

    p = dsub.add_parser("describe", help="DescribeDataset: entries, labeled, labels, errors")
    common(p)
    p.set_defaults(func=cmd_describe)

    p = dsub.add_parser("entries", help="ListDatasetEntries with filters")
    common(p)
    p.add_argument("--contains-labels", metavar="A,B", help="entries with any of these labels")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--labeled", dest="labeled", action="store_const", const=True, default=None)
    group.add_argument("--unlabeled", dest="labeled", action="store_const", const=False)
    p.add_argument("--source-ref-contains", metavar="TEXT")
    p.add_argument("--has-errors", action="store_true")
    p.add_argument("--max-results", type=int, default=100)
    p.add_argument("--next-token")
    p.set_defaults(func=cmd_entries)

    p = dsub.add_parser("labels", help="list labels with counts; add, rename or delete a label")
    p.add_argument("project", metavar="PROJECT")
    p.add_argument("action", nargs="?", choices=("list", "add", "rename", "delete"))
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("--dataset", choices=DATASETS, help="count in this dataset only")
    p.add_argument("--boxes", action="store_true", help="add a box label (default: image-level)")
    p.add_argument("--json", action="store_true", help="print JSON")
    _quiet(p)
    p.set_defaults(func=cmd_labels)

    p = dsub.add_parser("update", help="UpdateDatasetEntries: add or replace entries from manifest lines")
    common(p)
    p.add_argument("--lines", required=True, metavar="FILE", help="manifest lines (at most 5 MB)")
    p.set_defaults(func=cmd_update)

    p = dsub.add_parser("delete", help="delete a dataset and its tasks")
    common(p)
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("snapshot", help="freeze the manifests (snapshot PROJECT), list or diff snapshots")
    p.add_argument("words", nargs="+", metavar="PROJECT | list PROJECT | diff A B")
    p.add_argument("--project", help="project of bare snapshot ids in diff")
    p.add_argument("--json", action="store_true", help="print JSON")
    _quiet(p)
    p.set_defaults(func=cmd_snapshot)


def _quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress on standard error (errors still show)"
    )
