"""perfmodel.deploy.serve: the `vllm serve` command of a layout and the job script that runs it (issue 12, item 3)."""

import json
import os
import shlex
import subprocess

import pytest

from perfmodel.cli import main
from perfmodel.deploy.serve import JobOptions, deployment, serve_job_script, serve_model_id, vllm_serve_args
from perfmodel.errors import UserError
from perfmodel.layout import Layout
from perfmodel.scenario import Scenario
from tests.sbatch_recipe import assert_multi_node_recipe, directive

QWEN = dict(model="qwen2.5-72b", hardware="taiwania2", quantization="gptq")


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_serve_args_pin_every_resolved_engine_argument():
    scenario = Scenario.build(model="llama-3.1-8b", hardware="hgx-h200", max_model_len=8192)
    args = vllm_serve_args(scenario, Layout(tp=2), "llama-3.1-8b")
    e = scenario.engine
    assert args[0] == "meta-llama/Llama-3.1-8B"  # the catalog name's HF id
    assert flag(args, "-tp") == "2" and flag(args, "-pp") == "1"
    assert flag(args, "--max-num-seqs") == str(e.max_num_seqs) == "1024"
    assert flag(args, "--max-num-batched-tokens") == str(e.max_num_batched_tokens)
    assert float(flag(args, "--gpu-memory-utilization")) == e.gpu_memory_utilization
    assert flag(args, "--max-model-len") == "8192" and flag(args, "--dtype") == "bfloat16"
    assert flag(args, "--kv-cache-dtype") == "auto"
    assert "--quantization" not in args and "--enforce-eager" not in args
    assert "--distributed-executor-backend" not in args


def test_quantization_eager_fp8_kv_and_ray_across_nodes():
    scenario = Scenario.build(**QWEN, enforce_eager=True, max_model_len=4096)
    args = vllm_serve_args(scenario, Layout(tp=8, pp=2), "qwen2.5-72b")
    assert flag(args, "--quantization") == "gptq" and flag(args, "--dtype") == "float16"
    assert "--enforce-eager" in args and flag(args, "--distributed-executor-backend") == "ray"
    assert "--distributed-executor-backend" not in vllm_serve_args(scenario, Layout(tp=8), "qwen2.5-72b")
    fp8 = Scenario.build(model="llama-3.1-8b", hardware="hgx-h200", kv_cache_dtype="fp8")
    assert flag(vllm_serve_args(fp8, Layout(tp=1), "llama-3.1-8b"), "--kv-cache-dtype") == "fp8"


def test_model_ids(tmp_path):
    assert serve_model_id("meta-llama/Llama-3.1-70B-Instruct") == "meta-llama/Llama-3.1-70B-Instruct"
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    assert serve_model_id(str(tmp_path / "m" / "config.json")) == str((tmp_path / "m").resolve())


def test_replicas_within_a_node_get_their_own_gpus_and_ports():
    scenario = Scenario.build(**QWEN)
    dep = deployment(scenario, Layout(tp=4, dp=2), "qwen2.5-72b")
    assert dep.nodes == 1 and dep.replicas_per_node == 2
    a, b = dep.node_commands()
    assert a.startswith("CUDA_VISIBLE_DEVICES=0,1,2,3 vllm serve") and a.endswith("--port 8000")
    assert b.startswith("CUDA_VISIBLE_DEVICES=4,5,6,7 vllm serve") and b.endswith("--port 8001")
    two_nodes = deployment(scenario, Layout(tp=8, dp=2), "qwen2.5-72b")
    assert two_nodes.nodes == 2 and two_nodes.node_commands() == [two_nodes.command]


