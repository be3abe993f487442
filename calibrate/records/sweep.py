"""Sweep files: YAML -> a list of frozen `RunConfig`s, each with a stable `run_id`.

A sweep file has `defaults` and `groups`; every key may sit in `defaults`, in a group, or in a group's `grid`,
where each value is a list and the group expands to the cartesian product of those lists (see
calibrate/README.md for the schema). One `RunConfig` is one workload on one engine configuration; runs that
share an `EngineSpec` (calibrate.records.engine_spec) share one vLLM engine (one process).
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from calibrate.records.engine_spec import EngineSpec, spec_hash
from perfmodel.errors import UserError

SWEEP_DISTRIBUTIONS = ("lognormal", "uniform")  # the kinds a sweep file names (a subset of the simulator's)


class SweepError(UserError, ValueError):
    """A sweep file is wrong: one line naming the file, the key and what is wrong."""


@dataclass(frozen=True, kw_only=True)
class LengthDist:
    """How a sweep file spells a length distribution (its run ids hash this spelling); lengths are drawn by the
    one distribution type, ``simulator.workload.LengthDistribution`` (``distribution()``).

    lognormal: `mean` is the arithmetic mean of the lengths, `sigma` the std of their logarithm.
    uniform: integers in [min, max]. Samples are clipped to [min, max] and rounded.
    """

    dist: str
    mean: float | None = None
    sigma: float | None = None
    min: int = 1
    max: int | None = None

    def __post_init__(self) -> None:
        if self.dist not in SWEEP_DISTRIBUTIONS:
            raise ValueError(f"dist must be one of {', '.join(SWEEP_DISTRIBUTIONS)}, got {self.dist!r}")
        if self.dist == "lognormal" and (self.mean is None or self.sigma is None or self.mean <= 0):
            raise ValueError("lognormal needs mean > 0 and sigma")
        if self.dist == "uniform" and self.max is None:
            raise ValueError("uniform needs min and max")
        if self.max is not None and self.max < self.min:
            raise ValueError("max < min")

    def distribution(self):
        """The same distribution as a ``simulator.workload.LengthDistribution``."""
        from simulator.workload import LengthDistribution

        if self.dist == "uniform":
            return LengthDistribution(kind="uniform", low=self.min, high=self.max, min_tokens=self.min,
                                      max_tokens=self.max)
        return LengthDistribution(kind="lognormal", mean=float(self.mean), sigma=float(self.sigma),
                                  min_tokens=self.min, max_tokens=self.max)


Length = int | LengthDist


@dataclass(frozen=True, kw_only=True)
class Workload:
    """One measured workload: `num_prompts` requests of random token ids.

    offline: all requests handed to `LLM.generate` at once. online: arrivals at `request_rate` (requests/s;
    inf = all at t=0; gamma inter-arrivals with shape `burstiness`, 1 = Poisson) and at most `max_concurrency`
    requests in flight. `shared_prefix_len` > 0: every prompt starts with the same `shared_prefix_len` token ids
    (for prefix caching; each prompt's remaining tokens stay random), so input lengths must exceed it.
    """

    input_len: Length
    output_len: Length
    num_prompts: int
    request_rate: float = math.inf
    burstiness: float = 1.0
    max_concurrency: int | None = None
    shared_prefix_len: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.shared_prefix_len < 0:
            raise ValueError("shared_prefix_len must be >= 0")
        if self.shared_prefix_len and _min_len(self.input_len) <= self.shared_prefix_len:
            raise ValueError(f"shared_prefix_len {self.shared_prefix_len} must be below every input_len")
        if self.num_prompts < 1:
            raise ValueError("num_prompts must be >= 1")
        for name in ("input_len", "output_len"):
            v = getattr(self, name)
            if isinstance(v, int) and v < 1:
                raise ValueError(f"{name} must be >= 1")
        if not self.request_rate > 0:
            raise ValueError("request_rate must be > 0 (inf: all at once)")
        if not self.burstiness > 0:
            raise ValueError("burstiness must be > 0")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")

    def lengths(self) -> tuple[list[int], list[int]]:
        """(input lengths, output lengths) of every request, deterministic in `seed`."""
        import numpy as np

        rng = np.random.default_rng([self.seed, 1])
        return _lengths(self.input_len, rng, self.num_prompts), _lengths(self.output_len, rng, self.num_prompts)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["request_rate"] = _json_float(self.request_rate)
        if not self.shared_prefix_len:
            del d["shared_prefix_len"]  # absent when unused: run_ids of workloads without a prefix stay unchanged
        return d


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """One workload on one engine configuration: the unit the store records."""

    engine: EngineSpec
    workload: Workload
    sweep: str = ""
    group: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"engine": self.engine.to_dict(), "workload": self.workload.to_dict()}

    @property
    def run_id(self) -> str:
        """Hash of the canonical engine + workload configuration (sweep and group names excluded)."""
        return spec_hash(self.to_dict())

    @property
    def engine_id(self) -> str:
        return self.engine.engine_id

    def describe(self) -> str:
        e, w = self.engine, self.workload
        rate = "" if e.mode == "offline" else f" rate={w.request_rate:g}" + (
            f" conc={w.max_concurrency}" if w.max_concurrency else "")
        return (f"{Path(e.model).name} tp{e.tensor_parallel_size} pp{e.pipeline_parallel_size} {e.mode}"
                f" seqs={e.max_num_seqs} in={_len_str(w.input_len)} out={_len_str(w.output_len)}"
                f" n={w.num_prompts}{rate}")


@dataclass(frozen=True, kw_only=True)
class Sweep:
    name: str
    path: Path | None  # the YAML file; relative model paths are relative to its folder
    runs: tuple[RunConfig, ...]

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path is not None else Path.cwd()

    def by_engine(self) -> dict[EngineSpec, list[RunConfig]]:
        """Runs grouped by engine configuration, in the order of the file."""
        groups: dict[EngineSpec, list[RunConfig]] = {}
        for run in self.runs:
            groups.setdefault(run.engine, []).append(run)
        return groups


# --------------------------------------------------------------------------------------------------- loading

_ALIASES = {"tp": "tensor_parallel_size", "pp": "pipeline_parallel_size"}
_ENGINE_KEYS = {f.name for f in dataclasses.fields(EngineSpec)}
_WORKLOAD_KEYS = {f.name for f in dataclasses.fields(Workload)} - {"seed"}
_GROUP_KEYS = {"name", "grid"}
MAX_SWEEP_RUNS = 100_000  # runs one sweep file may expand to (a real sweep has hundreds)
_TYPES: dict[str, tuple[type, ...]] = {
    "mode": (str,), "model": (str,), "dummy_weights": (bool,), "tensor_parallel_size": (int,),
    "pipeline_parallel_size": (int,), "dtype": (str,), "max_num_seqs": (int,), "max_num_batched_tokens": (int,),
    "gpu_memory_utilization": (float, int), "max_model_len": (int,), "enforce_eager": (bool,),
    "block_size": (int,), "kv_cache_dtype": (str,), "quantization": (str,), "enable_prefix_caching": (bool,),
    "disable_custom_all_reduce": (bool,), "distributed_executor_backend": (str,), "seed": (int,),
    "hardware": (str,), "extra_engine_args": (dict,), "input_len": (int, dict), "output_len": (int, dict),
    "num_prompts": (int,), "request_rate": (float, int, str), "burstiness": (float, int),
    "max_concurrency": (int,), "shared_prefix_len": (int,),
}
_OPTIONAL = ({f.name for f in dataclasses.fields(EngineSpec) if f.default is None} - {"model"}) | {"max_concurrency"}


def load_sweep(path: str | Path) -> Sweep:
    """Read and validate a sweep file; raises `SweepError` with one line (file: key: problem)."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SweepError(f"{path}: no such sweep file") from None
    except (OSError, UnicodeDecodeError, RecursionError) as exc:
        raise SweepError(f"{path}: cannot read as YAML text "
                         f"({getattr(exc, 'strerror', None) or type(exc).__name__})") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" line {where.line + 1}" if where is not None else ""
        raise SweepError(f"{path}:{line} not valid YAML ({getattr(exc, 'problem', exc)})") from None
    return parse_sweep(doc, path=path)


def parse_sweep(doc: Any, *, path: Path | None = None, name: str | None = None) -> Sweep:
    """Validate an already-parsed sweep document (see `load_sweep`)."""
    where = str(path) if path is not None else "<sweep>"
    if not isinstance(doc, dict):
        raise SweepError(f"{where}: top level must be a mapping with 'groups'")
    unknown = set(doc) - {"name", "defaults", "groups"}
    if unknown:
        raise SweepError(f"{where}: unknown top-level key '{sorted(unknown)[0]}' (expected name, defaults, groups)")
    sweep_name = str(doc.get("name") or name or (path.stem if path is not None else "sweep"))
    defaults = doc.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise SweepError(f"{where}: defaults: must be a mapping")
    _check_keys(defaults, f"{where}: defaults")
    groups = doc.get("groups")
    if not isinstance(groups, list) or not groups:
        raise SweepError(f"{where}: groups: must be a non-empty list")
    runs: list[RunConfig] = []
    seen: set[str] = set()
    for i, group in enumerate(groups):
        if not isinstance(group, dict):
            raise SweepError(f"{where}: groups[{i}]: must be a mapping")
        gname = str(group.get("name", f"group{i}"))
        gwhere = f"{where}: groups[{i}] ({gname})"
        grid = group.get("grid") or {}
        if not isinstance(grid, dict):
            raise SweepError(f"{gwhere}: grid: must be a mapping of key -> list")
        fixed = {k: v for k, v in group.items() if k not in _GROUP_KEYS}
        _check_keys(fixed, gwhere)
        _check_keys(grid, f"{gwhere}: grid", grid=True)
        keys = list(grid)
        size = math.prod(len(grid[k]) for k in keys)
        if len(runs) + size > MAX_SWEEP_RUNS:  # counted before expanding: a 6M-run grid is refused at once
            raise SweepError(f"{gwhere}: grid: {size:,} runs; a sweep holds at most {MAX_SWEEP_RUNS:,}")
        for values in itertools.product(*(grid[k] for k in keys)):
            merged = {**_canon(defaults), **_canon(fixed), **_canon(dict(zip(keys, values)))}
            run = _make_run(merged, gwhere, sweep_name, gname)
            if run.run_id in seen:
                continue  # the same run listed twice: measure it once
            seen.add(run.run_id)
            runs.append(run)
    return Sweep(name=sweep_name, path=path, runs=tuple(runs))


def _canon(d: Mapping[str, Any]) -> dict[str, Any]:
    return {_ALIASES.get(k, k): v for k, v in d.items()}


def _check_keys(d: Mapping[str, Any], where: str, *, grid: bool = False) -> None:
    for key, value in d.items():
        k = _ALIASES.get(key, key)
        if k not in _ENGINE_KEYS and k not in _WORKLOAD_KEYS:
            known = ", ".join(sorted(_ENGINE_KEYS | _WORKLOAD_KEYS | set(_ALIASES)))
            raise SweepError(f"{where}: unknown key '{key}' (known: {known})")
        values = value if grid else [value]
        if grid and (not isinstance(value, list) or not value):
            raise SweepError(f"{where}: {key}: grid values must be a non-empty list, got {value!r}")
        for v in values:
            _check_type(k, v, f"{where}: {key}")


def _check_type(key: str, value: Any, where: str) -> None:
    if value is None and key in _OPTIONAL:
        return
    types = _TYPES[key]
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok:
        names = " or ".join("mapping" if t is dict else t.__name__ for t in types)
        raise SweepError(f"{where}: must be {names}, got {value!r}")


def _make_run(d: dict[str, Any], where: str, sweep: str, group: str) -> RunConfig:
    if "model" not in d:
        raise SweepError(f"{where}: model: missing (set it in defaults or the group)")
    if "input_len" not in d or "output_len" not in d or "num_prompts" not in d:
        missing = [k for k in ("input_len", "output_len", "num_prompts") if k not in d][0]
        raise SweepError(f"{where}: {missing}: missing")
    engine_kw = {k: v for k, v in d.items() if k in _ENGINE_KEYS}
    work_kw = {k: v for k, v in d.items() if k in _WORKLOAD_KEYS}
    work_kw["seed"] = d.get("seed", 0)
    for k in ("input_len", "output_len"):
        if isinstance(work_kw[k], dict):
            try:
                work_kw[k] = LengthDist(**work_kw[k])
            except TypeError as exc:
                raise SweepError(f"{where}: {k}: {exc}") from None
            except ValueError as exc:
                raise SweepError(f"{where}: {k}: {exc}") from None
    if "request_rate" in work_kw:
        try:
            work_kw["request_rate"] = float(work_kw["request_rate"])
        except ValueError:
            raise SweepError(f"{where}: request_rate: must be a number or inf") from None
    if "gpu_memory_utilization" in engine_kw and engine_kw["gpu_memory_utilization"] is not None:
        engine_kw["gpu_memory_utilization"] = float(engine_kw["gpu_memory_utilization"])
    mode = engine_kw.get("mode", "offline")
    if mode == "offline":
        for k in ("request_rate", "max_concurrency", "burstiness"):
            if k in work_kw and work_kw[k] not in (None, math.inf, 1.0):
                raise SweepError(f"{where}: {k}: only for mode: online")
    try:
        engine = EngineSpec(**engine_kw)
        workload = Workload(**work_kw)
    except ValueError as exc:
        raise SweepError(f"{where}: {exc}") from None
    max_len = engine.max_model_len
    if max_len is not None:
        need = _max_len(workload.input_len) + _max_len(workload.output_len)
        if need > max_len:
            raise SweepError(f"{where}: input_len + output_len = {need} exceeds max_model_len {max_len}")
    return RunConfig(engine=engine, workload=workload, sweep=sweep, group=group)


def _max_len(v: Length) -> int:
    if isinstance(v, int):
        return v
    return v.max if v.max is not None else 0


def _min_len(v: Length) -> int:
    return v if isinstance(v, int) else v.min


def _lengths(v: Length, rng, n: int) -> list[int]:
    return [v] * n if isinstance(v, int) else v.distribution().sample(n, rng).tolist()


def _len_str(v: Length) -> str:
    return str(v) if isinstance(v, int) else f"{v.dist}({v.mean or v.min},{v.sigma or v.max})"


def _json_float(x: float) -> float | str:
    return "inf" if math.isinf(x) else x
