"""Load and validate the hardware catalog (``gpus/*.yaml``, ``clusters/*.yaml``).

YAML keys equal the dataclass fields of :mod:`hardware.spec`; every number needs an entry in ``sources``
(links carry their own ``source``). Numbers may be written as ``141e9`` (read as a float here). Errors are
one-line :class:`HardwareError` messages that name the file and field, or list the known names.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import yaml

# libyaml's safe loader when PyYAML has it (10x faster on the profiles), else the pure-Python one
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

from hardware.errors import UserError
from hardware.spec import ClusterSpec, GpuSpec, LinkSpec, SpecError

CATALOG_DIR = Path(__file__).resolve().parent
GPU_DIR = CATALOG_DIR / "gpus"
CLUSTER_DIR = CATALOG_DIR / "clusters"
FABRIC_DIR = CATALOG_DIR / "fabrics"  # inter-node links (one NIC port) a cluster YAML may name

_GPU_FIELDS = tuple(f.name for f in dataclasses.fields(GpuSpec))
_LINK_FIELDS = tuple(f.name for f in dataclasses.fields(LinkSpec))
_CLUSTER_FIELDS = tuple(f.name for f in dataclasses.fields(ClusterSpec))

# Fields holding numbers that must be cited in `sources` (None values need no citation).
_GPU_NUMBERS = (
    "memory_bytes", "memory_bandwidth_bytes_per_s", "peak_flops_per_s", "num_sms", "compute_capability",
    "nvlink_links", "nvlink_bandwidth_per_link_bytes_per_s", "pcie_bandwidth_bytes_per_s",
)
_CLUSTER_NUMBERS = (
    "gpus_per_node", "num_nodes", "max_nodes_per_job", "max_job_time_s", "nvlink_matrix", "nics_per_node",
    "host_memory_bytes",
)
_LINK_KEYS = ("intra_node_link", "inter_node_link", "host_to_gpu_link")


class HardwareError(UserError, ValueError):
    """A hardware name or file that cannot be used; the message is one line for the user."""


# ---------------------------------------------------------------------------------------------------------
# public API


def list_gpus() -> list[str]:
    """Names of the catalog GPUs (file stems of ``hardware/gpus/*.yaml``), sorted."""
    return sorted(p.stem for p in GPU_DIR.glob("*.yaml"))


def list_clusters() -> list[str]:
    """Names of the catalog clusters (file stems of ``hardware/clusters/*.yaml``), sorted."""
    return sorted(p.stem for p in CLUSTER_DIR.glob("*.yaml"))


def list_fabrics() -> list[str]:
    """Names of the catalog inter-node fabrics (file stems of ``hardware/fabrics/*.yaml``), sorted."""
    return sorted(p.stem for p in FABRIC_DIR.glob("*.yaml"))


def load_fabric(name: str) -> LinkSpec:
    """A catalog fabric (one NIC port of an inter-node network) by name."""
    if name not in list_fabrics():
        raise HardwareError(f"unknown fabric {name!r}; known fabrics: {', '.join(list_fabrics())}")
    return _catalog_fabric(name)


def with_nodes(cluster: ClusterSpec, num_nodes: int) -> ClusterSpec:
    """``num_nodes`` nodes of ``cluster`` for one job (``--nodes``): needs a declared inter-node network beyond
    one node; refused above the cluster's node count or its per-job node limit when it has them."""
    if num_nodes < 1:
        raise HardwareError(f"--nodes must be at least 1, got {num_nodes}")
    if num_nodes > 1 and (cluster.inter_node_link is None or cluster.nics_per_node == 0):
        raise HardwareError(f"--nodes {num_nodes}: {cluster.name} declares no inter-node network "
                            f"(inter_node_link, nics_per_node); add one to its YAML (hardware/fabrics/ lists some)")
    limit = cluster.max_nodes_per_job
    if limit is not None and num_nodes > limit:
        raise HardwareError(f"--nodes {num_nodes}: {cluster.name} jobs may use at most {limit} nodes")
    if cluster.num_nodes > 1 and num_nodes > cluster.num_nodes:
        raise HardwareError(f"--nodes {num_nodes}: {cluster.name} has {cluster.num_nodes} nodes")
    if num_nodes == cluster.num_nodes:
        return cluster
    return dataclasses.replace(cluster, num_nodes=num_nodes,
                               display_name=f"{num_nodes} x {cluster.display_name.removeprefix('one node of ')}")


def load_gpu(name_or_path: str | Path) -> GpuSpec:
    """A catalog GPU by name, or a GPU YAML file by path."""
    path = _as_path(name_or_path)
    if path is not None:
        return _gpu_from_file(path)
    name = str(name_or_path)
    if name not in list_gpus():
        raise HardwareError(f"unknown GPU {name!r}; known GPUs: {', '.join(list_gpus())}")
    return _catalog_gpu(name)


def load_hardware(name_or_path: str | Path) -> ClusterSpec:
    """A cluster by catalog name, a GPU name (one node of that GPU), or a YAML file path.

    A file with a ``gpu:`` key is read as a cluster; one with ``peak_flops_per_s`` as a GPU. A GPU gives one
    node shaped like the catalog cluster built on that GPU (first by name), without job limits.
    """
    path = _as_path(name_or_path)
    if path is not None:
        data = _read_yaml(path)
        if "gpu" in data:
            return _cluster_from_dict(data, path)
        if "peak_flops_per_s" in data:
            return _one_node(_gpu_from_dict(data, path))
        raise HardwareError(f"{path}: neither a cluster (no 'gpu' key) nor a GPU (no 'peak_flops_per_s' key)")
    name = str(name_or_path)
    if name in list_clusters():
        return _catalog_cluster(name)
    if name in list_gpus():
        return _one_node(_catalog_gpu(name))
    raise HardwareError(
        f"unknown hardware {name!r}; known clusters: {', '.join(list_clusters())}; "
        f"known GPUs: {', '.join(list_gpus())}; or give a path to a YAML file"
    )


# ---------------------------------------------------------------------------------------------------------
# catalog entries are immutable files: cache them


@functools.lru_cache(maxsize=None)
def _catalog_gpu(name: str) -> GpuSpec:
    return _gpu_from_file(GPU_DIR / f"{name}.yaml")


@functools.lru_cache(maxsize=None)
def _catalog_fabric(name: str) -> LinkSpec:
    path = FABRIC_DIR / f"{name}.yaml"
    return _link(_read_yaml(path), str(path))


@functools.lru_cache(maxsize=None)
def _catalog_cluster(name: str) -> ClusterSpec:
    path = CLUSTER_DIR / f"{name}.yaml"
    return _cluster_from_dict(_read_yaml(path), path)


def _one_node(gpu: GpuSpec) -> ClusterSpec:
    """One node of ``gpu``, shaped like the first catalog cluster that uses a GPU of that name."""
    for cluster_name in list_clusters():
        cluster = _catalog_cluster(cluster_name)
        if cluster.gpu.name == gpu.name:
            return dataclasses.replace(
                cluster,
                name=gpu.name,
                display_name=f"one node of {cluster.display_name}",
                gpu=gpu,
                num_nodes=1,
                max_nodes_per_job=None,
                max_job_time_s=None,
            )
    raise HardwareError(
        f"no node is described for GPU {gpu.name!r}; write a cluster YAML with 'gpu: {gpu.name}' "
        f"(see hardware/README.md)"
    )


# ---------------------------------------------------------------------------------------------------------
# reading and checking


def _as_path(name_or_path: str | Path) -> Path | None:
    """A path if the argument names a YAML file (existing or with a .yaml/.yml suffix), else None."""
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or text.endswith((".yaml", ".yml")) or "/" in text or "\\" in text:
        path = Path(text).expanduser()
        if not path.is_file():
            raise HardwareError(f"{path}: no such file")
        return path
    return None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise HardwareError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise HardwareError(f"{path}: not UTF-8 text (byte {exc.start}); expected YAML") from None
    try:
        data = yaml.load(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise HardwareError(f"{path}: malformed YAML{where}: {problem}") from None
    except RecursionError:
        raise HardwareError(f"{path}: YAML nested too deeply") from None
    if not isinstance(data, dict):
        raise HardwareError(f"{path}: expected a mapping of fields at the top level")
    return data


def _check_keys(data: dict, expected: tuple[str, ...], where: str) -> None:
    missing = [k for k in expected if k not in data]
    if missing:
        raise HardwareError(f"{where}: missing field {missing[0]!r}")
    extra = sorted(str(k) for k in data if k not in expected)
    if extra:
        raise HardwareError(f"{where}: unknown field {extra[0]!r} (fields: {', '.join(expected)})")


def _number(value: Any, where: str) -> float | int:
    """A YAML number; strings such as '141e9' (YAML 1.1 reads them as text) are converted."""
    if isinstance(value, bool):
        raise HardwareError(f"{where}: expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        number = value
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise HardwareError(f"{where}: expected a number, got {value!r}") from None
    else:
        raise HardwareError(f"{where}: expected a number, got {value!r}")
    if number != number or number in (float("inf"), float("-inf")):
        raise HardwareError(f"{where}: expected a finite number, got {value!r}")
    return number


def _positive(value: Any, where: str) -> float | int:
    number = _number(value, where)
    if number <= 0:
        raise HardwareError(f"{where}: must be positive, got {value!r}")
    return number


def _integer(value: Any, where: str, minimum: int) -> int:
    number = _number(value, where)
    if number != int(number):
        raise HardwareError(f"{where}: expected an integer, got {value!r}")
    if number < minimum:
        raise HardwareError(f"{where}: must be at least {minimum}, got {value!r}")
    return int(number)


def _sources(data: dict, numbers: tuple[str, ...], fields: tuple[str, ...], where: str) -> dict[str, str]:
    sources = data.get("sources")
    if not isinstance(sources, dict):
        raise HardwareError(f"{where}: 'sources' must map field names to citations")
    for key, text in sources.items():
        base = str(key).split(".")[0]
        if base not in fields:
            raise HardwareError(f"{where}: sources names unknown field {key!r}")
        if not isinstance(text, str) or not text.strip():
            raise HardwareError(f"{where}: sources.{key} must be a non-empty citation")
    for field in numbers:
        if data.get(field) is not None and field not in sources:
            raise HardwareError(f"{where}: field {field!r} has no entry in sources")
    return {str(k): v for k, v in sources.items()}


def _gpu_from_file(path: Path) -> GpuSpec:
    return _gpu_from_dict(_read_yaml(path), path)


def _gpu_from_dict(data: dict, path: Path) -> GpuSpec:
    where = str(path)
    _check_keys(data, _GPU_FIELDS, where)
    sources = _sources(data, _GPU_NUMBERS, _GPU_FIELDS, where)
    flops = data["peak_flops_per_s"]
    if not isinstance(flops, dict) or not flops:
        raise HardwareError(f"{where}: peak_flops_per_s must map dtypes to FLOP/s")
    try:
        return GpuSpec(
            name=str(data["name"]),
            display_name=str(data["display_name"]),
            memory_bytes=_positive(data["memory_bytes"], f"{where}: memory_bytes"),
            memory_bandwidth_bytes_per_s=_positive(
                data["memory_bandwidth_bytes_per_s"], f"{where}: memory_bandwidth_bytes_per_s"
            ),
            peak_flops_per_s={
                str(k): float(_positive(v, f"{where}: peak_flops_per_s.{k}")) for k, v in flops.items()
            },
            num_sms=_integer(data["num_sms"], f"{where}: num_sms", 1),
            compute_capability=str(data["compute_capability"]),
            nvlink_links=_integer(data["nvlink_links"], f"{where}: nvlink_links", 0),
            nvlink_bandwidth_per_link_bytes_per_s=float(_number(
                data["nvlink_bandwidth_per_link_bytes_per_s"], f"{where}: nvlink_bandwidth_per_link_bytes_per_s"
            )),
            pcie_bandwidth_bytes_per_s=_positive(
                data["pcie_bandwidth_bytes_per_s"], f"{where}: pcie_bandwidth_bytes_per_s"
            ),
            sources=sources,
        )
    except SpecError as exc:
        raise HardwareError(f"{where}: {exc}") from None


def _link(data: Any, where: str) -> LinkSpec:
    if isinstance(data, str):  # a catalog fabric by name (hardware/fabrics/<name>.yaml)
        if data not in list_fabrics():
            raise HardwareError(f"{where}: unknown fabric {data!r}; known fabrics: {', '.join(list_fabrics())}")
        return _catalog_fabric(data)
    if not isinstance(data, dict):
        raise HardwareError(f"{where}: expected a mapping with fields {', '.join(_LINK_FIELDS)}")
    _check_keys(data, _LINK_FIELDS, where)
    try:
        return LinkSpec(
            name=str(data["name"]),
            bandwidth_bytes_per_s=_positive(data["bandwidth_bytes_per_s"], f"{where}.bandwidth_bytes_per_s"),
            latency_s=_positive(data["latency_s"], f"{where}.latency_s"),
            source=str(data["source"] or ""),
        )
    except SpecError as exc:
        raise HardwareError(f"{where}: {exc}") from None


def _matrix(value: Any, where: str) -> tuple[tuple[int, ...], ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(row, list) for row in value):
        raise HardwareError(f"{where}: nvlink_matrix must be a list of rows")
    return tuple(
        tuple(_integer(x, f"{where}: nvlink_matrix[{i}][{j}]", 0) for j, x in enumerate(row))
        for i, row in enumerate(value)
    )


def _resolve_gpu(ref: Any, path: Path) -> GpuSpec:
    ref = str(ref)
    if ref in list_gpus():
        return _catalog_gpu(ref)
    candidate = (path.parent / ref).expanduser()
    if ref.endswith((".yaml", ".yml")) and candidate.is_file():
        return _gpu_from_file(candidate)
    raise HardwareError(f"{path}: gpu {ref!r} is not a catalog GPU ({', '.join(list_gpus())}) nor a GPU YAML file")


def _cluster_from_dict(data: dict, path: Path) -> ClusterSpec:
    where = str(path)
    version = data.pop("vllm_version", None)
    _check_keys(data, tuple(f for f in _CLUSTER_FIELDS if f != "vllm_version"), where)
    sources = _sources(data, _CLUSTER_NUMBERS, _CLUSTER_FIELDS, where)
    max_nodes = data["max_nodes_per_job"]
    max_time = data["max_job_time_s"]
    inter = data["inter_node_link"]
    try:
        return ClusterSpec(
            name=str(data["name"]),
            display_name=str(data["display_name"]),
            gpu=_resolve_gpu(data["gpu"], path),
            gpus_per_node=_integer(data["gpus_per_node"], f"{where}: gpus_per_node", 1),
            num_nodes=_integer(data["num_nodes"], f"{where}: num_nodes", 1),
            max_nodes_per_job=None if max_nodes is None else _integer(max_nodes, f"{where}: max_nodes_per_job", 1),
            max_job_time_s=None if max_time is None else float(_positive(max_time, f"{where}: max_job_time_s")),
            intra_node_topology=str(data["intra_node_topology"]),
            nvlink_matrix=_matrix(data["nvlink_matrix"], where),
            intra_node_link=_link(data["intra_node_link"], f"{where}: intra_node_link"),
            inter_node_link=None if inter is None else _link(inter, f"{where}: inter_node_link"),
            nics_per_node=_integer(data["nics_per_node"], f"{where}: nics_per_node", 0),
            host_memory_bytes=_positive(data["host_memory_bytes"], f"{where}: host_memory_bytes"),
            host_to_gpu_link=_link(data["host_to_gpu_link"], f"{where}: host_to_gpu_link"),
            sources=sources,
            vllm_version=None if version is None else str(version),
        )
    except SpecError as exc:
        raise HardwareError(f"{where}: {exc}") from None
