"""Command line: thin; each command calls one library function.

Commands are registered by the stage packages (``symdistill.<stage>.commands``), each exposing
``register(subparsers)``; a command's handler takes the parsed args and returns an exit code.
A user error (:class:`SymdistillError`) prints one line and exits 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from symdistill import __version__
from symdistill.errors import SymdistillError

#: Stage modules that contribute commands, in data-flow order. A missing one is skipped, so the
#: CLI works while later stages are being built.
COMMAND_MODULES = (
    "symdistill.simulate.commands",
    "symdistill.train.commands",
    "symdistill.distill.commands",
    "symdistill.pipeline",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse's default prints the usage too)
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="symdistill", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"symdistill {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if not name.startswith(str(e.name)):
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except SymdistillError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
