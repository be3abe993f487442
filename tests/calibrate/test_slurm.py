import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from calibrate.run.slurm import SlurmError, write_slurm_jobs
from calibrate.records.sweep import load_sweep
from tests.sbatch_recipe import assert_multi_node_recipe, directive

try:
    from hardware import load_hardware

    TAIWANIA2 = load_hardware("taiwania2")
except Exception:  # the hardware catalog is optional here: a stand-in with the same limits
    TAIWANIA2 = SimpleNamespace(name="taiwania2", gpus_per_node=8, max_nodes_per_job=2, max_job_time_s=3600.0)


def sweep_file(tmp_path, grid, **extra) -> Path:
    doc = {"name": "t2", "defaults": {"model": "llama-3.1-70b", "input_len": 128, "output_len": 128,
                                      "num_prompts": 64, **extra},
           "groups": [{"name": "g", "grid": grid}]}
    path = tmp_path / "t2.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def bash_n(path: Path) -> None:
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    subprocess.run(["bash", "-n", str(path)], check=True)


def test_two_node_tp8_pp2_job_for_taiwania2(tmp_path):
    sweep = load_sweep(sweep_file(tmp_path, {"tp": [8], "pp": [2]}))
    scripts = write_slurm_jobs(sweep, TAIWANIA2, "ACCT123", "gp4d", tmp_path / "jobs",
                               modules=["cuda/12.1"], env_setup="source ~/vllm/bin/activate")
    assert len(scripts) == 1
    text = scripts[0].read_text()
    assert directive(text, "nodes") == "2"
    assert directive(text, "gres") == "gpu:8"
    assert directive(text, "account") == "ACCT123" and directive(text, "partition") == "gp4d"
    h, m, s = map(int, directive(text, "time").split(":"))
    assert h * 3600 + m * 60 + s <= 3600
    assert "module load cuda/12.1" in text and "source ~/vllm/bin/activate" in text
    assert "ray start --head" in text and "--port=6379" in text and "--num-gpus=8 --block" in text
    assert 'ray start --address="$RAY_ADDRESS"' in text
    assert "srun --nodes=1 --ntasks=1 -w" in text
    assert "ray status" in text and "-ge 16" in text
    assert_multi_node_recipe(text)
    assert "--distributed-executor-backend ray" in text
    assert re.search(r"--results \S+/results/[0-9a-f]{16}\.jsonl --engine [0-9a-f]{16}", text)
    assert (tmp_path / "jobs" / "submit.sh").read_text().count("sbatch ") == 1
    bash_n(scripts[0])


def test_engine_id_in_job_matches_the_runner_with_ray(tmp_path):
    from calibrate.run.runner import select_runs, with_backend

    path = sweep_file(tmp_path, {"tp": [8], "pp": [2]})
    scripts = write_slurm_jobs(load_sweep(path), TAIWANIA2, "A", "P", tmp_path / "jobs")
    engine_id = re.search(r"--engine ([0-9a-f]{16})", scripts[0].read_text()).group(1)
    runs = select_runs(with_backend(load_sweep(path), "ray"), None, engine_id)
    assert len(runs) == 1


def test_single_node_jobs_and_arrays(tmp_path):
    sweep = load_sweep(sweep_file(tmp_path, {"tp": [1, 2, 8], "max_num_seqs": [64, 256]}))
    scripts = write_slurm_jobs(sweep, TAIWANIA2, "A", "P", tmp_path / "jobs")
    assert len(scripts) == 6
    for path in scripts:
        text = path.read_text()
        assert directive(text, "nodes") == "1"
        assert "ray start" not in text
        bash_n(path)
    gres = sorted(directive(p.read_text(), "gres") for p in scripts)
    assert gres == ["gpu:1", "gpu:1", "gpu:2", "gpu:2", "gpu:8", "gpu:8"]
    arrays = write_slurm_jobs(sweep, TAIWANIA2, "A", "P", tmp_path / "arr", array=True, time_limit_s=1800)
    assert len(arrays) == 1
    text = arrays[0].read_text()
    assert directive(text, "array") == "0-5" and directive(text, "time") == "00:30:00"
    bash_n(arrays[0])


def test_multi_node_array(tmp_path):
    sweep = load_sweep(sweep_file(tmp_path, {"tp": [8], "pp": [1, 2]}))
    arrays = write_slurm_jobs(sweep, TAIWANIA2, "A", "P", tmp_path / "arr", array=True)
    assert len(arrays) == 2  # one array per node count
    two = [p for p in arrays if "2node" in p.name][0].read_text()
    assert "ray start --head" in two and directive(two, "nodes") == "2"
    assert '-ge "${total_gpus[$SLURM_ARRAY_TASK_ID]}"' in two
    assert_multi_node_recipe(two)
    for p in arrays:
        bash_n(p)


def test_refuses_three_nodes(tmp_path):
    sweep = load_sweep(sweep_file(tmp_path, {"tp": [8], "pp": [3]}))
    with pytest.raises(SlurmError, match="needs 3 nodes.*at most 2"):
        write_slurm_jobs(sweep, TAIWANIA2, "A", "P", tmp_path / "jobs")


def test_refuses_two_hours(tmp_path):
    sweep = load_sweep(sweep_file(tmp_path, {"tp": [8]}))
    with pytest.raises(SlurmError, match="exceeds taiwania2's maximum job time 01:00:00"):
        write_slurm_jobs(sweep, TAIWANIA2, "A", "P", tmp_path / "jobs", time_limit_s=7200)


def test_refuses_a_bare_gpu(tmp_path):
    sweep = load_sweep(sweep_file(tmp_path, {"tp": [1]}))
    with pytest.raises(SlurmError, match="no SLURM limits"):
        write_slurm_jobs(sweep, load_hardware("h200-sxm"), "A", "P", tmp_path / "jobs")
    assert not (tmp_path / "jobs").exists()


def test_refuses_a_partial_node_spanning_nodes(tmp_path):
    sweep = load_sweep(sweep_file(tmp_path, {"tp": [4], "pp": [3]}))
    with pytest.raises(SlurmError, match="multiple of 8"):
        write_slurm_jobs(sweep, TAIWANIA2, "A", "P", tmp_path / "jobs")


def test_cli_writes_jobs(tmp_path, capsys):
    from perfmodel.cli import main

    path = sweep_file(tmp_path, {"tp": [8], "pp": [2]})
    rc = main(["calibrate", "slurm", str(path), "--cluster", "taiwania2", "--account", "A", "--partition", "P",
               "--out", str(tmp_path / "jobs")])
    assert rc == 0
    assert capsys.readouterr().out.strip().endswith(".sbatch")
    rc = main(["calibrate", "slurm", str(path), "--cluster", "taiwania2", "--account", "A", "--partition", "P",
               "--out", str(tmp_path / "jobs"), "--time", "7200"])
    assert rc == 2
    assert "maximum job time" in capsys.readouterr().err
    rc = main(["calibrate", "slurm", str(path), "--cluster", "h200-sxm", "--account", "A", "--partition", "P",
               "--out", str(tmp_path / "bare")])
    err = capsys.readouterr().err
    assert rc == 2 and "h200-sxm has no SLURM limits" in err and len(err.strip().splitlines()) == 1
