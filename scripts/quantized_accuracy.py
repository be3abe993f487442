"""Per kernel family: fit its own coefficients on H200 sweep 2's quantized runs and cross-validate them.

Each family (perfmodel.cost.kernels row, or the fp8 KV cache) has coefficients only its runs pay, so it is fitted on its
own runs with every other coefficient held at the shipped H200 profile's values (which the bf16 runs fitted): the
bf16 predictions do not move. Per family: the pre-registered error (``predictions.jsonl``, written before the
sweep ran), in-sample, leave-one-run-out and leave-one-model-out median APE of offline throughput (tok/s; the KV
cache from the memory model, end to end, as docs/accuracy.md's first column). Writes the report and a profile with
every family's in-sample coefficients.

    python scripts/quantized_accuracy.py data/h200-sweep2/quantized-offline.jsonl \\
        --predictions data/h200-sweep2/predictions.jsonl --prior perfmodel/profiles/h200-sxm.yaml \\
        --report docs/accuracy-quantized.md --profile docs/h200-quantized-families.yaml
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from calibrate.report.check import compare  # noqa: E402
from calibrate.fit.offline import CoefficientFitter  # noqa: E402
from calibrate.fit.online import kernel_coefficients  # noqa: E402
from calibrate.fit.observations import load_observations  # noqa: E402
from calibrate.fit.profile_io import profile_document, write_yaml_atomic  # noqa: E402
from calibrate.records.store import load_records  # noqa: E402
from perfmodel.cost import kernels  # noqa: E402
from perfmodel.atomic import write_text_atomic  # noqa: E402
from perfmodel.cost.coefficients import load_profile  # noqa: E402

METRIC = "tokens_per_second"
FEW_RUNS = 3  # a coefficient informed by fewer runs than this is reported as such
SENSITIVITY = 0.01  # a run informs a coefficient when 10% more of it moves the run's predicted time by 1% or more


def informing_runs(coefficients, name: str, runs) -> int:
    """How many runs' predicted elapsed times move by ``SENSITIVITY`` when the coefficient grows by 10%
    (measured KV, the fit's own simulation)."""
    bumped = coefficients.replace(**{name: getattr(coefficients, name) * 1.1})
    moved = 0
    for o in runs:
        base = o.simulate(coefficients, kv_from="measured").metrics.elapsed_s
        if abs(o.simulate(bumped, kv_from="measured").metrics.elapsed_s / base - 1.0) >= SENSITIVITY:
            moved += 1
    return moved


def family(o) -> str:
    """The run's kernel family: its quantized linear layers' row, else its KV cache's dtype."""
    names = [f.name for f in kernels.families_used(o.model, o.precision, o.layout.tp) if f.quantized]
    return "+".join(names) or ("fp8_kv" if kernels.kv_cache_coefficients(o.precision) else "cublas")


def fit(cluster, prior, runs):
    names = kernel_coefficients(runs)
    return CoefficientFitter(cluster, prior, step_names=names, fit_memory=False).fit(runs)


def apes(cluster, coefficients, runs) -> dict[str, float]:
    frame = compare(runs, cluster, coefficients)
    frame = frame[frame["metric"] == METRIC]
    return dict(zip(frame["run_id"], (frame["predicted"] - frame["measured"]) / frame["measured"]))


def held_out(cluster, prior, runs, key) -> dict[str, float]:
    """Signed error of every run predicted by a fit on its family's runs of other ``key`` groups."""
    out: dict[str, float] = {}
    for group in sorted({key(o) for o in runs}):
        train = [o for o in runs if key(o) != group]
        test = [o for o in runs if key(o) == group]
        coefficients = fit(cluster, prior, train).coefficients_ if train else prior
        out.update(apes(cluster, coefficients, test))
    return out


def median_ape(errors: dict[str, float]) -> float:
    return float(np.median(np.abs(list(errors.values())))) if errors else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+")
    parser.add_argument("--predictions", required=True)
    parser.add_argument("--prior", required=True)
    parser.add_argument("--hardware", default="h200-sxm")
    parser.add_argument("--report", required=True)
    parser.add_argument("--profile", required=True)
    args = parser.parse_args(argv)

    records = [r for path in args.results for r in load_records(path)]
    cluster, observations = load_observations(records, args.hardware)
    prior = load_profile(args.prior).coefficients
    measured = {o.run_id: o.measured[METRIC] for o in observations}
    preregistered = {}
    for line in Path(args.predictions).read_text().splitlines():
        p = json.loads(line)
        if p["run_id"] in measured and p.get(METRIC):
            preregistered[p["run_id"]] = p[METRIC] / measured[p["run_id"]] - 1.0

    families: dict[str, list] = {}
    for o in observations:
        families.setdefault(family(o), []).append(o)
    combined, fitted, stderr, rows, details, few = prior, [], {}, [], [], []
    for name, runs in sorted(families.items()):
        print(f"{name}: {len(runs)} runs", file=sys.stderr)
        fitter = fit(cluster, prior, runs)
        names = fitter.fitted_
        combined = combined.replace(**{n: getattr(fitter.coefficients_, n) for n in names})
        fitted += list(names)
        stderr.update(fitter.stderr_)
        in_sample = apes(cluster, fitter.coefficients_, runs)
        loro = held_out(cluster, prior, runs, lambda o: o.run_id)
        lomo = held_out(cluster, prior, runs, lambda o: o.model_name)
        models = sorted({o.model_name for o in runs})
        pre = {r: preregistered[r] for r in in_sample if r in preregistered}
        informed = {n: informing_runs(fitter.coefficients_, n, runs) for n in names}
        few += [f"`{n}` ({informed[n]} runs)" for n in names if informed[n] < FEW_RUNS]
        coefficient_text = ", ".join(f"{n} = {getattr(fitter.coefficients_, n):.4g} (prior {getattr(prior, n):.4g}"
                                     + (f", ± {fitter.stderr_[n]:.2g}" if n in fitter.stderr_ else "")
                                     + f", {informed[n]} runs inform it)" for n in names)
        rows.append(f"| {name} | {len(runs)} | {len(models)} | {median_ape(pre):.1%} | {median_ape(in_sample):.1%} "
                    f"| {median_ape(loro):.1%} | {median_ape(lomo):.1%} | {coefficient_text} |")
        for o in runs:
            r = o.run_id
            details.append(f"| {name} | {r} | {o.model_name} | {int(np.mean(o.input_lens))}/"
                           f"{int(np.mean(o.output_lens))} x {len(o.input_lens)} | {measured[r]:,.0f} | "
                           f"{preregistered.get(r, float('nan')):+.1%} | {in_sample[r]:+.1%} | {loro[r]:+.1%} | "
                           f"{lomo[r]:+.1%} |")

    write_yaml_atomic(args.profile, profile_document(
        name=Path(args.profile).stem, gpu=cluster.gpu.name, coefficients=combined, fitted=fitted, stderr=stderr,
        prior=prior, source=f"{args.prior} + per-family fits on " + ", ".join(args.results),
        data={"runs": len(observations), "families": {k: len(v) for k, v in sorted(families.items())}},
        errors={}))
    command = "python scripts/quantized_accuracy.py " + " ".join(args.results) + (
        f" --predictions {args.predictions} --prior {args.prior} --report {args.report} --profile {args.profile}")
    text = "\n".join([
        "# perfmodel accuracy on H200 per quantized kernel family (vLLM 0.26)", "",
        f"{len(observations)} offline runs of H200 sweep 2 (data/h200-sweep2/PROVENANCE.md), selected by "
        "scripts/select_quantized_runs.py. Each family's own coefficients (perfmodel/cost/kernels.py `fitted`; the fp8 KV "
        "cache's: `kernels.FP8_KV_FITTED`) are fitted on its runs alone; every other coefficient stays at "
        f"{args.prior} (fitted on the bf16 runs, docs/accuracy.md), so no bf16 prediction moves. APE = |predicted - "
        "measured| / measured of offline throughput (tok/s), the KV cache from the memory model (end to end). "
        "Pre-registered: data/h200-sweep2/predictions.jsonl, written before the sweep ran with the profile of that "
        "day. Leave one run out / one model out: the family's coefficients refitted without the run / the model "
        "and the held-out runs predicted. Profile with every family's in-sample fit: " + args.profile + ".", "",
        "Regenerate with:", "", "    " + command, "",
        "| family | runs | models | pre-registered | in-sample | leave one run out | leave one model out | "
        "fitted coefficients (in-sample) |",
        "|---|---:|---:|---:|---:|---:|---:|---|", *rows, "",
        "A run informs a coefficient when 10% more of it moves the run's predicted time by 1% or more. "
        + (("Informed by fewer than 3 runs (read their values and the errors they drive with care): "
            + ", ".join(few) + ".") if few else "Every coefficient is informed by at least 3 runs."), "",
        "## per run (signed error of offline throughput)", "",
        "| family | run | model | in/out x n | measured tok/s | pre-registered | in-sample | leave run out | "
        "leave model out |",
        "|---|---|---|---|---:|---:|---:|---:|---:|", *details, ""])
    notes = Path(args.report).with_name(Path(args.report).stem + "-notes.md")
    if notes.exists():
        text += "\n" + notes.read_text()
    write_text_atomic(args.report, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
