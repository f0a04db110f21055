"""Command line: thin; each command calls one library function.

Commands are registered by the stage packages (``symdistill.<stage>.commands``), each exposing
``register(subparsers)``; a command's handler takes the parsed args and returns an exit code.

One error boundary (:func:`main`): a user error (:class:`SymdistillError`: bad input, a bad file) or
one of the environment (``OSError``: a full disk, a permission; ``MemoryError``) prints one line
``error: <what> (<how to fix>)`` and exits 2; ``--debug`` shows the traceback. Anything else is a
bug in symdistill and shows its traceback. Warnings raised while a command runs are printed after it
succeeds (an error stays one line).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
import warnings

from symdistill import __version__
from symdistill.errors import SymdistillError
from symdistill.io import describe_os_error

#: Stage modules that contribute commands, in data-flow order. A missing one is skipped, so the
#: CLI works while later stages are being built.
COMMAND_MODULES = (
    "symdistill.simulate.commands",
    "symdistill.train.commands",
    "symdistill.distill.commands",
    "symdistill.pipeline",
    "symdistill.cosmology.commands",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse's default prints the usage too)
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="symdistill", description="Discover the symbolic law behind particle data by distilling a "
                                                    "trained graph network (Cranmer et al. 2020, and beyond).")
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


def _value_flags(parser: argparse.ArgumentParser) -> tuple[set[str], set[str]]:
    """(every option string, the options that take one value), over the parser and its subcommands."""
    options, valued = set(), set()
    parsers = [parser]
    while parsers:
        p = parsers.pop()
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
            options.update(action.option_strings)
            if action.option_strings and action.nargs is None:
                valued.update(action.option_strings)
    return options, valued


def join_dash_values(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """``--potential -m1*m2/r`` -> ``--potential=-m1*m2/r``: argparse would take a value that starts
    with ``-`` for an option (and `-1e-3` too). Only for options that take one value, and values that are
    no option."""
    options, valued = _value_flags(parser)
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        if a in valued and i + 1 < len(argv) and argv[i + 1].startswith("-") and argv[i + 1] not in options \
                and argv[i + 1].split("=", 1)[0] not in options:
            out.append(f"{a}={argv[i + 1]}")
            i += 2
            continue
        out.append(a)
        i += 1
    return out


#: The longest error line printed (a message quoting a huge input is cut).
MAX_ERROR = 400


def _one_line(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= MAX_ERROR else line[: MAX_ERROR - 20] + f" ... ({len(line)} characters)"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(join_dash_values(argv, parser))
    if args.command is None:
        parser.print_help()
        return 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        try:
            code = int(args.handler(args) or 0)
        except SymdistillError as e:
            return _fail(args, _one_line(e))
        except OSError as e:  # the environment: a full disk, a permission, a path
            return _fail(args, _one_line(describe_os_error(e)))
        except MemoryError:
            return _fail(args, OUT_OF_MEMORY)
        except RuntimeError as e:
            if "allocate" not in str(e) and "out of memory" not in str(e).lower():
                return _bug(args)
            return _fail(args, OUT_OF_MEMORY)  # torch's allocators say so with a RuntimeError
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except Exception:
            return _bug(args)
    for w in caught:
        print(f"warning: {_one_line(w.message)}", file=sys.stderr)
    return code


OUT_OF_MEMORY = ("out of memory (ask for less: fewer simulations, bodies or steps, a smaller batch or "
                 "network)")


def _bug(args) -> int:
    """Anything else is a bug of ours: its traceback, and exit 1."""
    if args.debug:
        raise
    traceback.print_exc()
    print("This is a bug in symdistill: please report it with the command and this traceback.", file=sys.stderr)
    return 1


def _fail(args, message: str) -> int:
    if args.debug:
        raise
    print(f"error: {message}", file=sys.stderr)
    from symdistill import io

    if io.HDF5_WRITE_FAILED:  # the HDF5 library can crash at exit after a failed write: leave now
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(2)
    return 2


if __name__ == "__main__":
    sys.exit(main())
