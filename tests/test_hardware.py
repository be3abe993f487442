"""The hardware catalog: every YAML loads, every number is cited, bad input gives one clear line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from hardware import (
    ClusterSpec,
    GpuSpec,
    HardwareError,
    LinkSpec,
    list_clusters,
    list_gpus,
    load_gpu,
    load_hardware,
)
from hardware.catalog import CLUSTER_DIR, GPU_DIR

GPU_NUMBER_FIELDS = (
    "memory_bytes", "memory_bandwidth_bytes_per_s", "peak_flops_per_s", "num_sms", "compute_capability",
    "nvlink_links", "nvlink_bandwidth_per_link_bytes_per_s", "pcie_bandwidth_bytes_per_s",
)
CLUSTER_NUMBER_FIELDS = ("gpus_per_node", "num_nodes", "nics_per_node", "host_memory_bytes")


def test_catalog_lists_expected_entries():
    assert {"v100-sxm2-32gb", "a100-sxm4-80gb", "h100-sxm", "h100-pcie", "h200-sxm"} <= set(list_gpus())
    assert {"taiwania2", "dgx-h100", "hgx-h200", "dgx-a100"} <= set(list_clusters())


@pytest.mark.parametrize("name", list_gpus())
def test_every_gpu_loads_and_cites_every_number(name):
    gpu = load_gpu(name)
    assert isinstance(gpu, GpuSpec)
    assert gpu.name == name  # file stem equals the name inside
    for field in GPU_NUMBER_FIELDS:
        assert gpu.sources.get(field, "").strip(), f"{name}: {field} has no source"
    assert gpu.memory_bytes > 0 and gpu.memory_bandwidth_bytes_per_s > 0
    assert all(v > 0 for v in gpu.peak_flops_per_s.values())


@pytest.mark.parametrize("name", list_clusters())
def test_every_cluster_loads_and_cites_every_number(name):
    cluster = load_hardware(name)
    assert isinstance(cluster, ClusterSpec)
    assert cluster.name == name
    for field in CLUSTER_NUMBER_FIELDS:
        assert cluster.sources.get(field, "").strip(), f"{name}: {field} has no source"
    for field in ("max_nodes_per_job", "max_job_time_s", "nvlink_matrix"):
        if getattr(cluster, field) is not None:
            assert cluster.sources.get(field, "").strip(), f"{name}: {field} has no source"
    links = [cluster.intra_node_link, cluster.host_to_gpu_link, cluster.inter_node_link]
    for link in filter(None, links):
        assert isinstance(link, LinkSpec) and link.source.strip()


@pytest.mark.parametrize("name", list_gpus())
def test_gpu_name_gives_one_node(name):
    node = load_hardware(name)
    assert node.num_nodes == 1 and node.gpu.name == name
    assert node.max_nodes_per_job is None and node.max_job_time_s is None


def test_default_nodes_have_the_right_topology():
    assert load_hardware("v100-sxm2-32gb").intra_node_topology == "hybrid_cube_mesh"
    assert load_hardware("h100-pcie").intra_node_topology == "pcie"
    for name in ("a100-sxm4-80gb", "h100-sxm", "h200-sxm"):
        assert load_hardware(name).intra_node_topology == "nvswitch"
        assert load_hardware(name).gpus_per_node == 8


def test_v100_has_no_bf16_or_fp8():
    gpu = load_gpu("v100-sxm2-32gb")
    assert gpu.supports("float16")
    assert not gpu.supports("bfloat16")
    assert not gpu.supports("fp8")
    assert "bfloat16" not in gpu.peak_flops_per_s


def test_a100_has_no_fp8_and_hopper_has_fp8():
    assert not load_gpu("a100-sxm4-80gb").supports("fp8")
    for name in ("h100-sxm", "h100-pcie", "h200-sxm"):
        assert load_gpu(name).supports("fp8")


def test_datasheet_numbers():
    h100 = load_gpu("h100-sxm")
    assert h100.peak_flops_per_s["bfloat16"] == pytest.approx(989.4e12)
    assert h100.nvlink_bandwidth_bytes_per_s == pytest.approx(450e9)
    v100 = load_gpu("v100-sxm2-32gb")
    assert v100.nvlink_bandwidth_bytes_per_s == pytest.approx(150e9)
    assert load_gpu("h200-sxm").memory_bytes > load_gpu("h100-sxm").memory_bytes
    assert load_gpu("h100-pcie").num_sms == 114


def test_taiwania2_matches_dgx1_cube_mesh():
    c = load_hardware("taiwania2")
    m = c.nvlink_matrix
    assert c.num_gpus == 252 * 8
    assert c.max_gpus_per_job == 16
    assert c.max_job_time_s == 3600.0
    assert all(sum(row) == 6 for row in m)  # six NVLinks per V100, all used
    pairs = [m[i][j] for i in range(8) for j in range(i + 1, 8)]
    assert pairs.count(2) == 8 and pairs.count(1) == 8 and pairs.count(0) == 12  # 12 cube edges + 4 diagonals
    assert all(m[i][j] == m[j][i] for i in range(8) for j in range(8))
    assert c.inter_node_link.bandwidth_bytes_per_s == pytest.approx(12.5e9)


def test_unknown_name_lists_known_names():
    with pytest.raises(HardwareError) as info:
        load_hardware("tpu-v9")
    message = str(info.value)
    assert "\n" not in message
    for name in list_clusters() + list_gpus():
        assert name in message
    with pytest.raises(HardwareError, match="h100-sxm"):
        load_gpu("b300")


def _gpu_yaml(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load((GPU_DIR / "h100-sxm.yaml").read_text())
    mutate(data)
    path = tmp_path / "custom-gpu.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_gpu_file_by_path_gives_one_node(tmp_path):
    path = _gpu_yaml(tmp_path, lambda d: d.update(memory_bytes="96e9"))  # YAML 1.1 reads 96e9 as text
    node = load_hardware(path)
    assert node.gpu.memory_bytes == 96e9
    assert node.intra_node_topology == "nvswitch"
    assert load_gpu(str(path)).memory_bytes == 96e9


def test_missing_field_names_file_and_field(tmp_path):
    path = _gpu_yaml(tmp_path, lambda d: d.pop("num_sms"))
    with pytest.raises(HardwareError) as info:
        load_gpu(path)
    message = str(info.value)
    assert "custom-gpu.yaml" in message and "num_sms" in message and "\n" not in message


def test_extra_field_is_refused(tmp_path):
    path = _gpu_yaml(tmp_path, lambda d: d.update(tdp_watts=700))
    with pytest.raises(HardwareError, match="custom-gpu.yaml.*tdp_watts"):
        load_gpu(path)


def test_non_positive_number_is_refused(tmp_path):
    path = _gpu_yaml(tmp_path, lambda d: d.update(memory_bandwidth_bytes_per_s=0))
    with pytest.raises(HardwareError, match="memory_bandwidth_bytes_per_s"):
        load_gpu(path)
    path = _gpu_yaml(tmp_path, lambda d: d["peak_flops_per_s"].update(fp8=-1.0))
    with pytest.raises(HardwareError, match="fp8"):
        load_gpu(path)


def test_number_without_source_is_refused(tmp_path):
    path = _gpu_yaml(tmp_path, lambda d: d["sources"].pop("memory_bytes"))
    with pytest.raises(HardwareError, match="memory_bytes.*sources"):
        load_gpu(path)


def test_unknown_dtype_is_refused(tmp_path):
    path = _gpu_yaml(tmp_path, lambda d: d["peak_flops_per_s"].update(fp4=1e15))
    with pytest.raises(HardwareError, match="fp4"):
        load_gpu(path)


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\ngpu: h100-sxm\nnum_nodes: [1, 2\nhost_memory_bytes: 1\n")
    with pytest.raises(HardwareError) as info:
        load_hardware(path)
    message = str(info.value)
    assert "broken.yaml" in message and "line" in message and "\n" not in message


def test_cluster_file_with_bad_matrix(tmp_path):
    data = yaml.safe_load((CLUSTER_DIR / "taiwania2.yaml").read_text())
    data["nvlink_matrix"][0][1] = 2  # no longer symmetric, GPU 0 now uses 7 links
    path = tmp_path / "bad-mesh.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(HardwareError, match="bad-mesh.yaml.*nvlink_matrix"):
        load_hardware(path)


def test_cluster_file_resolves_catalog_gpu(tmp_path):
    data = yaml.safe_load((CLUSTER_DIR / "dgx-h100.yaml").read_text())
    data.update(name="my-h100s", num_nodes=4)
    path = tmp_path / "my-h100s.yaml"
    path.write_text(yaml.safe_dump(data))
    cluster = load_hardware(path)
    assert cluster.num_gpus == 32 and cluster.gpu == load_gpu("h100-sxm")


def test_missing_file_is_one_line():
    with pytest.raises(HardwareError, match="no such file"):
        load_hardware("does/not/exist.yaml")


def test_specs_are_frozen():
    gpu = load_gpu("h100-sxm")
    with pytest.raises(dataclasses.FrozenInstanceError):
        gpu.num_sms = 1
    with pytest.raises(TypeError):
        gpu.peak_flops_per_s["fp8"] = 1.0


def test_hardware_error_is_a_value_error():
    assert issubclass(HardwareError, ValueError)
