"""Fuzz every subcommand: generated arguments and file contents either succeed or fail in one line, exit 2.

Each command starts from a small argument list that succeeds (a tiny workload, so a success costs well under a
second); hypothesis then changes one thing: a number flag gets NaN, inf, a negative, zero, a huge or a
non-numeric value; a file argument gets random bytes, non-UTF-8 text, a truncated or deeply nested
YAML/JSON/JSONL/CSV document or a well-formed one of the wrong shape; a path becomes a folder, a missing file
or a file under a file; or a stray token is added. The command runs in process through ``perfmodel.cli.main``.
Passing: exit 0, or exit 2 with exactly one stderr line ``perfmodel: error: ...``; any exception escaping
``main`` (a traceback) fails. Derandomized (tests/conftest.py), bounded by ``EXAMPLES`` per command.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perfmodel.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = 40  # per command; 16 commands (and 40 each for the HF cache and bench-JSON tests below)
SMALL = ["--hardware", "h200-sxm", "--model", "llama-3.1-8b", "--num-prompts", "10", "--input-len", "16",
         "--output-len", "8"]
SWEEP = """name: fuzz
defaults: {dummy_weights: true, max_model_len: 512, hardware: h200-sxm, seed: 0}
groups:
  - name: g
    model: llama-3.1-8b
    input_len: 16
    output_len: 8
    num_prompts: 4
