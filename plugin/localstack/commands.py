"""The ``up`` and ``down`` commands: their flags, taking the home's lock, a foreground ``up`` supervising
its processes until Ctrl-C, SIGTERM or a part's death, and the reports they print (``--json`` too)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from plugin.localstack.errors import ServerStartError, StackError
from plugin.localstack.layout import Layout, home_lock, resolve_home
from plugin.localstack.plan import Plan, make_plan, taken_ports
from plugin.localstack.private_files import load_ls_env, load_secrets
from plugin.localstack.processes import log_tail, say
from plugin.localstack.record import read_record
from plugin.localstack.stack import ORDER, Stack, bring_up, print_summary, stop_recorded, summary
from plugin.localstack.stop_signals import Stopped, install_stop_handlers, restore_handlers
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
        bring_up(stack, secrets_, ls_settings, demo=not args.no_demo, progress=progress)
        progress.finish(f"ready in {time.monotonic() - progress.started:.0f} s")
    except (KeyboardInterrupt, Stopped):
        progress.close()
        say("interrupted: stopping what was started")
        stack.stop()
        return 130
    except Exception as exc:  # noqa: BLE001 - whatever failed, stop what was started
        progress.close()
        say("could not start; stopping what was started")
        stack.stop()
        return _fail(args, _describe(exc))
    finally:
        restore_handlers(handlers)
    info = summary(stack.record, secrets_, status="started")
    _report(args, info)
    if args.detach:
        return 0
    return _supervise(stack, args)


def _describe(exc: BaseException) -> str:
    name = type(exc).__name__
    text = str(exc)
    return text if isinstance(exc, StackError | ServerStartError) else f"{name}: {text}"


def _supervise(stack: Stack, args: argparse.Namespace) -> int:
    """Foreground: wait until Ctrl-C, SIGTERM (``down``) or a part dies; then stop everything."""
    handlers = install_stop_handlers()
    code = 0
    try:
        while True:
            dead = stack.dead()
            if dead:
                for proc in dead:
                    say(
                        f"{proc.name.replace('_', ' ')} (pid {proc.pid}) exited; end of {proc.log}:\n"
                        f"{log_tail(Path(proc.log), 15)}"
                    )
                say("stopping everything")
                code = 1
                break
            time.sleep(1.0)
    except (KeyboardInterrupt, Stopped):
        say("stopping")
    finally:
        stopped = stack.stop()
        restore_handlers(handlers)
    if args.json:
        print(json.dumps({"status": "stopped", "stopped": stopped}), flush=True)
    else:
        say("stopped; the data stays in " + str(stack.plan.layout.home))
    return code


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
    supervisor = record.supervisor
    if supervisor is not None and supervisor.alive and supervisor.pid != os.getpid():
        # A foreground `up`: it stops its own processes on SIGTERM and removes the state file.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(supervisor.pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while supervisor.alive and time.monotonic() < deadline:
            time.sleep(0.2)
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
