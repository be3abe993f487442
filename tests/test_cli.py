"""The command line: outputs for people and scripts, and one-line errors with exit code 2."""

import csv
import io
import json

import pytest

from perfmodel.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_default_table(capsys):
    code, out, _ = run(capsys, "predict", "--gpus", "16")
    assert code == 0
    assert "llama-3.1-70b" in out and "taiwania2" in out
    assert "TP8 PP2 DP1" in out and "weights need" in out


def test_predict_json_has_documented_keys(capsys):
    code, out, _ = run(capsys, "predict", "--gpus", "16", "--format", "json")
    layouts = json.loads(out)["layouts"]
    keys = {"tp", "pp", "dp", "gpus", "fits", "kv_cache_tokens", "max_concurrency", "requests_per_second",
            "tokens_per_second", "output_tokens_per_second", "elapsed_time"}
    assert code == 0 and keys <= set(layouts[0])
    assert layouts[0]["fits"] and layouts[0]["tokens_per_second"] >= layouts[1]["tokens_per_second"]


def test_predict_csv(capsys):
    code, out, _ = run(capsys, "predict", "--gpus", "8", "--hardware", "h200-sxm", "--model", "llama-3.1-8b",
                       "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and rows and "tokens_per_second" in rows[0]


@pytest.mark.parametrize("argv, message", [
    (["predict", "--hardware", "nosuchgpu"], "nosuchgpu"),
    (["predict", "--model", "nosuchmodel"], "nosuchmodel"),
    (["predict", "--gpus", "16", "-tp", "3"], "valid values"),
    (["predict", "--hardware", "v100-sxm2-32gb", "--dtype", "bfloat16", "--gpus", "8"], "bfloat16"),
    (["predict", "--hardware", "v100-sxm2-32gb", "--quantization", "fp8", "--gpus", "8"], "fp8"),
    (["predict", "--input-len", "0"], "input-len"),
])
def test_bad_input_is_one_line_exit_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_model_too_large_says_how_many_gpus(capsys):
    code, out, _ = run(capsys, "predict", "--gpus", "2", "--hardware", "v100-sxm2-32gb")
    assert code == 0 and "needs at least" in out


def test_malformed_config_names_the_file(capsys, tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    code, _, err = run(capsys, "predict", "--model", str(bad))
    assert code == 2 and "config.json" in err


def test_hardware_list_and_show(capsys):
    code, out, _ = run(capsys, "hardware", "list")
    assert code == 0 and "taiwania2" in out and "h200-sxm" in out
    code, out, _ = run(capsys, "hardware", "show", "taiwania2")
    assert code == 0 and json.loads(out)["gpus_per_node"] == 8
