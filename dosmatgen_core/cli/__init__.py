"""The `dosmatgen` command: one parser, its verbs grouped by the flow (labels, train, generate).

Every error a user can cause ends in one line on stderr, `error: <what> — <what to do>`, and exit
status 2; anything else is one line and status 1. --debug (or DOSMATGEN_DEBUG=1) shows the
traceback instead.
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import sys

from dosmatgen_core.cli import generate, labels, search, train


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line like every other error."""

    def error(self, message):
        print(f"error: {message} — see `{self.prog} --help`", file=sys.stderr)
        sys.exit(2)


def describe(exc: BaseException) -> tuple[str, int]:
    """(one line, exit status) for an exception that reached the command line."""
    from dosmatgen_core.checks import UserError   # here: `dosmatgen --help` should not load pymatgen
    if isinstance(exc, UserError):
        return str(exc), 2
    if isinstance(exc, OSError) and not isinstance(exc, sqlite3.Error):
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        return (f"{exc.strerror or exc}{where} — check the path, its permissions and the free disk space"), 2
    if isinstance(exc, sqlite3.Error):
        return f"database error ({exc}) — check the file, its permissions and the free disk space", 2
    if isinstance(exc, ValueError):   # the library's checks: the message says what is wrong
        msg = str(exc)
        return (msg if " — " in msg else f"{msg} — check the input; --debug shows where it failed"), 2
    return (f"{type(exc).__name__}: {exc} — this is a bug: rerun with --debug and report the traceback"), 1


def main(argv=None) -> int:
    p = _Parser(prog="dosmatgen", description=__doc__.splitlines()[0])
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = p.add_subparsers(dest="cmd", required=True)
    for group in (labels, train, generate, search):
        group.add_parsers(sub)
    for verb in sub.choices.values():   # --debug after the verb too
        verb.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    try:
        args = p.parse_args(argv)
    except SystemExit as e:     # --help, or a usage error already printed as one line
        return e.code if isinstance(e.code, int) else 2
    debug = args.debug or os.environ.get("DOSMATGEN_DEBUG", "") not in ("", "0")
    try:
        return args.func(args)
    except BrokenPipeError:
        # the reader stopped reading (`dosmatgen materials Ni | head`): nothing went wrong here. Python's
        # documented way out: stdout to devnull, so that the flush at exit does not raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        if debug:
            raise
        line, code = describe(exc)
        print("error: " + " ".join(line.split()), file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
