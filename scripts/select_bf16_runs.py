"""Copy the runs of H200 sweep 2 that the H200 profile's step-cost fit can use into one results file.

The fit prices weights and the KV cache in the model's dtype; sweep 2 (data/h200-sweep2/) also measured
quantized kernels (issue 14's families, not fitted yet) and a prefix-cached shared prompt (no prefix-cache
term in the step cost). Kept, verbatim: status ok, offline, no ``quantization``, KV cache dtype auto, and no
shared prefix that prefix caching could serve (caching off, or no shared prefix). The newest record of each run
id decides, as in ``calibrate.records.store.load_records(latest_only=True)``.

    python scripts/select_bf16_runs.py data/h200-sweep2/bf16-offline.jsonl data/h200-sweep2/results-offline.jsonl \\
        data/h200-sweep2/results-prefix.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from perfmodel.atomic import write_text_atomic  # noqa: E402


def usable(record: dict) -> bool:
    engine, workload = record["config"]["engine"], record["config"]["workload"]
    cached_prefix = (workload.get("shared_prefix_len") or 0) > 0 and engine.get("enable_prefix_caching") is not False
    return (record.get("status") == "ok" and engine.get("mode") == "offline" and not engine.get("quantization")
            and engine.get("kv_cache_dtype") in (None, "auto") and not cached_prefix)


def main(out: str, *sources: str) -> int:
    return copy_runs(usable, out, *sources)


def copy_runs(keep, out: str, *sources: str) -> int:
    """Each record that ``keep`` accepts, its own line byte for byte; the last line of a run id decides (as
    ``latest_only``). scripts/select_quantized_runs.py copies with its own rule."""
    lines: dict[str, str] = {}
    for path in sources:
        for line in Path(path).read_text().splitlines():
            record = json.loads(line)
            lines.pop(record["run_id"], None)
            lines[record["run_id"]] = line
    kept = {run_id: line for run_id, line in lines.items() if keep(json.loads(line))}
    write_text_atomic(out, "".join(line + "\n" for line in kept.values()))
    print(f"{len(kept)} runs -> {out}: " + ", ".join(kept))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
