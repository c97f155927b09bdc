"""The ``lmech`` command: a thin layer over the library, one module per command.

``common`` holds what every command shares (exit codes, consoles, progress bars, the store and config
options); each command module exports ``add(subparsers, common)``. The dependency runs one way:
commands → library.

Exit codes: 0 every requested law holds; 1 a law is violated; 2 bad input (nothing was run);
3 a run crashed (its traceback is kept in the store); 4 inconclusive (``lmech run``: a criterion's
precondition was not met; ``lmech check`` counts it as 1); 5 the store could not be written or read;
130 interrupted.
"""

from __future__ import annotations

import _signal  # the C module: importing `signal` itself takes long enough to be interrupted
import os
import sys


def _interrupted_at_start(signum, frame):  # noqa: ARG001  (a signal handler's signature)
    """Ctrl-C while the ``lmech`` command starts (its imports take a second): exit 130 quietly, as later."""
    raise SystemExit(130)


# Only when this process is the command (the console script or python -m lmech.cli), never for a library user.
if (os.path.basename(sys.argv[0] if sys.argv else "") in ("lmech", "-m", "__main__.py")
        and _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler):
    try:
        _signal.signal(_signal.SIGINT, _interrupted_at_start)
    except ValueError:  # not the main thread
        pass

import argparse  # noqa: E402
from collections.abc import Sequence  # noqa: E402

from rich.markup import escape  # noqa: E402

from lmech.cli import check, compare, fit, list_laws, report, run, runs, sweep  # noqa: E402
from lmech.cli.common import (  # noqa: E402
    EXIT_BAD_INPUT,
    EXIT_CODES_HELP,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_STORAGE,
    common_parser,
    err,
)
from lmech.errors import BadInput  # noqa: E402

#: Command modules in the order ``lmech --help`` lists them.
COMMANDS = (list_laws, run, check, sweep, runs, report, fit, compare)


def parser() -> argparse.ArgumentParser:
    common = common_parser()
    p = argparse.ArgumentParser(prog="lmech", description="The laboratory of learning mechanics: theory predicts, "
                                "training measures, a verdict compares.", epilog=EXIT_CODES_HELP)
    p.add_argument("--version", action="version", version=f"lmech {__import__('lmech').__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add(sub, common)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from lmech.plugins import load_plugins

    try:
        if _signal.getsignal(_signal.SIGINT) is _interrupted_at_start:
            _signal.signal(_signal.SIGINT, _signal.default_int_handler)  # from here on, Ctrl-C is caught below
        p = parser()
        args = p.parse_args(argv)
        if args.command is None:  # plain `lmech`: what it can do
            p.print_help()
            return EXIT_OK
        load_plugins()  # $LMECH_PLUGINS and `lmech.laws` entry points: your own laws, for every command
        return args.func(args)
    except BadInput as exc:
        err.print("[red]error:[/]", escape(str(exc)))  # the message verbatim (no markup, no :emoji:)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: finished runs are stored; rerun to resume")
        return EXIT_INTERRUPTED
    except OSError as exc:  # the store (or an output path) could not be read or written: read-only, full, a file
        err.print("[red]storage error:[/]", escape(str(exc)))
        return EXIT_STORAGE


__all__ = ["COMMANDS", "main", "parser"]
