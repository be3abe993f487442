"""``perfmodel calibrate uncertainty``: measure a profile's interval model and write its ``uncertainty:`` section."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from perfmodel.cli.options import HARDWARE
from perfmodel.cli.validate import input_file, input_file_or_dir, integer, max_workers, output_file
from perfmodel.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    u = sub.add_parser("uncertainty", help="cross-validate and transfer a profile; write its uncertainty section")
    u.add_argument("results", nargs="+", type=input_file_or_dir("jsonl"), help="the results JSONL the profile was fitted on")
    u.add_argument("--hardware", required=True, type=HARDWARE, help="GPU or cluster those runs were measured on")
    u.add_argument("--profile", required=True, type=input_file("yaml"), help="profile YAML to add the section to (rewritten in place)")
    u.add_argument("--prior", default=None, type=input_file("yaml"), help="prior profile of the fits (default: datasheet)")
    u.add_argument("--transfer", action="append", default=[], metavar="NAME=HARDWARE:FILE[,FILE]",
                   help="another calibrated data set to predict with this profile (repeatable)")
    u.add_argument("--anchors", default=None, help="anchor set of the fits (as calibrate fit --anchors)")
    u.add_argument("--model-transfer", action="store_true",
                   help="also store the errors of fits on some models predicting the others (calibrate/fit/transfer.py; "
                        "the intervals of a model or kernel path the profile never saw)")
    u.add_argument("--model-transfer-from", default=None, type=input_file("yaml"), metavar="PROFILE",
                   help="a profile whose measured model transfer (its uncertainty section's model-transfer and "
                        "leave-one-model-out residuals) stands in for this one's, whose runs are of one model")
    u.add_argument("--runs-csv", default=None, type=output_file, help="write every cross-validated/transferred run here (CSV)")
    u.add_argument("--workers", type=integer(1, max_workers()), default=None,
                   help="cross-validation folds fitted at once, one process each (default: one per core)")
    u.set_defaults(handler=cmd_uncertainty)


def _observations(files: list[str], hardware: str):
    from calibrate.fit.observations import load_observations
    from calibrate.records.store import load_records

    records = []
    for path in files:
        if not Path(path).exists():
            raise UserError(f"results file {path} does not exist")
        records += load_records(path, latest_only=True)
    return load_observations(records, hardware)


def _anchors(path: str | None):
    from perfmodel.cost.anchors import load_anchors

    return load_anchors(path) if path else None


def _transfer(spec: str):
    name, sep, rest = spec.partition("=")
    hardware, sep2, files = rest.partition(":")
    if not (sep and sep2 and name and hardware and files):
        raise UserError(f"--transfer takes NAME=HARDWARE:FILE[,FILE], got {spec!r}")
    cluster, observations = _observations(files.split(","), hardware)
    return name, cluster, observations


def _borrowed_model_transfer(path: str) -> tuple[str, dict]:
    """(the profile's name, its uncertainty section's residuals) for --model-transfer-from."""
    from perfmodel.cost.coefficients import load_profile

    profile = load_profile(path)
    residuals = (profile.uncertainty or {}).get("residuals")
    if not isinstance(residuals, dict) or not residuals.get("model_transfer"):
        raise UserError(f"--model-transfer-from {path}: the profile has no measured model transfer "
                        "(uncertainty.residuals.model_transfer); write it with calibrate uncertainty --model-transfer")
    return profile.name, residuals


def cmd_uncertainty(args: argparse.Namespace) -> int:
    import yaml

    from calibrate.report.uncertainty import build_section, median_abs
    from perfmodel.cost.coefficients import Coefficients, load_profile

    profile = load_profile(args.profile)
    cluster, observations = _observations(args.results, args.hardware)
    transfer = [_transfer(t) for t in args.transfer]
    prior = load_profile(args.prior).coefficients if args.prior else Coefficients()
    command = shlex.join(["perfmodel", "calibrate", *sys.argv[sys.argv.index("uncertainty"):]]) \
        if "uncertainty" in sys.argv else ""
    borrowed = _borrowed_model_transfer(args.model_transfer_from) if args.model_transfer_from else None
    section, rows = build_section(observations=observations, cluster=cluster, coefficients=profile.coefficients,
                                  prior=prior, transfer=transfer, command=command, workers=args.workers,
                                  anchors=_anchors(args.anchors), model_transfer=args.model_transfer,
                                  borrowed_model_transfer=borrowed,
                                  progress=lambda m: print(f"  {m}", file=sys.stderr, flush=True))
    document = yaml.safe_load(Path(args.profile).read_text())
    document["uncertainty"] = section
    _write_profile(Path(args.profile), document)
    if args.runs_csv:
        from perfmodel.atomic import write_text_atomic

        write_text_atomic(args.runs_csv, rows.to_csv(index=False, float_format="%.6g"))
    for cv, group in rows.groupby("cv", sort=False):
        summary = ", ".join(f"{m} {100 * v:.1f}%" for m, v in median_abs(group).items()
                            if m in ("tokens_per_second", "output_tokens_per_second", "ttft_s_mean", "tpot_s_mean"))
        print(f"{cv}: {len(set(group['run_id']))} runs; median |log error| {summary}")
    print(f"wrote the uncertainty section of {args.profile}" + (f" and {args.runs_csv}" if args.runs_csv else ""))
    return 0


def _write_profile(path: Path, document: dict) -> None:
    """The profile YAML with lists of numbers on one line each (the residuals, the covariance rows), written
    through a temporary file and a rename as every profile is."""

    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def represent_list(dumper, values):
        flow = bool(values) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        return dumper.represent_sequence("tag:yaml.org,2002:seq", values, flow_style=flow)

    Dumper.add_representer(list, represent_list)
    from perfmodel.atomic import write_text_atomic

    write_text_atomic(path, yaml.dump(document, Dumper=Dumper, sort_keys=False, width=110))
