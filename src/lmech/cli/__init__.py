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

import argparse
from collections.abc import Sequence

from rich.markup import escape

from lmech.cli import check, fit, list_laws, report, run, runs, sweep
from lmech.cli.common import EXIT_BAD_INPUT, EXIT_CODES_HELP, EXIT_INTERRUPTED, common_parser, err
from lmech.errors import BadInput

#: Command modules in the order ``lmech --help`` lists them.
COMMANDS = (list_laws, run, check, sweep, runs, report, fit)


def parser() -> argparse.ArgumentParser:
    common = common_parser()
    p = argparse.ArgumentParser(prog="lmech", description="The laboratory of learning mechanics: theory predicts, "
                                "training measures, a verdict compares.", epilog=EXIT_CODES_HELP)
    p.add_argument("--version", action="version", version=f"lmech {__import__('lmech').__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add(sub, common)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except BadInput as exc:
        err.print("[red]error:[/]", escape(str(exc)))  # the message verbatim (no markup, no :emoji:)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: finished runs are stored; rerun to resume")
        return EXIT_INTERRUPTED


__all__ = ["COMMANDS", "main", "parser"]
