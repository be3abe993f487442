"""Hardware catalog: GPUs and clusters as sourced YAML, loaded into frozen dataclasses."""

from hardware.catalog import (HardwareError, list_clusters, list_fabrics, list_gpus, load_fabric, load_gpu,
                              load_hardware, with_nodes)
from hardware.spec import ClusterSpec, GpuSpec, LinkSpec

__all__ = [
    "ClusterSpec",
    "GpuSpec",
    "HardwareError",
    "LinkSpec",
    "list_clusters",
    "list_fabrics",
    "list_gpus",
    "load_fabric",
    "load_gpu",
    "load_hardware",
    "with_nodes",
]
