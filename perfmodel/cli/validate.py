"""The edge of every command: argparse ``type=`` validators for numbers, paths and file contents.

Each factory returns a callable for ``add_argument(type=...)``: it gets the text the user typed and returns the
value, or raises ``argparse.ArgumentTypeError`` with one line naming the limit, which argparse prefixes with the
flag (``argument --gpus: ...``) and ``perfmodel.cli.ArgumentParser`` prints as ``perfmodel: error: ...``, exit 2.
``perfmodel`` and ``perfmodel calibrate`` share these, so a flag means the same under both.

What is checked here is what one flag alone can say: a count is an integer within its cap, a number is finite
and in range, a path exists and is a file (or folder) that can be read (or written), a text file is UTF-8 and
its YAML/JSON/JSONL/CSV parses (with the line of the first problem). Rules between flags or against the model
and hardware (prompt + output <= max_model_len, GPUs <= the hardware's) live in the library: ``Scenario``,
``predict``, ``plan``; schemas in the loaders (``load_sweep``, ``load_profile``, ...).

The caps bound memory and time: a simulated request costs ~1 KB and ~20 us (100,000 requests of 100 + 600
tokens simulate in ~2 s and ~110 MB on one core), so ``MAX_NUM_PROMPTS`` requests fit well inside 24 GiB.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
from collections.abc import Callable
from pathlib import Path

MAX_NUM_PROMPTS = 2_000_000  # requests one simulation may hold (~2 GiB, about a minute)
MAX_GPUS = 65_536  # GPUs one prediction or plan may count (layouts are enumerated by divisors)
MAX_TOKENS = 16_777_216  # any length in tokens: prompt, output, context, token budget (2**24)
MAX_NUM_SEQS = 1_048_576  # sequences per engine step (2**20)
MAX_SEED = 2**63 - 1  # numpy accepts any non-negative integer; vLLM's seed is a 64-bit int
MAX_SPREAD = 2.0  # --input/--output-sigma; perfmodel.analysis.simulate.length_distribution bounds each kind further
MAX_TEXT_BYTES = 256 * 2**20  # YAML/JSON/CSV/JSONL files read whole into memory
MAX_NESTING = 64  # containers inside containers in a YAML or JSON file
MAX_YAML_NODES = 1_000_000  # values of a YAML file once its aliases are expanded (a profile has ~5,000)
NUL = b"\x00"
SYSTEM_FOLDERS = ("/proc/", "/sys/", "/dev/")  # kernel files: never an output (a write to /dev/full, /proc/...)


def max_workers() -> int:
    """Simulation processes ``plan`` may start: four per core."""
    return 4 * (os.cpu_count() or 1)


# -- numbers --------------------------------------------------------------------------------------------------
def integer(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """A whole number in ``[low, high]`` (either end open when None)."""
    def parse(text: str) -> int:
        try:
            value = int(text, 10) if len(text) <= 40 else None
        except ValueError:
            value = None
        if value is None or (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {_describe_range('an integer', low, high)}, "
                                             f"got {_show(text)}")
        return value
    parse.__name__ = "integer"
    return parse


def real(low: float | None = None, high: float | None = None, *, low_open: bool = False,
         allow_inf: bool = False) -> Callable[[str], float]:
    """A finite number (``inf`` too with ``allow_inf``) in ``[low, high]``, or ``(low, high]`` with ``low_open``."""
    def parse(text: str) -> float:
        try:
            value = float(text) if len(text) <= 40 else math.nan
        except ValueError:
            value = math.nan
        ok = not math.isnan(value) and (math.isfinite(value) or (allow_inf and value > 0))
        if ok and low is not None:
            ok = value > low if low_open else value >= low
        if ok and high is not None and math.isfinite(value):
            ok = value <= high
        if not ok:
            what = _describe_range("a finite number", low, high, low_open=low_open)
            raise argparse.ArgumentTypeError(f"expected {what}{' or inf' if allow_inf else ''}, got {_show(text)}")
        return value
    parse.__name__ = "number"
    return parse


def word(text: str) -> str:
    """One word (no spaces or line breaks)."""
    if not text or any(c.isspace() or not c.isprintable() for c in text):
        raise argparse.ArgumentTypeError(f"expected one word, got {_show(text)}")
    return text


# -- values written into SLURM job scripts (perfmodel.deploy.sbatch states the rules; here they become flag errors) ----
def _script_value(check: Callable[[str], str | None], name: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        problem = check(text)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return text
    parse.__name__ = name
    return parse


def _lazy(fn_name: str) -> Callable[[str], str | None]:
    def check(text: str) -> str | None:
        from perfmodel.deploy import sbatch

        return getattr(sbatch, fn_name)(text)
    return check


SLURM_NAME = _script_value(_lazy("slurm_name_problem"), "SLURM name")  # --account, --partition
MODULE_NAME = _script_value(_lazy("module_name_problem"), "module name")  # --module
INTERFACE_NAME = _script_value(_lazy("interface_name_problem"), "interface name")  # --network-interface
SCRIPT_PATH = _script_value(_lazy("script_path_problem"), "path")  # --python and paths written into a script
ENV_SETUP = _script_value(_lazy("env_setup_problem"), "shell lines")  # --env-setup: code, so it must parse


def _describe_range(what: str, low, high, *, low_open: bool = False) -> str:
    if low is not None and high is not None:
        return f"{what} {'>' if low_open else 'from'} {low:,}{'' if low_open else ' to'}" + (
            f" and <= {high:,}" if low_open else f" {high:,}")
    if low is not None:
        return f"{what} {'>' if low_open else '>='} {low:,}"
    return f"{what} <= {high:,}" if high is not None else what


def _show(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


# -- paths ----------------------------------------------------------------------------------------------------
FORMATS = ("yaml", "json", "jsonl", "csv", "trace", "text", "any")


def input_file(fmt: str = "any") -> Callable[[str], str]:
    """An existing, readable regular file; for a text ``fmt``, UTF-8 whose syntax parses (see ``check_text``)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}")

    def parse(text: str) -> str:
        _check_input_file(text, fmt)
        return text
    parse.__name__ = f"{fmt} file"
    parse.role = "input"  # type: ignore[attr-defined]  # see check_outputs_are_not_inputs
    return parse


