"""The `backbot` command: chat in a terminal, check the dialog, draw it, run the bot,
compact its database."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "run":
        # Ctrl-C or SIGTERM while PTB loads and the bot sets up is a clean stop too (the
        # bot's own handlers take over once its event loop starts); set before any of
        # backbot's own modules load.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _stop_while_loading)
    try:
        from bot.config import ConfigError
        from bot.errors import DataError

        try:
            return int(args.func(args))
        except (DataError, ConfigError) as exc:
            print(f"backbot: {exc}", file=sys.stderr)
            return 2
    except KeyboardInterrupt:
        print(file=sys.stderr)  # the shell's prompt on a line of its own, not after "> ^C"
        return 130
    except BrokenPipeError:  # e.g. `backbot chat | head`: the reader left; so do we
        _output_gone()
        return 0
    except OSError as exc:  # chat or diagram: the terminal or a full disk refused a write
        if args.command == "run":
            raise  # run's own are reported where they happen
        _output_gone()
        print(f"backbot: {exc.strerror or exc}", file=sys.stderr)
        return 1


def _output_gone() -> None:
    """Nothing more goes to stdout, not even Python's flush at exit (a second error)."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="backbot",
        description="backbot: back-pain screening and safe low-impact cardio, with sources.",
    )
    # listed by --help in this order, as the README's table: the three that read only the
    # dialog and content files, then the two that read the settings and the database
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def data_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dialog", type=Path, help="dialog YAML file (default: the shipped one)")
        p.add_argument("--content", type=Path, help="content folder (default: the shipped one)")

    chat = sub.add_parser("chat", help="talk to the bot in this terminal (no token needed)")
    data_options(chat)
    chat.set_defaults(func=_chat)

    check = sub.add_parser("check", help="validate dialogs and content and prove the safety rules")
    data_options(check)
    check.set_defaults(func=_check)

    diagram = sub.add_parser("diagram", help="print the dialog as a Mermaid diagram")
    data_options(diagram)
    diagram.set_defaults(func=_diagram)

    run = sub.add_parser("run", help="run the Telegram bot (needs TELEGRAM_BOT_TOKEN)")
    run.set_defaults(func=_run)

    compact = sub.add_parser("compact", help="rebuild the database so that erased sessions "
                             "leave nothing behind (stop the bot first)")
    compact.set_defaults(func=_compact)
    return parser


def _chat(args: argparse.Namespace) -> int:
    from bot.loading import load_checked_engine
    from bot.terminal import chat

    if sys.stdin is None or sys.stdout is None:  # started with either closed (`<&-`)
        print("backbot: chat needs an input and an output: a terminal or a pipe",
              file=sys.stderr)
        return 2
    return chat(load_checked_engine(args.dialog, args.content))


def _check(args: argparse.Namespace) -> int:
    from bot.loading import load_bundle
    from bot.safety import check_dialog

    dialog, content = load_bundle(args.dialog, args.content)
    findings = check_dialog(dialog, content)
    failed = [f for f in findings if not f.ok]
    # (fewer than four findings: a cycle in the graph stopped the proofs, and is one)
    status = 1 if failed or len(findings) < 4 else 0
    edges = len(dialog.answer_edges())
    try:  # a reader that stops early (`| head`) must not turn a failure into success
        print(f"{dialog.path}: {len(dialog.states)} states, {edges} answer transitions, "
              f"{len(content.cards)} cards, {len(content.sources)} sources")
        for finding in findings:
            mark = "ok  " if finding.ok else "FAIL"
            print(f"{mark} ({finding.name}) {finding.title}: "
                  f"{finding.states} {finding.unit}, {finding.paths} paths checked")
            for problem in finding.problems:
                print(f"     {problem}")
        sys.stdout.flush()
    except BrokenPipeError:
        _output_gone()
    return status


def _run(args: argparse.Namespace) -> int:
    from bot.config import load_settings
    from bot.telegram_app import run

    return run(load_settings())


def _compact(args: argparse.Namespace) -> int:
    import sqlite3

    from bot.config import ConfigError, load_settings
    from bot.store import DatabaseInUse, compact, why_not

    settings = load_settings()
    where = f"BACKBOT_DB={settings.db_path}"
    try:
        before, after = compact(settings.db_path)
    except DatabaseInUse:
        raise ConfigError(f"a backbot is running on {where}; stop it first") from None
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(f"cannot compact {where}: {why_not(exc)}") from None
    print(f"compacted {settings.db_path}: {before:,} bytes before, {after:,} after")
    return 0


def _stop_while_loading(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _diagram(args: argparse.Namespace) -> int:
    from bot.diagram import mermaid
    from bot.loading import load_bundle

    dialog, _ = load_bundle(args.dialog, args.content)
    sys.stdout.write(mermaid(dialog))
    return 0


if __name__ == "__main__":
    sys.exit(main())
