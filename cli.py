"""
Command-line options, user-facing errors, and writing a file without ever losing the old one:
shared by every script.

Each script keeps its options at the top as a plain dict, name -> (default, what it means) or
(default, what it means, valid values), and any of them can be overridden as --name=value (or
--name value; a bare --flag sets a boolean). Values take the type of their default and are
checked here, once, against their valid values:
    "[1, inf)", "(0, 1]", ...     a range (brackets include the bound, parentheses do not)
    "auto or float [0, inf)"      the word auto, or a number of that kind in the range
    ("strict", "replace")         one of these words
    DEVICE                        auto, cpu, mps, cuda or cuda:N
    DURATION                      90s, 10m, 1.5h: converted to seconds
A user's mistake raises UserError, which run() prints as one line, "error: ...", and exits with
status 2: never a traceback. Anything else is a bug: its traceback, and a line asking to report it.
This module imports nothing heavy, so that --help answers at once.
"""
from __future__ import annotations

import codecs
import difflib
import errno
import math
import os
import re
import select
import shlex
import sys
import traceback
from pathlib import Path
from typing import IO, Any, Callable

DEVICE = "auto, cpu, mps, cuda or cuda:N"
DURATION = "a duration such as 90s, 10m or 1.5h"
SECONDS = {"s": 1, "m": 60, "h": 3600}
REQUIRED_PACKAGES = ("numpy", "torch", "tiktoken", "tqdm")  # requirements.txt, by the names scripts import


class UserError(Exception):
    """Something the user can fix: the message says what is wrong and what to do."""


