"""Which hardware a results record was measured on, and whether that is the hardware a fit or check assumes.

A record names its hardware in ``model.hardware`` / ``config.engine.hardware`` / ``provenance.hardware`` (a
catalog name: the runner's ``--hardware`` or an import's) and, when the runner measured it, the device in
``provenance.gpu_name`` (``"NVIDIA H200"`` from nvidia-smi, ``"cpu:x86_64"`` for vLLM's CPU backend). Two GPUs
are the same when their family (``h200``, ``v100``, ``a100``, ``cpu`` ...) is: the catalog key's first part
and the first such word of a device name. Records that say nothing are "unknown", not a mismatch.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

_FAMILY = re.compile(r"\b([a-z]{1,2}\d{2,4}[a-z]?|cpu)\b")


def gpu_family(name: str) -> str | None:
    """``h200-sxm`` -> ``h200``; ``NVIDIA H200`` -> ``h200``; ``Tesla V100-SXM2-32GB`` -> ``v100``; ``cpu:x86_64``
    -> ``cpu``; None when no family is recognisable."""
    match = _FAMILY.search(str(name).lower().replace("_", " ").replace(":", " "))
    return match.group(1) if match else None


def record_hardware(record: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(catalog hardware name, measured device name) of a record; either may be None."""
    eng = (record.get("config") or {}).get("engine") or {}
    prov = record.get("provenance") or {}
    name = (record.get("model") or {}).get("hardware") or eng.get("hardware") or prov.get("hardware")
    return (str(name) if name else None), (str(prov["gpu_name"]) if prov.get("gpu_name") else None)


def _family_of_name(name: str) -> str | None:
    try:
        from hardware import load_hardware

        return gpu_family(load_hardware(name).gpu.name)
    except Exception:  # not a catalog name: read the name itself
        return gpu_family(name)


def hardware_mismatch(record: Mapping[str, Any], cluster) -> str | None:
    """Why ``record`` was not measured on ``cluster``'s GPU (one phrase), or None when it was or cannot tell."""
    want = gpu_family(cluster.gpu.name)
    name, device = record_hardware(record)
    for label, family in (("measured on", device and gpu_family(device)), ("hardware", name and _family_of_name(name))):
        if family and want and family != want:
            return f"{label} {device if label == 'measured on' else name}"
    return None


def check_record_hardware(records: list[Mapping[str, Any]], cluster, *, allow_other: bool = False) -> list[str]:
    """Refuse (UserError, one line) records measured on another GPU than ``cluster``'s, unless ``allow_other``;
    return the warnings to print: the mismatches when allowed, and how many records name no hardware."""
    from perfmodel.errors import UserError

    ok = [r for r in records if r.get("status") == "ok"]
    bad = [(r.get("run_id", "?"), why) for r in ok if (why := hardware_mismatch(r, cluster))]
    unknown = sum(1 for r in ok if record_hardware(r) == (None, None))
    warnings = []
    if bad:
        first_id, first_why = bad[0]
        line = (f"{len(bad)} of {len(ok)} runs were not measured on {cluster.gpu.name} (--hardware "
                f"{cluster.name}): run {first_id} {first_why}")
        if not allow_other:
            raise UserError(f"{line}; give the hardware they ran on, or --allow-other-hardware")
        warnings.append(f"warning: {line}; kept (--allow-other-hardware)")
    if unknown:
        warnings.append(f"warning: {unknown} of {len(ok)} runs name no hardware; assumed {cluster.name}")
    return warnings
