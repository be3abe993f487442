"""calibrate import keeps what a `vllm bench` file says (its --metadata keys), validates it, and check/fit refuse
records measured on other hardware (issue 12, item 5)."""
import json
from pathlib import Path

import pytest

from calibrate.records.importers import ImportFormatError, import_file
from calibrate.records.record_hardware import check_record_hardware, gpu_family, hardware_mismatch
from hardware import load_hardware
from perfmodel.cli import main
from perfmodel.errors import UserError

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "vllm_results"
DATA = Path(__file__).resolve().parents[2] / "data"


def with_metadata(tmp_path, **metadata) -> Path:
    """The real serve result with `vllm bench serve --metadata KEY=VALUE` pairs (string values, top level)."""
    obj = json.loads((FIX / "bench_serve_tiny-llama_cpu_conc2.json").read_text())
    obj.update(metadata)
    path = tmp_path / "serve.json"
    path.write_text(json.dumps(obj))
    return path


def test_metadata_keys_fill_the_engine_and_provenance(tmp_path):
    path = with_metadata(tmp_path, tensor_parallel_size="4", pp="2", **{"max-num-seqs": "64"},
                         max_model_len="4096", enforce_eager="true", hardware="hgx-h200", gpu="NVIDIA H200",
                         vllm_version="0.26.0", gpu_memory_utilization="0.85")
    [rec] = import_file(path)
    eng, prov = rec["config"]["engine"], rec["provenance"]
    assert (eng["tensor_parallel_size"], eng["pipeline_parallel_size"], eng["max_num_seqs"]) == (4, 2, 64)
    assert eng["max_model_len"] == 4096 and eng["enforce_eager"] is True and eng["gpu_memory_utilization"] == 0.85
    assert eng["hardware"] == rec["model"]["hardware"] == "hgx-h200"
    assert prov["gpu_name"] == "NVIDIA H200" and prov["vllm_version"] == "0.26.0"
    [flagged] = import_file(path, {"tensor_parallel_size": 8})  # the command line wins over the file
    assert flagged["config"]["engine"]["tensor_parallel_size"] == 8


@pytest.mark.parametrize("metadata,message", [
    ({"tp": "-1"}, "tensor_parallel_size must be a positive integer"),
    ({"max_num_seqs": "0"}, "max_num_seqs must be a positive integer"),
    ({"pipeline_parallel_size": "two"}, "pipeline_parallel_size must be a positive integer"),
    ({"gpu_memory_utilization": "1.5"}, r"gpu_memory_utilization must be in \(0, 1\]"),
    ({"enforce_eager": "maybe"}, "enforce_eager must be true or false"),
])
def test_invalid_metadata_is_refused(tmp_path, metadata, message):
    with pytest.raises(ImportFormatError, match=message):
        import_file(with_metadata(tmp_path, **metadata))


def test_cli_refuses_a_negative_tp(tmp_path, capsys):
    assert main(["calibrate", "import", str(FIX / "bench_serve_tiny-llama_cpu_conc2.json"), "--results",
                 str(tmp_path / "r.jsonl"), "-tp", "-1"]) == 2
    err = capsys.readouterr().err
    assert "expected an integer from 1" in err and "-1" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r.jsonl").exists()


def test_gpu_families():
    assert gpu_family("h200-sxm") == gpu_family("NVIDIA H200") == "h200"
    assert gpu_family("NVIDIA Tesla V100-SXM2-32GB") == gpu_family("v100-sxm2-32gb") == "v100"
    assert gpu_family("cpu:x86_64") == gpu_family("cpu") == "cpu"
    assert gpu_family("NVIDIA A100-SXM4-80GB") == "a100" and gpu_family("mystery") is None


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_cpu_records_checked_as_h200_are_refused_in_one_line(capsys):
    cpu = records(DATA / "cpu" / "results.jsonl")
    h200 = load_hardware("h200-sxm")
    assert hardware_mismatch(cpu[0], h200) == "measured on cpu:x86_64"
    assert hardware_mismatch(cpu[0], load_hardware("cpu")) is None
    with pytest.raises(UserError, match="were not measured on h200-sxm"):
        check_record_hardware(cpu, h200)
    assert any("kept" in w for w in check_record_hardware(cpu, h200, allow_other=True))
    assert check_record_hardware(records(DATA / "h200" / "single-gpu0.jsonl"), h200) == []
    assert check_record_hardware(records(DATA / "taiwania" / "results.jsonl"), load_hardware("taiwania2")) == []
    for command in ("check", "fit"):
        assert main(["calibrate", command, str(DATA / "cpu" / "results.jsonl"), "--hardware", "h200-sxm"]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "--allow-other-hardware" in err


def test_records_without_hardware_are_warned_not_refused():
    [rec] = import_file(FIX / "bench_serve_tiny-llama_cpu_conc2.json", {"model": "tiny-llama"})
    [warning] = check_record_hardware([rec], load_hardware("h200-sxm"))
    assert "name no hardware" in warning