def run(main: Callable[[], Any]) -> None:
    """Run a script's main(), turning a UserError (or a file that cannot be read or written) into
    one clear line and exit status 2; anything else is a bug, reported as one."""
    try:
        main()
        if sys.stdout:
            sys.stdout.flush()  # here, not at exit, so that a reader who left is caught below
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("\nstopped.", file=sys.stderr)
        sys.exit(130)
    except ModuleNotFoundError as e:  # a run-time package missing from this Python: the set-up, not a bug
        package = (e.name or "").split(".")[0]
        if package not in REQUIRED_PACKAGES:
            raise_as_bug()
        print(f"error: the package {package} is not installed in this Python ({sys.executable}): "
              "run pip install -r requirements.txt (or activate the environment that has it)", file=sys.stderr)
        sys.exit(2)
    except UnicodeEncodeError:  # printing Chinese to a terminal (or pipe) set to another encoding
        if not sys.stdout or codecs.lookup(sys.stdout.encoding or "utf-8").name == "utf-8":
            raise_as_bug()
        print(f"error: the output's encoding, {sys.stdout.encoding}, cannot show this text: set the terminal to UTF-8 "
              "(or run with PYTHONIOENCODING=utf-8)", file=sys.stderr)
        sys.exit(2)
    except BrokenPipeError:  # the reader of the output left (| head): nothing is wrong, nothing to say
        if not reader_left():
            raise_as_bug()  # another pipe or a socket broke (a child process's, say): not the reader leaving
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error as Python flushes at exit
        sys.exit(1)
    except OSError as e:  # a file that cannot be read or written: the disk, a path, a permission
        if not e.filename:
            raise_as_bug()
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            hint = ("The file being written was removed and the previous one kept: free some space and run the "
                    "command again (a training run continues from its last checkpoint with --resume)")
        else:
            hint = "Check the path, and that you may read and write there"
        print(f"error: {e.strerror}: {e.filename}. {hint}", file=sys.stderr)
        sys.exit(2)
    except (MemoryError, RuntimeError) as e:  # torch's out of memory (CPU or GPU): the sizes asked for, not a bug
        if not (isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError" or "can't allocate memory" in str(e)):
            raise_as_bug()
        print("error: out of memory: the model or batch does not fit in this machine's memory. Use smaller sizes "
              "(--batch_size, --block_size, --n_embd, --n_layer)", file=sys.stderr)
        sys.exit(2)
    except Exception:  # a bug, not the user's mistake: show where, and ask for a report
        raise_as_bug()


def read_lines(path: str | Path, what: str) -> list[str]:
    """The lines of a user's UTF-8 text file, or one line saying what is wrong with it."""
    if not Path(path).is_file():
        raise UserError(f"no such {what}: {path}")
    return text_lines(Path(path).read_bytes(), str(path))


def text_lines(data: bytes, name: str) -> list[str]:
    """The lines of UTF-8 text a user gave (a file, piped input), or one line naming the bad byte."""
    try:
        return data.decode("utf-8-sig").splitlines()  # -sig: a byte-order mark (Windows editors) is dropped
    except UnicodeDecodeError as e:
        raise UserError(f"{name} is not UTF-8 text (byte {e.start} cannot be decoded)") from None


def split_args(text: str, option: str) -> list[str]:
    """Options given to a script as one string (--world_args="--people=100"), split as a shell splits them."""
    try:
        return shlex.split(text)
    except ValueError as e:  # an unclosed quote
        raise UserError(f"{option}={text!r} cannot be split into options ({e}): close its quotes") from None


def reader_left() -> bool:
    """Whether stdout is a pipe whose reader has gone (poll says so where it exists; on Windows, assumed)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # no stdout, or not a file: the broken pipe was another's
        return False
    if not hasattr(select, "poll"):
        return True
    poll = select.poll()
    poll.register(fd, select.POLLOUT)
    return any(event & (select.POLLERR | select.POLLHUP) for _, event in poll.poll(0))  # Linux: ERR; macOS, BSD: HUP


def raise_as_bug() -> None:
    traceback.print_exc()
    print("\nThis is a bug in nanoInstruct, not something you did wrong: please report it, with the command "
          "you ran and the lines above.", file=sys.stderr)
    sys.exit(1)


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
                value = kind(text)
            except ValueError:
                raise UserError(f"--{name} expects {word}, got {text!r}") from None
            if kind is int and not -2**63 <= value < 2**63:  # what torch and the OS take as an integer
                raise UserError(f"--{name} must be an integer from -2**63 to 2**63 - 1; got {text}")
            return value
    return text  # strings, and options whose default is None


def atomic_write(files: dict[Path, Callable[[IO[bytes]], Any]]) -> None:
    """For each path, write(file) into a temporary file beside it, flushed to disk; once all are
    written, rename each over its path. A crash or a full disk while writing leaves the old
    files whole (never half of one, nor a new file beside old ones), and the partial temporary
    files are removed, so that they do not keep the disk full."""
    tmps = {path: path.with_name(path.name + ".tmp") for path in files}
    for path in files:  # before any rename: one that failed after others would leave a mix of old and new
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "a folder is there, not a file", str(path))
    try:
        for path, write in files.items():
            with open(tmps[path], "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
        for path, tmp in tmps.items():
            os.replace(tmp, path)
    except BaseException as e:
        for tmp in tmps.values():
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and (not e.filename or str(e.filename) in map(str, tmps.values())):  # name the file
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise


def readme_markers(name: str) -> tuple[str, str]:
    """The comment lines between which a script writes its results into README.md or docs/."""
    return f"<!-- {name} results: begin -->", f"<!-- {name} results: end -->"


def update_docs(name: str, blocks: dict[Path, str], record: Path, record_text: str,
                figures: dict[Path, str] | None = None) -> list[Path]:
    """Put each markdown block between its document's markers for name, and write the record the
    blocks were rendered from (a test renders it again and compares) and the figures (whole files),
    all at once. Returns the documents updated; one without the markers is left as it is, and with
    none, so are the record and the figures."""
    begin, end = readme_markers(name)
    files = {}
    for doc, markdown in blocks.items():
        text = doc.read_text(encoding="utf-8") if doc.exists() else ""
        if begin in text and end in text:
            head, rest = text.split(begin, 1)
            new = f"{head}{begin}\n{markdown}{end}{rest.split(end, 1)[1]}"
            files[doc] = lambda f, new=new: f.write(new.encode())
    if files:
        figures = {path: lambda f, text=text: f.write(text.encode()) for path, text in (figures or {}).items()}
        atomic_write({record: lambda f: f.write(record_text.encode()), **files, **figures})
    return list(files)


def describe(valid) -> str:
    """Valid values in words: "(0, 1]" -> "above 0 and at most 1"."""
    if isinstance(valid, tuple):
        return "one of " + ", ".join(valid)
    if valid in (DEVICE, DURATION):
        return valid
    auto, kind, low_bracket, low, high, high_bracket = parse_range(valid)
    words = [f"{'above' if low_bracket == '(' else 'at least'} {low}"] if low != "-inf" else []
    words += [f"{'below' if high_bracket == ')' else 'at most'} {high}"] if high != "inf" else []
    kind = {"int": "an integer ", "float": "a number ", "": ""}[kind]
    return ("auto or " if auto else "") + kind + " and ".join(words or ["any value"])


def parse_range(valid: str) -> tuple[bool, str, str, str, str, str]:
    match = re.fullmatch(r"(auto or )?(int |float )?([\[(])(\S+), (\S+)([\])])", valid)
    if not match:
        raise ValueError(f"not a range: {valid!r}")  # a mistake in a script's OPTIONS, not the user's
    auto, kind, low_bracket, low, high, high_bracket = match.groups()
    return bool(auto), (kind or "").strip(), low_bracket, low, high, high_bracket


def check(name: str, value: Any, valid) -> Any:
    """value if it is among the valid values, converted where valid names the kind; else UserError."""
    if valid is None:
        return value
    if valid == DURATION:
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smh])", str(value).strip())
        if not match or float(match[1]) <= 0:
            raise UserError(f"--{name} must be {DURATION}; got {value!r}")
        return float(match[1]) * SECONDS[match[2]]
    if isinstance(valid, tuple) or valid == DEVICE:
        ok = value in valid if isinstance(valid, tuple) else re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", str(value))
        if not ok:
            raise UserError(f"--{name} must be {describe(valid)}; got {value!r}")
        return value
    auto, kind, low_bracket, low, high, high_bracket = parse_range(valid)
    if auto and value == "auto":
        return value
    if kind:
        try:
            value = _convert(name, str(value), 0 if kind == "int" else 0.0)
        except UserError:
            raise UserError(f"--{name} must be {describe(valid)}; got {value!r}") from None
    low, high = float(low), float(high)
    inside = (math.isfinite(value) and (value > low if low_bracket == "(" else value >= low)
              and (value < high if high_bracket == ")" else value <= high))
    if not inside:
        raise UserError(f"--{name} must be {describe(valid)}; got {value}")
    return value


def help_text(options: dict[str, tuple], usage: str, about: str) -> str:
    width = max(len(n) for n in options) + 2
    lines = [f"usage: {usage}", "", about.strip(), "", "options (--name=value; default in brackets):"]
    for name, (default, meaning, *valid) in options.items():
        lines.append(f"  --{name:<{width}} {meaning} [{default}]" + (f" ({describe(valid[0])})" if valid else ""))
    lines.append(f"  --{'help':<{width}} show this message and exit")
    return "\n".join(lines)


def parse_args(options: dict[str, tuple], usage: str, about: str, argv: list[str] | None = None,
               positional: str | None = None) -> tuple[dict[str, Any], list[str], set[str]]:
    """Options dict -> (config, positional arguments, the names of the options typed). positional
    names what bare arguments mean in this script (say, "input files"); None: it takes none.
    What was typed matters on --resume: a value typed equal to its default still counts."""
    argv = sys.argv[1:] if argv is None else argv
    config = {name: spec[0] for name, spec in options.items()}
    rest: list[str] = []
    typed: set[str] = set()
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
        config[name] = check(name, _convert(name, value, default), options[name][2] if len(options[name]) > 2 else None)
        typed.add(name)
    return config, rest, typed
