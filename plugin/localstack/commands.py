"""The ``up`` and ``down`` commands: their flags, taking the home's lock, a foreground ``up`` supervising
its processes until Ctrl-C or SIGTERM (restarting a part that crashes; ``--detach`` leaves a supervisor in
the background instead), and the reports they print (``--json`` too)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Mapping
from typing import Any

from plugin.localstack.errors import ServerStartError, StackError
from plugin.localstack.layout import Layout, home_lock, resolve_home
from plugin.localstack.plan import Plan, make_plan, taken_ports
from plugin.localstack.private_files import load_ls_env, load_secrets
from plugin.localstack.processes import drop_output, say
from plugin.localstack.record import read_record
from plugin.localstack.stack import ORDER, Parts, Stack, bring_up, print_summary, stop_recorded, summary
from plugin.localstack.stop_signals import Stopped, install_stop_handlers, restore_handlers
from plugin.localstack.supervisor import start_supervisor, stop_supervisor, supervise
from plugin.progress import Progress


def cmd_up(args: argparse.Namespace) -> int:
    """``customlabels up``."""
    try:
        home = resolve_home(args.home)
        plan = make_plan(home, ls_port=args.ls_port, service_port=args.port, s3_port=args.s3_port)
    except StackError as exc:
        return _fail(args, str(exc))
    layout = plan.layout
    layout.home.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        layout.home.chmod(0o700)
    with home_lock(layout) as locked:
        if not locked:
            record = read_record(layout)
            if record is not None and all(record.alive().values()) and record.processes:
                return _report(
                    args, summary(record, load_secrets(layout, create=False), status="already running")
                )
            return _fail(args, f"another `customlabels up` or `down` is working on {layout.home}")
        return _up_locked(args, plan)


def _up_locked(args: argparse.Namespace, plan: Plan) -> int:
    layout = plan.layout
    previous = read_record(layout)
    if previous is not None:
        alive = previous.alive()
        if alive and all(alive.values()):
            return _report(
                args, summary(previous, load_secrets(layout, create=False), status="already running")
            )
        left = [name for name, up in alive.items() if up]
        if left:
            say(f"a previous stack in {layout.home} is partly running ({', '.join(left)}): stopping it first")
        stop_supervisor(previous)  # a detached stack's: it would restart what we stop
        stop_recorded(previous, quiet=False)
    problems = taken_ports(plan)
    if problems:
        return _fail(args, "\n".join(problems))
    try:
        secrets_ = load_secrets(layout, create=True)
        ls_settings = load_ls_env(layout, create=True)
    except (OSError, ValueError, KeyError) as exc:
        return _fail(args, f"cannot read the settings in {layout.home}: {exc}")
    assert secrets_ is not None and ls_settings is not None
    layout.logs.mkdir(parents=True, exist_ok=True)
    stack = Stack(plan, detached=args.detach)
    stack.save()
    handlers = install_stop_handlers()
    # With --json, plain progress lines (stdout holds the JSON; a redrawn bar would garble captured stderr).
    progress = Progress(6, enabled=True, tty=False if args.json else None)
    try:
        parts = bring_up(stack, secrets_, ls_settings, demo=not args.no_demo, progress=progress)
        if args.detach:
            start_supervisor(stack)
        progress.finish(f"ready in {time.monotonic() - progress.started:.0f} s")
    except (KeyboardInterrupt, Stopped):
        progress.close()
        say("interrupted: stopping what was started")
        _abandon(stack)
        return 130
    except Exception as exc:  # noqa: BLE001 - whatever failed, stop what was started
        progress.close()
        say("could not start; stopping what was started")
        _abandon(stack)
        return _fail(args, _describe(exc))
    finally:
        restore_handlers(handlers)
    info = summary(stack.record, secrets_, status="started")
    _report(args, info)
    if args.detach:
        return 0
    return _supervise(stack, parts, args)


def _abandon(stack: Stack) -> None:
    """Stop what this ``up`` started, its detached supervisor first (it would start the parts again)."""
    stop_supervisor(stack.record)
    stack.stop()


def _describe(exc: BaseException) -> str:
    name = type(exc).__name__
    text = str(exc)
    return text if isinstance(exc, StackError | ServerStartError) else f"{name}: {text}"


def _supervise(stack: Stack, parts: Parts, args: argparse.Namespace) -> int:
    """Foreground: restart what crashes until Ctrl-C or SIGTERM (``down``); then stop everything."""
    stopped = supervise(stack, parts)
    if args.json:
        try:
            print(json.dumps({"status": "stopped", "stopped": stopped}), flush=True)
        except (OSError, ValueError):  # nobody reads our output any more (a closed pipe)
            drop_output(sys.stdout)
    else:
        say("stopped; the data stays in " + str(stack.plan.layout.home))
    return 0


def _report(args: argparse.Namespace, info: Mapping[str, Any]) -> int:
    if args.json:
        print(json.dumps(info), flush=True)
    else:
        print_summary(info)
    return 0


def _fail(args: argparse.Namespace, message: str, code: int = 1) -> int:
    if getattr(args, "json", False):
        print(json.dumps({"status": "error", "error": message}), flush=True)
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code


# --- down --------------------------------------------------------------------------------------------------


def cmd_down(args: argparse.Namespace) -> int:
    """``customlabels down``: stop what ``up`` started in this home (its data stays)."""
    layout = Layout(resolve_home(args.home))
    record = read_record(layout)
    stopped: list[str] = []
    if record is None:
        return _down_report(args, layout, stopped, "nothing is running from this home")
    if stop_supervisor(record):
        # A foreground `up` or a detached stack's supervisor: it stops the parts (those it started again
        # too) on SIGTERM and removes the state file.
        stopped = [name for name, up in record.alive().items() if not up]
    with home_lock(layout, wait=30) as locked:
        if not locked:
            return _fail(args, f"another `customlabels up` or `down` holds {layout.lock}")
        current = read_record(layout) or record
        stopped += stop_recorded(current, quiet=True)
        with contextlib.suppress(FileNotFoundError):
            layout.state.unlink()
    return _down_report(args, layout, sorted(set(stopped), key=ORDER.index), "stopped")


def _down_report(args: argparse.Namespace, layout: Layout, stopped: list[str], status: str) -> int:
    if args.json:
        print(json.dumps({"status": status, "stopped": stopped, "home": str(layout.home)}), flush=True)
    elif stopped:
        print(f"stopped {', '.join(s.replace('_', ' ') for s in stopped)}; the data stays in {layout.home}")
    else:
        print(f"{status} ({layout.home})")
    return 0


# --- parsers -----------------------------------------------------------------------------------------------


def home_flag(parser: argparse.ArgumentParser) -> None:
    """Add ``--home`` (the stack's home directory) to a command of the local stack."""
    parser.add_argument(
        "--home", metavar="DIR", help="data dir (default: $CUSTOMLABELS_HOME or ./.customlabels)"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON (for scripts)")


def port_flags(parser: argparse.ArgumentParser) -> None:
    """Add the ports of the stack's parts to a command of the local stack."""
    parser.add_argument(
        "--ls-port", type=int, metavar="N", help="Label Studio's port (default 8080; CUSTOMLABELS_LS_PORT)"
    )
    parser.add_argument(
        "--port", type=int, metavar="N", help="the sync service's port (default 5000; CUSTOMLABELS_PORT)"
    )
    parser.add_argument(
        "--s3-port", type=int, metavar="N", help="the S3 store's port (default 9000; CUSTOMLABELS_S3_PORT)"
    )


def add_parsers(sub: Any) -> None:
    """Add ``up`` and ``down`` to ``customlabels``' subparsers."""
    p = sub.add_parser(
        "up", help="start Label Studio, S3, Redis, the sync service and a worker on this machine"
    )
    home_flag(p)
    port_flags(p)
    p.add_argument(
        "-d", "--detach", action="store_true", help="return once everything is ready (stop with `down`)"
    )
    p.add_argument("--no-demo", action="store_true", help="do not make the demo project")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("down", help="stop what `customlabels up` started (the data stays)")
    home_flag(p)
    p.set_defaults(func=cmd_down)
