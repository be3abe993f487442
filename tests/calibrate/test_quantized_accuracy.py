"""scripts/quantized_accuracy.py: each family fitted on its own runs, cross-validated, and reported."""
import importlib.util
import json
from pathlib import Path

from perfmodel.cost.coefficients import load_profile

ROOT = Path(__file__).resolve().parents[2]
SWEEP2 = ROOT / "data" / "h200-sweep2"


def _script():
    spec = importlib.util.spec_from_file_location("quantized_accuracy", ROOT / "scripts" / "quantized_accuracy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_awq_family_is_fitted_on_its_runs_and_reported(tmp_path):
    awq = [line for line in (SWEEP2 / "quantized-offline.jsonl").read_text().splitlines()
           if json.loads(line)["config"]["engine"]["quantization"] == "awq_marlin"]
    assert len(awq) == 5
    results = tmp_path / "awq.jsonl"
    results.write_text("\n".join(awq) + "\n")
    report, profile = tmp_path / "r.md", tmp_path / "p.yaml"
    assert _script().main([str(results), "--predictions", str(SWEEP2 / "predictions.jsonl"),
                           "--prior", str(ROOT / "perfmodel/profiles/h200-sxm.yaml"),
                           "--report", str(report), "--profile", str(profile)]) == 0
    row = next(line for line in report.read_text().splitlines() if line.startswith("| awq_marlin | 5 | 2 |"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    pre, in_sample, loro, lomo = (float(c.rstrip("%")) for c in cells[3:7])
    assert in_sample < pre  # the fit explains what the priors missed
    assert in_sample <= loro + 1e-9 and loro < 10 and lomo < 15
    fitted = load_profile(profile)
    shipped = load_profile(ROOT / "perfmodel/profiles/h200-sxm.yaml").coefficients
    assert fitted.coefficients.awq_marlin_compute_efficiency != shipped.awq_marlin_compute_efficiency
    assert fitted.coefficients.gemm_compute_efficiency == shipped.gemm_compute_efficiency  # held at the profile
