"""The `dosmatgen` command: one parser, its verbs grouped by the flow (labels, train, generate).

Bad input ends in one line on stderr and exit status 2, never a traceback (DOSMATGEN_DEBUG=1
shows it).
"""
from __future__ import annotations

import argparse
import os
import sys

from dosmatgen_core.cli import generate, labels, search, train


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="dosmatgen", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for group in (labels, train, generate, search):
        group.add_parsers(sub)

    args = p.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:
        # bad input (a task, a file, a model path): one clear line, not a traceback
        # (DOSMATGEN_DEBUG=1 shows the traceback)
        if os.environ.get("DOSMATGEN_DEBUG"):
            raise
        print(f"dosmatgen {args.cmd}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
