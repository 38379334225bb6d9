"""
Command-line options and user-facing errors, shared by every script.

Each script keeps its options at the top as a plain dict, name -> (default, what it means),
and any of them can be overridden as --name=value (or --name value; a bare --flag sets a
boolean). Values take the type of their default. A user's mistake raises UserError, which
run() prints as one line, "error: ...", and exits with status 2: never a traceback.
This module imports nothing heavy, so that --help answers at once.
"""
from __future__ import annotations

import difflib
import sys
from typing import Any, Callable


class UserError(Exception):
    """Something the user can fix: the message says what is wrong and what to do."""


def run(main: Callable[[], Any]) -> None:
    """Run a script's main(), turning a UserError into one clear line and exit status 2."""
    try:
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("\nstopped.", file=sys.stderr)
        sys.exit(130)


def _convert(name: str, text: str, default: Any) -> Any:
    if isinstance(default, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise UserError(f"--{name} expects true or false, got {text!r}")
    for kind, word in ((int, "an integer"), (float, "a number")):
        if isinstance(default, kind):
            try:
                return kind(text)
            except ValueError:
                raise UserError(f"--{name} expects {word}, got {text!r}") from None
    return text  # strings, and options whose default is None


def help_text(options: dict[str, tuple[Any, str]], usage: str, about: str) -> str:
    width = max(len(n) for n in options) + 2
    lines = [f"usage: {usage}", "", about.strip(), "", "options (--name=value; default in brackets):"]
    for name, (default, meaning) in options.items():
        lines.append(f"  --{name:<{width}} {meaning} [{default}]")
    lines.append(f"  --{'help':<{width}} show this message and exit")
    return "\n".join(lines)


def parse_args(options: dict[str, tuple[Any, str]], usage: str, about: str,
               argv: list[str] | None = None, positional: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """Options dict -> (config, positional arguments). positional names what bare arguments
    mean in this script (say, "input files"); None means the script takes none."""
    argv = sys.argv[1:] if argv is None else argv
    config = {name: default for name, (default, _) in options.items()}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg in ("-h", "--help"):
            print(help_text(options, usage, about))
            sys.exit(0)
        if not arg.startswith("--"):
            if positional is None:
                raise UserError(f"unexpected argument {arg!r}: options are written --name=value (see --help)")
            rest.append(arg)
            continue
        name, has_value, value = arg[2:].partition("=")
        name = name.replace("-", "_")
        if name not in options:
            close = difflib.get_close_matches(name, options, n=1)
            hint = f" Did you mean --{close[0]}?" if close else ""
            raise UserError(f"unknown option --{name}.{hint} See --help for the list.")
        default = options[name][0]
        if not has_value:
            if isinstance(default, bool):
                value = "true"
            elif i < len(argv) and not argv[i].startswith("--"):
                value = argv[i]
                i += 1
            else:
                raise UserError(f"--{name} needs a value, as --{name}=VALUE")
        config[name] = _convert(name, value, default)
    return config, rest
