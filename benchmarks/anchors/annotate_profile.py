"""Write each coefficient's anchor and the findings into a profile WITHOUT refitting it (the values stay as they
are): for a profile whose refit waits on other changes (the V100's waits on the act-order GPTQ path, issue 22).

    PYTHONPATH=$PWD /work/main/.venv/bin/python benchmarks/anchors/annotate_profile.py \\
        perfmodel/profiles/v100-sxm2-32gb.yaml --anchors data/anchors/v100-sxm2-32gb.yaml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from calibrate.cli_uncertainty import _write_profile  # noqa: E402
from perfmodel.cost.anchors import findings, load_anchors  # noqa: E402
from perfmodel.cost.coefficients import load_profile  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--anchors", type=Path, required=True)
    args = parser.parse_args(argv)
    anchors = load_anchors(args.anchors)
    profile = load_profile(args.profile)
    doc = yaml.safe_load(args.profile.read_text())
    entries = doc["coefficients"]
    for name in anchors:  # a coefficient the profile predates has the value it loads with: the default
        entry = entries.get(name, getattr(profile.coefficients, name))
        entries[name] = {**(entry if isinstance(entry, dict) else {"value": entry}), "anchor": anchors[name].entry()}
    found = findings(profile.coefficients, profile.fitted, anchors)
    out = {}
    for key, value in doc.items():  # anchors and findings before the coefficients, as calibrate fit writes them
        if key == "coefficients":
            out["anchors"] = f"{args.anchors} (annotated, not refitted)"
            out["findings"] = found
        out[key] = value
    _write_profile(args.profile, out)
    print("\n".join(found) or "no findings")
    return 0


if __name__ == "__main__":
    sys.exit(main())