def test_predict_json_and_table_print_the_same_command(capsys):
    argv = ["predict", "--model", "qwen2.5-72b", "-q", "gptq", "--gpus", "16", "--simulate-top", "0"]
    assert main(argv + ["--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    best = next(p for p in doc["layouts"] if p["fits"])
    command = doc["vllm_serve_command"]
    words = shlex.split(command)
    assert words[:3] == ["vllm", "serve", "Qwen/Qwen2.5-72B"]
    assert flag(words, "-tp") == str(best["tp"]) and flag(words, "-pp") == str(best["pp"])
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"): {command}\n" in out and "note: --quantization gptq needs a GPTQ checkpoint" in out


def test_pinned_layout_is_the_one_served(capsys):
    assert main(["predict", "--model", "qwen2.5-72b", "-q", "gptq", "--gpus", "16", "-tp", "8", "-pp", "2",
                 "--simulate-top", "0", "--format", "json"]) == 0
    words = shlex.split(json.loads(capsys.readouterr().out)["vllm_serve_command"])
    assert flag(words, "-tp") == "8" and flag(words, "-pp") == "2" and "ray" in words


def test_emit_sbatch_one_node(tmp_path, capsys):
    out = tmp_path / "serve.sbatch"
    assert main(["predict", "--model", "llama-3.1-8b", "--gpus", "8", "-tp", "8", "--simulate-top", "0",
                 "--emit-sbatch", str(out), "--account", "ACC", "--module", "cuda/12.1"]) == 0
    text = out.read_text()
    assert directive(text, "nodes") == "1" and directive(text, "gres") == "gpu:8"
    assert directive(text, "account") == "ACC" and directive(text, "time") == "01:00:00"
    assert "ray start" not in text and text.rstrip().splitlines()[-1].startswith("vllm serve meta-llama/")
    assert text.index("module load cuda/12.1") < text.index("set -u")
    subprocess.run(["bash", "-n", str(out)], check=True)


def test_emit_sbatch_refuses_a_bare_gpu_and_a_long_job(tmp_path, capsys):
    out = tmp_path / "serve.sbatch"
    assert main(["predict", "--hardware", "h200-sxm", "--model", "llama-3.1-8b", "--gpus", "1",
                 "--simulate-top", "0", "--emit-sbatch", str(out)]) == 2
    assert "h200-sxm has no SLURM limits" in capsys.readouterr().err and not out.exists()
    scenario = Scenario.build(**QWEN)
    with pytest.raises(UserError, match="maximum 3600"):
        serve_job_script(scenario, deployment(scenario, Layout(tp=8), "qwen2.5-72b"), JobOptions(time_s=7200))


FAKES = {  # stand-ins for SLURM, iproute2, Ray and vLLM: each logs what it was asked and by which node
    "scontrol": 'printf "n1\\nn2\\n"',
    "ip": 'echo "3: ib0    inet 10.0.0.${NODE_NO:-1}/24 brd 10.0.0.255 scope global ib0"',
    "srun": 'while [ "$1" != "-w" ]; do shift; done; node=$2; shift 2\n'
            'NODE_NO=${node#n} "$@"',
    "ray": 'if [ "$1" = status ]; then\n'
           '  n=$(grep -c "^ray start" "$LOG" || true); echo " 0.0/$((8 * n)).0 GPU"; exit 0; fi\n'
           'echo "ray $* VLLM_HOST_IP=${VLLM_HOST_IP:-}" >> "$LOG"',
    "vllm": 'echo "vllm $* VLLM_HOST_IP=$VLLM_HOST_IP" >> "$LOG"',
    "sleep": "true",
}


def test_two_node_script_runs_the_recipe_against_fakes(tmp_path, capsys):
    out = tmp_path / "serve.sbatch"
    assert main(["predict", "--model", "qwen2.5-72b", "-q", "gptq", "--gpus", "16", "-tp", "8", "-pp", "2",
                 "--simulate-top", "0", "--emit-sbatch", str(out)]) == 0
    text = out.read_text()
    assert_multi_node_recipe(text)
    assert directive(text, "nodes") == "2" and "-ge 16" in text
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in FAKES.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "log"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "LOG": str(log),
           "SLURM_JOB_NODELIST": "n[1-2]", "SLURM_CPUS_PER_TASK": "32"}
    subprocess.run(["bash", str(out)], env=env, check=True, timeout=60)
    lines = log.read_text().splitlines()
    head, worker = (next(line for line in lines if marker in line) for marker in ("--head", "--address"))
    assert "--node-ip-address=10.0.0.1" in head and "--num-cpus=32" in head
    assert "--node-ip-address=10.0.0.2" in worker and worker.endswith("VLLM_HOST_IP=10.0.0.2")
    assert "RAY_ADDRESS" not in worker and "--address=10.0.0.1:6379" in worker
    serve = next(line for line in lines if line.startswith("vllm serve"))
    assert serve.endswith("VLLM_HOST_IP=10.0.0.1") and "--distributed-executor-backend ray" in serve
