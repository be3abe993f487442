"""vLLM's own vocabulary on perfmodel's command line: a pasted `vllm serve` command or its `--config` file.

- Sizes as vLLM writes them (`--max-model-len 32k`): k/m/g are powers of 1000, K/M/G of 1024, decimals allowed
  (`25.6k` = 25,600), as vLLM's `human_readable_int` reads them (vllm/engine/arg_utils.py, 0.9 and later).
- Flags that do not change performance (`--trust-remote-code`, `--served-model-name`, `--host`, ...) are accepted
  and listed once on stderr as "ignored: no effect on performance".
- `--config FILE.yaml`: a `vllm serve` config file whose keys are flag names (`max-num-seqs: 64` or
  `max_num_seqs: 64`; `true` for a switch); flags given on the command line win, as in vLLM.
- `vllm serve MODEL ...` pasted after `perfmodel predict`: the positional model becomes `--model`.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Sequence

from perfmodel.errors import UserError

# flags of `vllm serve` that take a value / that are switches, with no effect on throughput or latency
IGNORED_WITH_VALUE = ("--served-model-name", "--host", "--port", "--api-key", "--tokenizer", "--tokenizer-mode",
                      "--download-dir", "--load-format", "--revision", "--code-revision", "--tokenizer-revision",
                      "--uvicorn-log-level", "--chat-template", "--response-role", "--root-path",
                      "--allowed-origins", "--middleware", "--tool-call-parser", "--hf-overrides",
                      "--generation-config", "--ssl-keyfile", "--ssl-certfile", "--distributed-executor-backend")
IGNORED_SWITCHES = ("--trust-remote-code", "--disable-log-requests", "--disable-log-stats",
                    "--enable-auto-tool-choice", "--disable-fastapi-docs", "--enable-log-requests",
                    "--disable-frontend-multiprocessing", "--disable-custom-all-reduce", "--skip-tokenizer-init")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)\s*$")
_MULTIPLIER = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "K": 2**10, "M": 2**20, "G": 2**30}


def human_readable_int(text: str) -> int:
    """'32k' -> 32000, '32K' -> 32768, '25.6k' -> 25600, '4096' -> 4096 (vLLM's spelling of sizes)."""
    m = _SIZE.match(str(text))
    if not m:
        raise argparse.ArgumentTypeError(f"expected a whole number like 4096, 32k or 32K, got {text!r}")
    value = float(m.group(1)) * _MULTIPLIER[m.group(2)]
    if value != int(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of tokens")
    return int(value)


def add_ignored_arguments(parser: argparse.ArgumentParser) -> None:
    """Accept vLLM's performance-neutral flags (hidden from --help); `ignored(args)` lists what was given."""
    for flag in IGNORED_WITH_VALUE:
        parser.add_argument(flag, dest=_dest(flag), default=None, help=argparse.SUPPRESS)
    for flag in IGNORED_SWITCHES:
        parser.add_argument(flag, dest=_dest(flag), action="store_true", default=None, help=argparse.SUPPRESS)


def ignored(args: argparse.Namespace) -> list[str]:
    return [f for f in (*IGNORED_WITH_VALUE, *IGNORED_SWITCHES) if getattr(args, _dest(f), None) is not None]


def _dest(flag: str) -> str:
    return "ignored_" + flag.lstrip("-").replace("-", "_")


def expand_vllm_argv(argv: Sequence[str]) -> list[str]:
    """``--config FILE`` replaced by the flags its YAML holds (before the rest, so explicit flags win), and a
    pasted ``vllm serve MODEL`` turned into ``--model MODEL``."""
    argv = [a for arg in argv for a in (["--config", arg[len("--config="):]] if arg.startswith("--config=")
                                         else [arg])]
    pasted = len(argv) >= 3 and argv[1:3] == ["vllm", "serve"]
    if pasted:  # perfmodel predict vllm serve [MODEL] ...: a leading word is the model, as vLLM reads it
        rest = argv[3:]
        argv = [argv[0], "--model", *rest] if rest and not rest[0].startswith("-") else [argv[0], *rest]
    if argv.count("--config") > 1:
        raise UserError("--config is given more than once; vllm serve reads one config file")
    if "--config" in argv:
        i = argv.index("--config")
        if i == 0 or i + 1 >= len(argv):
            raise UserError("--config goes after the command and needs a file: a `vllm serve` YAML config whose "
                            "keys are flag names (perfmodel predict --config serve.yaml)")
        argv = argv[:1] + config_flags(argv[i + 1]) + argv[1:i] + argv[i + 2:]
    if pasted and not any(a in ("--model", "-m") or a.startswith("--model=") for a in argv):
        raise UserError("vllm serve needs a model: vllm serve MODEL ..., --model MODEL, or model: in --config")
    return argv


def config_flags(path: str) -> list[str]:
    """The flags a `vllm serve --config` YAML file stands for."""
    import yaml

    from perfmodel.cli.validate import input_file

    try:  # the checks every YAML flag gets: a regular file (no FIFO, /dev/zero), size, UTF-8, nesting, aliases
        input_file("yaml")(path)
    except argparse.ArgumentTypeError as exc:
        raise UserError(f"--config {exc}") from None
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UserError(f"--config {path}: not a readable YAML file ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"--config {path}: expected a mapping of flag names to values, as `vllm serve --config`")
    flags: list[str] = []
    for key, value in data.items():
        flag = "--" + str(key).replace("_", "-")
        if flag == "--config":
            raise UserError(f"--config {path}: a config file cannot name another (config: {value!r})")
        if isinstance(value, (dict, list)):
            raise UserError(f"--config {path}: {key}: expected one value, got a {type(value).__name__}")
        if key == "model":
            flags += ["--model", str(value)]
        elif value is True:
            flags.append(flag)
        elif value is False:  # a switch vLLM turns off: --no-X where the flag has that form, else its default
            flags += [f"--no-{flag[2:]}"] if flag in NEGATABLE else []
        elif value is None:
            continue
        else:
            flags += [flag, str(value)]
    return flags


# switches with a --no- form (argparse.BooleanOptionalAction in perfmodel.cli.options, as in vLLM)
NEGATABLE = ("--enable-chunked-prefill", "--enable-prefix-caching")
