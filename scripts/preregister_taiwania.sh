#!/usr/bin/env bash
# Pre-registered blind predictions for issue 10 (Taiwania 2, vLLM 0.7.0, TP8 x PP2; see
# sweeps/taiwania-preregistered.yaml), made before any of these runs' measurements is looked at.
#
#   scripts/preregister_taiwania.sh OUT_DIR          # a new folder: data/taiwania-preregistered-<date>
#                                                      (an existing set is never written over)
#   PERFMODEL=/path/to/perfmodel scripts/preregister_taiwania.sh   # another install (default .venv/bin/perfmodel)
#   CHANGES=docs/FILE.md scripts/preregister_taiwania.sh   # README.md says what changed since the previous set
#
# Writes, in OUT_DIR:
#   predictions.jsonl  `perfmodel calibrate predict` of the whole sweep, one line per run_id. If that command fails,
#                      every run is predicted on its own (a one-run sweep with the same run_id) and a run that
#                      fails gets a line with its "error" instead of stopping the others.
#   simulate.jsonl     per run, the equivalent `perfmodel simulate ... --format json` command and its output:
#                      {"run_id", "group", "command", "output": {...}} or, where it fails, "output": null, "error".
#   predict.log        what `calibrate predict` printed.
#   README.md          what, when, how: the commit of the model, the date, the profile used.
set -euo pipefail
cd "$(dirname "$0")/.."
PERFMODEL=${PERFMODEL:-.venv/bin/perfmodel}
PYTHON=${PYTHON:-$(dirname "$PERFMODEL")/python}
SWEEP=${SWEEP:-sweeps/taiwania-preregistered.yaml}  # another sweep: only to test this script
OUT=${1:?usage: scripts/preregister_taiwania.sh OUT_DIR (a new folder, e.g. data/taiwania-preregistered-$(date -u +%F))}
if [ -e "$OUT/predictions.jsonl" ]; then
  echo "error: $OUT already holds a pre-registered set; write a new one to a new folder" >&2
  exit 2
fi
CHANGES=${CHANGES:-}  # a committed Markdown file: what changed in the model since the previous set (into README.md)
HARDWARE=taiwania2
VLLM_VERSION=0.7.0

mkdir -p "$OUT"
start_s=$(date +%s)
status=ok
"$PERFMODEL" calibrate predict "$SWEEP" --hardware "$HARDWARE" --vllm-version "$VLLM_VERSION" \
  --out "$OUT/predictions.jsonl" >"$OUT/predict.log" 2>&1 || status=failed

"$PYTHON" - "$PERFMODEL" "$SWEEP" "$OUT" "$HARDWARE" "$VLLM_VERSION" "$status" "$start_s" "$CHANGES" <<'PY'
"""Per-run fallback for calibrate predict, the simulate lines, and the README (see the script's header)."""
import datetime as dt
import hashlib
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from calibrate.records.sweep import load_sweep

perfmodel, sweep_path, out, hardware, vllm_version, status, start_s, changes = sys.argv[1:]
out = Path(out)
sweep = load_sweep(sweep_path)


def run_cli(argv):
    """(returncode, stdout, the last lines of stderr) of `perfmodel ARGV`."""
    p = subprocess.run([perfmodel, *argv], capture_output=True, text=True)
    return p.returncode, p.stdout, "\n".join(p.stderr.strip().splitlines()[-5:])


def predict_one(run, tmp):
    """calibrate predict on a one-run sweep with the same run_id: its prediction, or its error."""
    engine = {k: v for k, v in run.engine.to_dict().items() if v is not None and v != {}}
    workload = {k: v for k, v in run.workload.to_dict().items() if k != "seed"}
    one = tmp / f"{run.run_id}.yaml"
    one.write_text(yaml.safe_dump({"name": sweep.name, "defaults": {**engine, **workload},
                                   "groups": [{"name": run.group}]}))
    assert load_sweep(one).runs[0].run_id == run.run_id, f"{run.group}: one-run sweep changed the run_id"
    argv = ["calibrate", "predict", str(one), "--hardware", hardware, "--vllm-version", vllm_version,
            "--out", str(tmp / f"{run.run_id}.jsonl")]
    code, _, err = run_cli(argv)
    if code == 0:
        return json.loads((tmp / f"{run.run_id}.jsonl").read_text().splitlines()[0])
    return {"run_id": run.run_id, "description": run.describe(), "hardware": hardware,
            "vllm_version": vllm_version, "error": err or f"exit status {code}"}