def input_file_or_dir(fmt: str = "jsonl") -> Callable[[str], str]:
    """A readable file (checked as ``input_file(fmt)``) or a folder of them (results: every ``*.jsonl``)."""
    def parse(text: str) -> str:
        if os.path.isdir(text):
            if not os.access(text, os.R_OK | os.X_OK):
                raise argparse.ArgumentTypeError(f"{text}: folder is not readable")
            return text
        _check_input_file(text, fmt)
        return text
    parse.__name__ = "file or folder"
    parse.role = "input"  # type: ignore[attr-defined]
    return parse


def name_or_file(fmt: str, suffixes: tuple[str, ...]) -> Callable[[str], str]:
    """A catalog name or id, or a path: an existing path is checked as ``input_file(fmt)`` (a folder is left to
    the loader); a name ending in one of ``suffixes`` that does not exist is refused as a missing file."""
    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError("expected a name or a path, got ''")
        if os.path.isdir(text):
            if not os.access(text, os.R_OK | os.X_OK):
                raise argparse.ArgumentTypeError(f"{text}: folder is not readable")
        elif os.path.lexists(text):
            _check_input_file(text, fmt)
        elif text.lower().endswith(suffixes):
            raise argparse.ArgumentTypeError(f"{text}: no such file")
        return text
    parse.__name__ = "name or file"
    parse.role = "input"  # type: ignore[attr-defined]
    return parse


def output_file(text: str) -> str:
    """A file to write: not a folder; its folder exists and is writable; if it exists, it is writable."""
    if not text:
        raise argparse.ArgumentTypeError("expected a file name, got ''")
    if os.path.isdir(text) or text.endswith(os.sep):
        raise argparse.ArgumentTypeError(f"{text}: is a folder; give a file name in it")
    if os.path.realpath(text).startswith(SYSTEM_FOLDERS):
        raise argparse.ArgumentTypeError(f"{text}: is under {', '.join(SYSTEM_FOLDERS)}; give a regular file")
    parent = os.path.dirname(text) or "."
    if not os.path.isdir(parent):
        raise argparse.ArgumentTypeError(f"{text}: folder {parent} does not exist; create it first")
    if os.path.exists(text):
        if not os.path.isfile(text) or not os.access(text, os.W_OK):
            raise argparse.ArgumentTypeError(f"{text}: exists and is not a writable file")
    elif not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{text}: folder {parent} is not writable")
    return text