"""

# what the one slot of a command may be turned into; "{name}" is a file of ``files()``
NUMBERS = ("nan", "NaN", "inf", "-inf", "-1", "0", "-0", "1e309", "99999999999999999999", "1.5", "abc", "",
           "0x10", "1e-300", "-2147483649", "18446744073709551616", "3000000", "1_0", " 2", "1e6",
           # values that reach job scripts: quotes, newlines, command substitution, backticks
           "a b", "a\nb", "'", '"', "$(touch PWNED)", "`touch PWNED`", "ib0;id", "16777216", "1,2,3,0")
PATHS = ("{dir}", "{missing}", "{under_file}", "/dev/null", "{binary}", "{latin1}", "{empty}")
# small valid counts, or far past any cap (valid mid-size values would only make successes slow)
INTEGERS = st.one_of(st.integers(0, 4), st.integers(-2**80, -1), st.integers(2**40, 2**80))
TOKENS = ("--bogus", "-x", "--gpus", "--", "-tp", "nan", "--format=xml", "--help-me", "%s", "\x00")


def _command(name: str, argv: list[str], numbers: tuple[str, ...], files: dict[str, str]):
    """argv that succeeds; number flags to break; file slots (flag or positional index) -> format."""
    return pytest.param(argv, numbers, files, id=name)


COMMANDS = [
    _command("predict", ["predict", *SMALL, "--gpus", "1", "--simulate-top", "1", "--format", "json"],
             ("--gpus", "-tp", "-pp", "--num-prompts", "--input-len", "--output-len", "--max-model-len",
              "--max-num-seqs", "--max-num-batched-tokens", "--gpu-memory-utilization", "--block-size",
              "--simulate-top", "--static-batch-size"),
             {"--model": "json", "--hardware": "yaml", "--calibration": "yaml"}),
    _command("simulate", ["simulate", *SMALL, "--format", "csv"],
             ("-tp", "-pp", "-dp", "--num-prompts", "--input-len", "--output-len", "--input-sigma", "--output-sigma",
              "--request-rate", "--burstiness", "--max-concurrency", "--seed", "--max-model-len",
              "--kv-offload-host-fraction"),
             {"--model": "json", "--hardware": "yaml", "--calibration": "yaml", "--trace": "csv",
              "--timeline": "out"}),
    _command("simulate-lognormal", ["simulate", *SMALL, "--output-dist", "lognormal", "--format", "json"],
             ("--output-sigma", "--input-sigma", "--seed", "--request-rate"), {"--trace": "jsonl"}),
    _command("compare", ["compare", *SMALL, "--plot", "", "--format", "json"],
             ("-tp", "-dp", "--num-prompts", "--output-sigma", "--seed", "--max-concurrency", "--static-batch-size"),
             {"--model": "json", "--hardware": "yaml", "--trace": "csv"}),
    _command("plan", ["plan", *SMALL, "--request-rate", "1", "--gpus-max", "1", "--workers", "1", "--format", "json"],
             ("--request-rate", "--ttft-p99", "--tpot-p99", "--gpus-max", "--num-prompts", "--seed",
              "--burstiness", "--output-sigma"),
             {"--model": "json", "--hardware": "yaml", "--calibration": "yaml"}),
    _command("hardware-show", ["hardware", "show", "h200-sxm"], (), {0: "yaml"}),
    _command("models-list", ["models", "list"], (), {}),
    _command("calibrate-run", ["calibrate", "run", "{sweep}", "--results", "{new}", "--dry-run"],
             ("--engine-timeout",), {0: "yaml", "--results": "out"}),
    _command("calibrate-import", ["calibrate", "import", "{bench}", "--results", "{new}", "--model", "tiny-llama",
                                  "--input-len", "32", "--output-len", "16"],
             ("-tp", "-pp", "--max-num-seqs", "--max-model-len", "--input-len", "--output-len"),
             {0: "json", "--results": "out"}),
    _command("calibrate-slurm", ["calibrate", "slurm", "{sweep}", "--cluster", "taiwania2", "--account", "a",
                                 "--partition", "p", "--out", "{newdir}"],
             ("--time",), {0: "yaml", "--cluster": "yaml", "--out": "outdir"}),
    _command("calibrate-predict", ["calibrate", "predict", "{sweep}", "--hardware", "h200-sxm", "--out", "{new}"],
             (), {0: "yaml", "--calibration": "yaml", "--hardware": "yaml", "--out": "out"}),
    _command("calibrate-fit", ["calibrate", "fit", "{results}", "--hardware", "cpu-host", "--out", "{new}"],
             ("--regularization",), {0: "jsonl", "--prior": "yaml", "--out": "out"}),
    _command("calibrate-check", ["calibrate", "check", "{results}", "--hardware", "cpu-host", "--cv", "none"],
             (), {0: "jsonl", "--calibration": "yaml", "--prior": "yaml", "--notes": "text", "--report": "out"}),
    _command("pareto", ["pareto", "--hardware", "h200-sxm", "--model", "llama-3.1-8b", "--gpus", "1",
                        "--max-num-seqs-list", "1,4", "--input-len", "16", "--output-len", "8", "--max-model-len",
                        "512", "--format", "json"],
             ("--gpus", "--input-len", "--output-len", "--seed", "--max-model-len", "--max-num-seqs-list",
              "--max-num-seqs", "--gpu-memory-utilization"),
             {"--model": "json", "--hardware": "yaml", "--calibration": "yaml", "--plot": "out"}),
    _command("predict-config", ["predict", "--config", "{config}", "--hardware", "h200-sxm", "--gpus", "1",
                                "--simulate-top", "0", "--format", "json"],
             ("--gpus", "--max-num-seqs"), {"--config": "config"}),
    _command("predict-emit-sbatch", ["predict", "--hardware", "taiwania2", "--model", "llama-3.1-8b", "--gpus", "16",
                                     "-tp", "8", "-pp", "2", "--num-prompts", "10", "--input-len", "16",
                                     "--output-len", "8", "--simulate-top", "0", "--emit-sbatch", "{new}",
                                     "--account", "a", "--partition", "p"],
             ("--time", "--cpus-per-task", "--account", "--partition", "--network-interface", "--module",
              "--env-setup"),
             {"--emit-sbatch": "out"}),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("fuzz")
    (d / "sweep.yaml").write_text(SWEEP)
    (d / "folder").mkdir()
    (d / "binary").write_bytes(bytes(range(256)) * 4)
    (d / "latin1").write_bytes("name: caf\xe9\n".encode("latin-1"))
    (d / "empty").write_bytes(b"")
    (d / "config.yaml").write_text(SAMPLES["config"])
    return {"sweep": str(d / "sweep.yaml"), "config": str(d / "config.yaml"), "dir": str(d / "folder"), "missing": str(d / "no" / "such"),
            "under_file": str(d / "binary" / "x"), "binary": str(d / "binary"), "latin1": str(d / "latin1"),
            "empty": str(d / "empty"), "results": str(ROOT / "data/cpu/results.jsonl"),
            "bench": str(ROOT / "tests/fixtures/vllm_results/bench_throughput_tiny-llama_cpu.json"),
            "root": str(d)}


# -- file contents ------------------------------------------------------------------------------------------------
def _nested(depth: int, kind: str) -> str:
    if kind == "json":
        return '{"a": ' * depth + "1" + "}" * depth
    if kind == "yaml-flow":
        return "[" * depth + "]" * depth
    depth = min(depth, 300)  # block style grows as depth**2 bytes
    return "".join(f"{'  ' * i}k{i}:\n" for i in range(depth)) + "  " * depth + "1\n"


_scalars = st.one_of(st.integers(-2**70, 2**70), st.floats(), st.text(max_size=8), st.booleans(), st.none())
_documents = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.sampled_from(["name", "model", "groups", "coefficients", "gpu",
                                                             "peak_flops_per_s", "runs", "config", "metrics",
                                                             "run_id", "schema_version", "hidden_size"]),
                                            inner, max_size=4), max_leaves=8)
SAMPLES = {"yaml": SWEEP, "json": json.dumps({"hidden_size": 4096, "num_attention_heads": 32, "num_hidden_layers": 2}),
           "jsonl": (ROOT / "data/cpu/results.jsonl").read_text().split("\n")[0] + "\n",
           "csv": "arrival_s,input_len,output_len\n0,16,8\n0.5,32,4\n", "text": "# notes\n",
           "config": "model: llama-3.1-8b\nmax-num-seqs: 16\nenable-chunked-prefill: false\nmax_model_len: 4096\n"}


@st.composite
def contents(draw, fmt: str) -> bytes:
    """Bytes for a file slot of format ``fmt``."""
    sample = SAMPLES.get(fmt, SWEEP)
    how = draw(st.sampled_from(["bytes", "latin1", "truncated", "nested", "shape", "numbers", "valid"]))
    if how == "bytes":
        return draw(st.binary(max_size=300))
    if how == "latin1":
        return b"\xff\xfe" + sample.encode()
    if how == "truncated":
        return sample.encode()[: draw(st.integers(0, len(sample)))]
    if how == "nested":
        return _nested(draw(st.sampled_from([70, 1000, 100_000])), draw(st.sampled_from(["json", "yaml-flow",
                                                                                        "yaml-block"]))).encode()
    if how == "shape":
        doc = json.dumps(draw(_documents), allow_nan=True)
        return (doc + "\n" + doc + "\n").encode() if fmt == "jsonl" else doc.encode()
    if how == "numbers":
        value = draw(st.sampled_from(["NaN", "Infinity", "-1", "1e999", "-9e99", "0"]))
        return sample.replace("16", value).replace("4096", value).replace("0.5", value).encode()
    return sample.encode()


_counter = itertools.count()


@st.composite
def mutations(draw, numbers: tuple[str, ...], file_slots: dict):
    """(slot, value, content): slot is a flag, a positional index, or "token" (append ``value``)."""
    kinds = ["token"] + (["number", "number"] if numbers else []) + (["file", "file", "path"] if file_slots else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "number":
        value = draw(st.one_of(st.sampled_from(NUMBERS), INTEGERS.map(str)))
        return draw(st.sampled_from(numbers)), value, None
    if kind == "token":
        return "token", draw(st.sampled_from(TOKENS)), None
    slot = draw(st.sampled_from(sorted(file_slots, key=str)))
    fmt = file_slots[slot]
    if kind == "path" or fmt in ("out", "outdir"):
        return slot, draw(st.sampled_from(PATHS)), None
    return slot, None, draw(contents(fmt))


def _apply(argv: list[str], mutation, files: dict[str, str]) -> list[str]:
    """``argv`` with one slot changed (``mutation`` None: as is) and its ``{name}``s filled in."""
    argv = list(argv)
    n = next(_counter)
    names = {**files, "new": f"{files['root']}/out-{n}.jsonl", "newdir": f"{files['root']}/dir-{n}"}
    slot, value, content = mutation or (None, None, None)
    if content is not None:
        value = f"{files['root']}/in-{n}"
        Path(value).write_bytes(content)
    if slot is None:
        pass
    elif slot == "token":
        argv.append(value)
    elif isinstance(slot, int):  # the positional after the command words
        start = 2 if argv[0] in ("calibrate", "hardware") else 1
        argv[start + slot] = value
    elif slot in argv:
        argv[argv.index(slot) + 1] = value
    else:
        argv += [slot, value]
    return [a.format(**names) if "{" in a else a for a in argv]


def run_cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(argv)
    return code, err.getvalue()


@pytest.mark.parametrize("argv, numbers, file_slots", COMMANDS)
def test_fuzz_every_command_succeeds_or_fails_in_one_line(files, argv, numbers, file_slots):
    base = _apply(argv, None, files)
    assert run_cli(base)[0] == 0, base  # the unmutated command succeeds: mutations test what they change

    @settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow,
                                                              HealthCheck.function_scoped_fixture])
    @given(mutations(numbers, file_slots))
    def check(mutation):
        args = _apply(argv, mutation, files)
        if os.environ.get("FUZZ_DEBUG"):
            print(args, file=sys.__stderr__, flush=True)
        code, err = run_cli(args)
        assert code in (0, 2), (args, code, err)
        if code == 2:
            lines = err.splitlines()
            assert len(lines) == 1 and lines[0].startswith("perfmodel: error: "), (args, err)
            assert "Traceback" not in err
        script = args[args.index("--emit-sbatch") + 1] if "--emit-sbatch" in args else None
        if code == 0 and script:  # a written job script is valid bash (its values checked or quoted)
            assert subprocess.run(["bash", "-n", script], capture_output=True).returncode == 0, args
        assert not Path("PWNED").exists() and not Path(files["root"], "PWNED").exists()

    check()


# -- the HF cache resolver: whatever a cache holds, a model id resolves, is unknown, or fails in one line -------
@pytest.mark.parametrize("unused", [None], ids=["hf-cache"])
def test_fuzz_hf_cache_resolver(tmp_path, monkeypatch, unused):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    config = (ROOT / "perfmodel/catalog/llama-3.1-8b.json").read_bytes()

    @settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow,
                                                              HealthCheck.function_scoped_fixture])
    @given(ref=st.one_of(st.none(), st.binary(max_size=64), st.sampled_from([b"abc\n", b"../../x", b"", b"."])),
           snapshot=st.sampled_from(["abc", "def", ""]),
           content=st.one_of(st.just(config), st.binary(max_size=200), contents("json")))
    def check(ref, snapshot, content):
        repo = tmp_path / f"models--org--m{next(_counter)}"
        (repo / "refs").mkdir(parents=True)
        if ref is not None:
            (repo / "refs" / "main").write_bytes(ref)
        if snapshot:
            (repo / "snapshots" / snapshot).mkdir(parents=True)
            (repo / "snapshots" / snapshot / "config.json").write_bytes(content)
        code, err = run_cli(["predict", "--model", f"org/{repo.name[len('models--org--'):]}", "--hardware",
                             "h200-sxm", "--gpus", "1", "--simulate-top", "0", "--num-prompts", "10",
                             "--format", "json"])
        assert code in (0, 2), (ref, snapshot, err)
        if code == 2:
            assert len(err.splitlines()) == 1 and err.startswith("perfmodel: error: "), err

    check()


# -- calibrate import of vllm bench JSON: any value in any field is imported as a valid record or refused -------
BENCH_FILES = ("bench_serve_tiny-llama_cpu_conc2.json", "bench_throughput_tiny-llama_cpu.json")
_json_values = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=6),
                         st.lists(st.integers(-5, 5), max_size=3), st.dictionaries(st.text(max_size=3),
                                                                                  st.integers(), max_size=2))


@pytest.mark.parametrize("bench", BENCH_FILES)
def test_fuzz_import_vllm_bench_json(tmp_path, bench):
    from calibrate.records.record_schema import record_problem
    from calibrate.records.store import load_records

    doc = json.loads((ROOT / "tests/fixtures/vllm_results" / bench).read_text())

    @settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow,
                                                              HealthCheck.function_scoped_fixture])
    @given(changes=st.dictionaries(st.sampled_from(sorted(doc)), _json_values, min_size=1, max_size=3))
    def check(changes):
        n = next(_counter)
        src, results = tmp_path / f"in-{n}.json", tmp_path / f"out-{n}.jsonl"
        src.write_text(json.dumps({**doc, **changes}))
        code, err = run_cli(["calibrate", "import", str(src), "--results", str(results), "--model", "llama-3.1-8b",
                             "--input-len", "32", "--output-len", "16"])
        assert code in (0, 2), (changes, err)
        if code == 2:
            assert len(err.splitlines()) == 1 and err.startswith("perfmodel: error: "), (changes, err)
            assert f"in-{n}.json" in err, err  # the file is named
        else:  # what import accepts, fit and check accept (one schema)
            assert all(record_problem(r) is None for r in load_records(results)), changes

    check()