def simulate_argv(run):
    """The `perfmodel simulate` flags that describe the same engine and closed-loop workload."""
    e, w = run.engine, run.workload
    assert isinstance(w.input_len, int) and isinstance(w.output_len, int), "fixed lengths only"
    flags = [("--model", e.model), ("--hardware", hardware), ("--tensor-parallel-size", e.tensor_parallel_size),
             ("--pipeline-parallel-size", e.pipeline_parallel_size), ("--dtype", e.dtype),
             ("--quantization", e.quantization), ("--kv-cache-dtype", e.kv_cache_dtype),
             ("--vllm-version", vllm_version), ("--max-num-seqs", e.max_num_seqs),
             ("--max-num-batched-tokens", e.max_num_batched_tokens),
             ("--gpu-memory-utilization", e.gpu_memory_utilization), ("--max-model-len", e.max_model_len),
             ("--block-size", e.block_size), ("--input-len", w.input_len), ("--output-len", w.output_len),
             ("--num-prompts", w.num_prompts), ("--request-rate", f"{w.request_rate:g}"),
             ("--max-concurrency", w.max_concurrency), ("--seed", w.seed)]
    argv = ["simulate"] + [str(x) for flag, v in flags if v is not None for x in (flag, v)]
    return argv + (["--enforce-eager"] if e.enforce_eager else []) + ["--format", "json"]


def simulate_one(run):
    argv = simulate_argv(run)
    line = {"run_id": run.run_id, "group": run.group, "command": shlex.join(["perfmodel", *argv])}
    code, stdout, err = run_cli(argv)
    if code == 0:
        return {**line, "output": json.loads(stdout)}
    return {**line, "output": None, "error": err or f"exit status {code}"}


if status != "ok":
    with tempfile.TemporaryDirectory() as tmp:
        lines = [predict_one(run, Path(tmp)) for run in sweep.runs]
    (out / "predictions.jsonl").write_text("".join(json.dumps(p, sort_keys=True) + "\n" for p in lines))
predictions = [json.loads(s) for s in (out / "predictions.jsonl").read_text().splitlines()]
simulated = [simulate_one(run) for run in sweep.runs]
(out / "simulate.jsonl").write_text("".join(json.dumps(s, sort_keys=True) + "\n" for s in simulated))


def git(*args):
    return subprocess.run(["git", *args], capture_output=True, text=True).stdout.strip()


inside = out.resolve().is_relative_to(Path.cwd().resolve())  # the outputs themselves do not count as changes
dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", *([f":(exclude){out}"] if inside else []))
profiles = sorted({f"{p['profile']} (fitted on {p['profile_source']})" for p in predictions if "profile" in p})
failed_predict = [f'{p["run_id"]} ({p["description"]})' for p in predictions if "error" in p]
failed_sim = [f'{s["run_id"]} ({s["group"]})' for s in simulated if s["output"] is None]
elapsed_s = time.time() - int(start_s)
now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
predict_cmd = (f"perfmodel calibrate predict {sweep_path} --hardware {hardware} --vllm-version {vllm_version} "
               f"--out {out}/predictions.jsonl")
readme = f"""# Pre-registered blind predictions: Taiwania 2 (issue 10)

What: perfmodel's predictions for the {len(sweep.runs)} runs of `{sweep_path}` (sha256
`{hashlib.sha256(Path(sweep_path).read_bytes()).hexdigest()[:16]}`): Llama-3.1-405B-Instruct GPTQ-INT4
(catalog `llama-3.1-405b-gptq-int4`) and Command R+ GPTQ (catalog `command-r-plus-gptq`) on
{hardware}, vLLM {vllm_version} `vllm serve` (V0 engine), TP8 x PP2 with Ray, float16, closed loop at concurrency c
(4*c requests; 256 at c=128).

When: {now} (UTC), before any of these predictions was compared with a measurement of these
configurations, and blind: no published measurement of these models went into the model. The measurements
exist and are held back; `perfmodel calibrate check` on them later matches by `run_id`.

How: `scripts/preregister_taiwania.sh` at perfmodel commit `{git("rev-parse", "HEAD")}`
({"clean working tree" if not dirty else "uncommitted changes: " + "; ".join(dirty.splitlines())}),
in {elapsed_s:.0f} s. Profile: {"; ".join(profiles) or "none (every prediction failed)"}.

- `predictions.jsonl`: `{predict_cmd}` ({"one command" if status == "ok" else
  "that command failed, so each run was predicted on its own sweep of one run"}); one line per `run_id`.
  Failed: {", ".join(failed_predict) or "none"}.
- `simulate.jsonl`: per run, the equivalent `perfmodel simulate ... --format json` command and its JSON output
  (`--distributed-executor-backend` has no simulate flag; the cluster's Ray setup is the model's).
  Failed: {", ".join(failed_sim) or "none"}.
- `predict.log`: what `calibrate predict` printed.

Earlier sets, made by earlier models and superseded, were never compared with a measurement either:
each stays in its own folder (`data/taiwania-preregistered*/`), with the commit of the model that made it.
"""
if changes:
    readme += f"""
What changed in the model since the previous set (`{changes}`, committed with the model):

{Path(changes).read_text().strip()}
"""
(out / "README.md").write_text(readme)
print(f"{len(predictions)} predictions ({len(failed_predict)} errors), {len(simulated)} simulate lines "
      f"({len(failed_sim)} errors) -> {out} in {elapsed_s:.0f} s")
PY