def output_file_or_empty(text: str) -> str:
    """``output_file``, or '' for "do not write"."""
    return text if text == "" else output_file(text)


def timeline_file(text: str) -> str:
    """``simulate --timeline``: ``output_file``; it also writes ``<stem>-requests.csv`` beside it."""
    return output_file(text)


output_file.role = output_file_or_empty.role = timeline_file.role = "output"  # type: ignore[attr-defined]
timeline_file.also_writes = lambda p: [str(Path(p).with_name(  # type: ignore[attr-defined]
    f"{Path(p).stem}-requests{Path(p).suffix or '.csv'}"))]


def check_outputs_are_not_inputs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str | None:
    """None, or one line when a file the command writes is one it reads (``simulate --trace T.csv --timeline
    T.csv``, ``calibrate import X.json --results X.json``): the write would destroy the input first.

    Roles come from the validators (``role`` "input"/"output" on the ``type=`` of each flag), so every command
    is covered without listing its flags."""
    inputs: dict[str, str] = {}
    outputs: list[tuple[str, str]] = []
    for action in _leaf_actions(parser, args):
        role = getattr(action.type, "role", None)
        value = getattr(args, action.dest, None)
        if role is None or value in (None, ""):
            continue
        values = value if isinstance(value, list) else [value]
        flag = action.option_strings[0] if action.option_strings else action.metavar or action.dest
        for v in map(str, values):
            if role == "input":
                inputs.setdefault(_identity(v), f"{flag} {v}")
            else:
                outputs += [(w, f"{flag} {v}") for w in [v, *getattr(action.type, "also_writes", lambda _: [])(v)]]
    for path, flag in outputs:
        if _identity(path) in inputs:
            return f"{flag} would overwrite the input {inputs[_identity(path)]}; write to another file"
    return None


def _identity(path: str) -> str:
    """Two names of one file compare equal (symlinks, ``./``, hard links)."""
    try:
        st = os.stat(path)
        return f"inode:{st.st_dev}:{st.st_ino}"
    except OSError:
        return os.path.realpath(path)


def _leaf_actions(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[argparse.Action]:
    """The actions of the (sub)command that parsed ``args``."""
    actions = list(parser._actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = action.choices.get(getattr(args, action.dest, None) or "")
            if chosen is not None:
                actions += _leaf_actions(chosen, args)
    return actions


def output_dir(text: str) -> str:
    """A folder to write into: an existing writable folder, or a new one whose parent exists and is writable."""
    if not text:
        raise argparse.ArgumentTypeError("expected a folder, got ''")
    if os.path.exists(text):
        if not os.path.isdir(text):
            raise argparse.ArgumentTypeError(f"{text}: is a file; give a folder")
        if not os.access(text, os.W_OK | os.X_OK):
            raise argparse.ArgumentTypeError(f"{text}: folder is not writable")
        return text
    parent = os.path.dirname(os.path.normpath(text)) or "."
    if not os.path.isdir(parent):
        raise argparse.ArgumentTypeError(f"{text}: folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{text}: folder {parent} is not writable")
    return text


def report_path(text: str) -> str:
    """``check --report``: a ``.md`` file (``output_file``) or an existing folder (``report.md`` goes in it)."""
    if text.endswith(".md"):
        return output_file(text)
    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text}: give a .md file or an existing folder (folders are not created)")
    return output_file(os.path.join(text, "report.md")) and text


def _check_input_file(path: str, fmt: str) -> None:
    if not os.path.exists(path):
        raise argparse.ArgumentTypeError(f"{path}: no such file")
    if os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{path}: is a folder; give a file")
    if not os.path.isfile(path):
        raise argparse.ArgumentTypeError(f"{path}: not a regular file")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"{path}: not readable (permission denied)")
    if fmt == "any":
        return
    size = os.path.getsize(path)
    if size > MAX_TEXT_BYTES:
        raise argparse.ArgumentTypeError(f"{path}: {size:,} bytes; text inputs are limited to "
                                         f"{MAX_TEXT_BYTES:,} bytes")
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"{path}: cannot read ({exc.strerror or exc})") from None
    problem = check_text(data, fmt)
    if problem:
        raise argparse.ArgumentTypeError(f"{path}: {problem}")


