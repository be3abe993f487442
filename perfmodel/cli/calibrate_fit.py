"""``perfmodel calibrate fit`` and ``perfmodel calibrate check``."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from perfmodel.atomic import write_text_atomic
from perfmodel.cli.intervals import add_interval_argument, level
from perfmodel.cli.options import HARDWARE, vllm_version
from perfmodel.cli.validate import input_file, input_file_or_dir, integer, max_workers, output_file, real, report_path
from perfmodel.errors import UserError

PROFILE = input_file("yaml")
RESULTS = input_file_or_dir("jsonl")


def add_fit_subcommands(sub: argparse._SubParsersAction) -> None:
    fit = sub.add_parser("fit", help="fit the model's coefficients to measured runs; write a profile YAML")
    fit.add_argument("results", nargs="+", type=RESULTS, help="results JSONL file(s) written by 'calibrate run' or 'import'")
    fit.add_argument("--hardware", required=True, type=HARDWARE,
                     help="GPU or cluster the runs were measured on (e.g. h200-sxm)")
    fit.add_argument("--out", default=None, type=output_file, help="profile YAML to write (default: <hardware>-profile.yaml)")
    fit.add_argument("--prior", default=None, type=PROFILE, help="profile to start from and regularise toward (default: datasheet)")
    fit.add_argument("--regularization", type=real(0, 1e6), default=None,
                     help="pull toward the prior, per relative unit of each coefficient (default: 0.1 offline, "
                          "0.02 online); with --anchors, the weight of the anchors' penalties (default 1)")
    _add_anchors(fit)
    fit.add_argument("--allow-other-hardware", action="store_true",
                     help="keep runs measured on another GPU than --hardware (warned)")
    fit.set_defaults(handler=cmd_fit)

    serve = sub.add_parser("fit-serving", help="fit a profile's served-request coefficients on online runs, the "
                                               "rest kept (docs/online-model.md); rewrites the profile")
    serve.add_argument("results", nargs="+", type=RESULTS, help="results JSONL file(s) with online runs")
    serve.add_argument("--hardware", required=True, type=HARDWARE)
    serve.add_argument("--profile", required=True, type=PROFILE, help="profile YAML to start from and rewrite")
    serve.add_argument("--exclude-quantization", action="append", default=[],
                       help="leave out runs of this --quantization (repeatable), e.g. a kernel the profile does "
                            "not price yet")
    serve.add_argument("--cv", default="kfold,model", help="cross-validation groupings, comma-separated, or none")
    serve.set_defaults(handler=cmd_fit_serving)

    pred = sub.add_parser("predict", help="predict every run of a sweep before measuring it (JSON lines)")
    pred.add_argument("sweep", type=input_file("yaml"), help="sweep YAML")
    pred.add_argument("--hardware", required=True, type=HARDWARE, help="GPU or cluster the runs will be measured on")
    pred.add_argument("--calibration", default=None, type=PROFILE, help="profile (default: the one shipped for the GPU)")
    pred.add_argument("--vllm-version", default=None, type=vllm_version,
                      help="vLLM release whose defaults to assume (default: the hardware's, else 0.26)")
    pred.add_argument("--out", required=True, type=output_file, help="predictions file to write (JSON lines, one per run)")
    add_interval_argument(pred)
    pred.set_defaults(handler=cmd_predict_sweep)

    check = sub.add_parser("check", help="predicted vs measured per run, with cross-validation and a report")
    check.add_argument("results", nargs="+", type=RESULTS)
    check.add_argument("--hardware", required=True, type=HARDWARE)
    check.add_argument("--calibration", default=None, type=PROFILE,
                       help="profile to check (default: fit on these results, and cross-validate)")
    check.add_argument("--prior", default=None, type=PROFILE, help="prior profile for the fits (default: datasheet)")
    check.add_argument("--cv", default="model,layout",
                       help="cross-validation: leave one model / layout out, 4-fold by run (kfold), any of them "
                            "comma-separated, or none (default: model,layout)")
    check.add_argument("--report", default=None, type=report_path,
                       help="Markdown file to write (a parity PNG and a per-run CSV go beside it), or a folder "
                            "for report.md")
    check.add_argument("--notes", default=None, type=input_file("text"), help="Markdown appended to the report (kept across regenerations)")
    check.add_argument("--title", default="perfmodel accuracy")
    _add_anchors(check)
    check.add_argument("--workers", type=integer(1, max_workers()), default=None,
                       help="cross-validation folds fitted at once, one process each (default: one per core)")
    check.add_argument("--allow-other-hardware", action="store_true",
                       help="keep runs measured on another GPU than --hardware (warned)")
    check.set_defaults(handler=cmd_check)

    from perfmodel.cli.calibrate_uncertainty import register as register_uncertainty

    register_uncertainty(sub)


def _add_anchors(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--anchors", default=None, type=PROFILE,
                        help="anchor set (YAML, data/anchors/<gpu>.yaml; perfmodel/cost/anchors.py): the fits' priors "
                             "become its anchors, weighted by their stated sd, and coefficients at a bound or more "
                             "than 2 sd from their anchor are reported as findings (default: no anchors, a pull "
                             "toward --prior)")


def _anchors(args: argparse.Namespace):
    from perfmodel.cost.anchors import load_anchors

    return load_anchors(args.anchors) if getattr(args, "anchors", None) else None


def _print_findings(findings) -> None:
    if findings:
        print("findings (a coefficient at a bound or far from its anchor; docs/accuracy-notes.md):")
        for line in findings:
            print(f"  {line}")


def _load(args: argparse.Namespace):
    from calibrate.fit.observations import load_observations
    from calibrate.records.store import load_records

    from hardware import load_hardware

    load_hardware(args.hardware)  # its errors are its own, not a record's
    records = []
    for path in args.results:
        if not Path(path).exists():
            raise UserError(f"results file {path} does not exist")
        from calibrate.records.record_schema import check_records

        check_records(load_records(path), str(path), UserError)  # the schema import checks too
        records += load_records(path, latest_only=True)
    from calibrate.records.record_hardware import check_record_hardware
    from hardware import load_hardware

    for warning in check_record_hardware(records, load_hardware(args.hardware),
                                         allow_other=getattr(args, "allow_other_hardware", False)):
        print(warning, file=sys.stderr)
    try:
        return load_observations(records, args.hardware)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:  # a field of the wrong shape
        raise UserError(f"{', '.join(map(str, args.results))}: a record does not follow the results schema "
                        f"(calibrate/README.md): {type(exc).__name__}: {exc}") from None


def _prior(path: str | None):
    from perfmodel.cost.coefficients import Coefficients, load_profile

    return load_profile(path).coefficients if path else Coefficients()


def _progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def cmd_fit(args: argparse.Namespace) -> int:
    from calibrate.report.check import compare, summarize
    from calibrate.fit.offline import CoefficientFitter
    from calibrate.fit.profile_io import profile_document, write_yaml_atomic
    from perfmodel.cost.coefficients import load_profile

    cluster, observations = _load(args)
    prior = _prior(args.prior)
    _progress(f"fitting {len(observations)} runs on {cluster.gpu.name}")
    anchors = _anchors(args)
    prior_fitted = load_profile(args.prior).fitted if args.prior else ()
    fitter = CoefficientFitter(cluster, prior, regularization=args.regularization, progress=_progress,
                               anchors=anchors, prior_fitted=prior_fitted).fit(observations)
    frame = compare(observations, cluster, fitter.coefficients_)
    summary = {s.metric: {"median_ape": round(s.median_ape, 4), "p90_ape": round(s.p90_ape, 4), "runs": s.num_runs}
               for s in summarize(frame)}
    out = Path(args.out or f"{cluster.gpu.name}-profile.yaml")
    doc = profile_document(
        name=out.stem, gpu=cluster.gpu.name, coefficients=fitter.coefficients_, fitted=fitter.fitted_,
        stderr=fitter.stderr_, prior=prior, source=", ".join(str(p) for p in args.results),
        data=_data_summary(observations), errors={"in_sample": summary}, anchors=anchors,
        anchors_source=args.anchors, findings=fitter.findings_)
    write_yaml_atomic(out, doc)
    print(f"fitted {len(fitter.fitted_)} coefficients on {len(observations)} runs -> {out}")
    for name in fitter.fitted_:
        value = getattr(fitter.coefficients_, name)
        se = fitter.stderr_.get(name)
        anchor = f"   anchor {anchors[name].value:.4g} ± {anchors[name].sd:.2g}" if anchors else ""
        print(f"  {name:32s} {value:12.5g}" + (f"  ± {se:.3g}" if se is not None else "") + anchor)
    for metric, s in summary.items():
        print(f"  in-sample {metric:26s} median APE {100 * s['median_ape']:.1f}%  p90 {100 * s['p90_ape']:.1f}%")
    _print_findings(fitter.findings_)
    return 0


def cmd_fit_serving(args: argparse.Namespace) -> int:
    from calibrate.report.check import compare
    from calibrate.fit.serving import fit_serving, update_profile
    from calibrate.report.serving import cross_validate_serving, error_summary

    cluster, observations = _load(args)
    online = [o for o in observations if o.mode == "online"
              and (o.scenario.precision.quantization or "none") not in args.exclude_quantization]
    if not online:
        raise UserError("no online runs to fit the serving coefficients on")
    start = _prior(args.profile)
    _progress(f"fitting the serving coefficients on {len(online)} online runs")
    fit = fit_serving(online, cluster, start)
    errors = {"in_sample": error_summary(compare(online, cluster, fit.coefficients))}
    for by in [g for g in args.cv.split(",") if g and g != "none"]:
        errors[f"leave_{by}_out"] = error_summary(cross_validate_serving(online, cluster, start, by,
                                                                         progress=_progress))
    options = {"exclude_quantization": list(args.exclude_quantization), "cv": args.cv}
    update_profile(args.profile, fit, source=", ".join(str(p) for p in args.results), options=options,
                   errors=errors, runs=online)
    print(f"fitted {', '.join(fit.fitted)} on {len(online)} online runs -> {args.profile}")
    for name in fit.fitted:
        print(f"  {name:32s} {getattr(fit.coefficients, name):12.5g}")
    for fold, summary in errors.items():
        for metric in ("ttft_s_mean", "tpot_s_mean"):
            if metric in summary:
                print(f"  {fold:18s} {metric:12s} median APE {100 * summary[metric]['median_ape']:.1f}%")
    return 0


def cmd_predict_sweep(args: argparse.Namespace) -> int:
    from calibrate.report.predict_sweep import predict_sweep, write_predictions
    from hardware import load_hardware
    from perfmodel.cost.coefficients import default_profile, load_profile

    profile = load_profile(args.calibration) if args.calibration else default_profile(
        load_hardware(args.hardware).gpu.name)
    predictions = predict_sweep(args.sweep, args.hardware, profile, vllm_version=args.vllm_version,
                                level=level(args))
    write_predictions(predictions, args.out)
    for p in predictions:
        print(f"{p['run_id']}  {p['description']:70s}  {p.get('output_tokens_per_second', float('nan')):10,.0f} out tok/s"
              f"  KV {p['kv_cache_tokens']:,} tokens")
    print(f"{len(predictions)} predictions ({profile.name}) -> {args.out}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    import pandas as pd

    from calibrate.report.check import GROUPINGS, KFOLDS, compare, cross_validate, summarize
    from calibrate.fit.offline import CoefficientFitter
    from calibrate.report.accuracy import markdown_report, parity_plot, summary_table

    cluster, observations = _load(args)
    groupings = [] if args.cv == "none" else [g.strip() for g in args.cv.split(",") if g.strip()]
    unknown = [g for g in groupings if g not in GROUPINGS]
    if unknown:
        raise UserError(f"--cv takes {', '.join(GROUPINGS)} or none; got {', '.join(unknown)}")
    frames: dict[str, pd.DataFrame] = {}
    findings: list[str] = []
    if args.calibration:
        from perfmodel.cost.coefficients import load_profile

        coefficients = load_profile(args.calibration).coefficients
        findings = _profile_findings(args.calibration)
        frames[f"profile {args.calibration}"] = compare(observations, cluster, coefficients)
        groupings = []
    else:
        prior = _prior(args.prior)
        anchors = _anchors(args)
        _progress(f"fitting {len(observations)} runs (in-sample)")
        fitter = CoefficientFitter(cluster, prior, progress=_progress, anchors=anchors).fit(observations)
        findings = fitter.findings_
        frames["in-sample fit"] = compare(observations, cluster, fitter.coefficients_)
        for by in groupings:
            if len({GROUPINGS[by](o) for o in observations}) < 2:
                _progress(f"skipping {by} cross-validation: only one {by} group in the data")
                continue
            label = f"{KFOLDS}-fold" if by == "kfold" else f"leave-one-{by}-out"
            frames[label] = cross_validate(observations, cluster, prior, by=by, progress=_progress,
                                           workers=args.workers, anchors=anchors)
    for label, frame in frames.items():
        print(f"\n{label}")
        print(summary_table(summarize(frame)))
    _print_findings(findings)
    if args.report:
        report = Path(args.report)
        if report.suffix != ".md":
            report = report / "report.md"
        plot = parity_plot(frames, report.with_name(f"{report.stem}-parity.png"), title=args.title)
        runs = pd.concat([f.assign(fold_kind=k) for k, f in frames.items()], ignore_index=True)
        write_text_atomic(report.with_name(f"{report.stem}-runs.csv"), runs.to_csv(index=False))
        notes = Path(args.notes).read_text() if args.notes else ""
        if findings:
            notes = "## Findings of the in-sample fit\n\nCoefficients at a bound or more than 2 sd from their " \
                    "anchor (the notes say why):\n\n" + "".join(f"- {line}\n" for line in findings) + "\n" + notes
        text = markdown_report(title=args.title, header=_header(args, cluster, observations), frames=frames,
                               plot=plot, appendix=notes, command=shlex.join(["perfmodel"] + sys.argv[1:]))
        write_text_atomic(report, text)
        print(f"\nreport: {report}" + (f", plot: {plot}" if plot else ""))
    return 0


def _profile_findings(path: str) -> list[str]:
    import yaml

    doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    return [str(line) for line in (doc.get("findings") or [])] if isinstance(doc, dict) else []


def _data_summary(observations) -> dict:
    return {"runs": len(observations), "models": sorted({o.model_name for o in observations}),
            "layouts": sorted({o.layout_name for o in observations}),
            "modes": sorted({o.mode for o in observations}),
            "vllm_versions": sorted({str(o.record.provenance.vllm_version or "?") for o in observations}),
            "engine_generations": sorted({str(o.engine.engine_generation) for o in observations})}


def _header(args, cluster, observations) -> str:
    d = _data_summary(observations)
    return (f"{d['runs']} measured runs on {cluster.gpu.display_name} (vLLM {', '.join(d['vllm_versions'])}); "
            f"models: {', '.join(d['models'])}; layouts: {', '.join(d['layouts'])}; modes: {', '.join(d['modes'])}. "
            f"Results: {', '.join(args.results)}. APE = |predicted - measured| / measured; 'predicted' uses the "
            f"memory model's KV cache (end to end), the last column vLLM's measured KV cache.")