# -- file contents --------------------------------------------------------------------------------------------
def check_text(data: bytes, fmt: str) -> str | None:
    """None when ``data`` is UTF-8 text whose ``fmt`` syntax parses, else one line saying where it is not.

    ``trace`` is JSONL or CSV by its first character; ``jsonl`` tolerates a torn last line (a writer killed
    mid-line, which ``calibrate.records.store`` skips on read).
    """
    if NUL in data:
        return f"binary file (a NUL byte at offset {data.index(NUL)}), expected {fmt.upper()} text"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        return f"not UTF-8 text (line {line}, byte {exc.start}), expected {fmt.upper()}"
    if fmt == "trace":
        fmt = "jsonl" if text.lstrip().startswith("{") else "csv"
    check = {"yaml": _yaml_problem, "json": _json_problem, "jsonl": _jsonl_problem, "csv": _csv_problem}.get(fmt)
    return check(text) if check else None


def _yaml_problem(text: str) -> str | None:
    import yaml

    if _nesting(text, "[{") > MAX_NESTING or _indent_depth(text) > MAX_NESTING:
        return f"nested deeper than {MAX_NESTING} levels"
    try:
        if _expanded_nodes(text) > MAX_YAML_NODES:  # aliases of aliases ("billion laughs") expand when read
            return f"its aliases expand to more than {MAX_YAML_NODES:,} values"
        yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml: 6x faster on a profile
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return f"malformed YAML{where}: {' '.join(str(problem).split())}"
    except (RecursionError, ValueError, TypeError, OverflowError) as exc:
        return f"malformed YAML: {' '.join(str(exc).split())[:120]}"
    return None


def _expanded_nodes(text: str) -> int:
    """Values the document holds once every alias is replaced by its anchor's node (stops past the limit)."""
    import yaml

    sizes: dict[str, int] = {}
    stack: list[list] = [[None, 0]]  # per open collection: its anchor and its values so far
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.AliasEvent):
            stack[-1][1] += sizes.get(event.anchor, 1)
        elif isinstance(event, yaml.ScalarEvent):
            stack[-1][1] += 1
            if event.anchor:
                sizes[event.anchor] = 1
        elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            stack.append([event.anchor, 1])
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)) and len(stack) > 1:
            anchor, n = stack.pop()
            if anchor:
                sizes[anchor] = n
            stack[-1][1] += n
        if stack[-1][1] > MAX_YAML_NODES:
            return stack[-1][1]
    return stack[0][1]


def _json_problem(text: str, line_offset: int = 0) -> str | None:
    if _nesting(text, "[{") > MAX_NESTING:
        return f"nested deeper than {MAX_NESTING} levels"
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return f"malformed JSON at line {exc.lineno + line_offset}, column {exc.colno}: {exc.msg}"
    except (RecursionError, ValueError) as exc:
        return f"malformed JSON: {' '.join(str(exc).split())[:120]}"
    return None


def _jsonl_problem(text: str) -> str | None:
    lines = text.split("\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    if last < 0:
        return None
    for i, line in enumerate(lines[:last]):  # the last line may be torn
        if line.strip():
            problem = _json_problem(line, line_offset=i)
            if problem:
                return problem
    return None


def _csv_problem(text: str) -> str | None:
    try:
        rows = csv.reader(io.StringIO(text, newline=""))
        width = None
        for row in rows:
            if not any(cell.strip() for cell in row):
                continue
            if width is None:
                width = len(row)
            elif len(row) != width:
                return f"malformed CSV at line {rows.line_num}: {len(row)} fields, the header has {width}"
    except csv.Error as exc:
        return f"malformed CSV: {exc}"
    return None


def _nesting(text: str, openers: str) -> int:
    """The deepest bracket nesting of ``text`` (strings are not parsed: an upper bound, cheap)."""
    closers = {"[": "]", "{": "}"}
    close = "".join(closers[o] for o in openers)
    depth = deepest = 0
    for c in text:
        if c in openers:
            depth += 1
            deepest = max(deepest, depth)
        elif c in close:
            depth = max(0, depth - 1)
    return deepest


def _indent_depth(text: str) -> int:
    """Distinct indentation levels of a block-style YAML file: a bound on its nesting."""
    return len({len(line) - len(line.lstrip(" -")) for line in text.splitlines() if line.strip()})
