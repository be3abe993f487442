"""Calibrated intervals on predicted figures: how far the truth may be from a prediction, from data.

Every interval is built in log space around the point prediction ``p``: with ``e = log(measured / predicted)``
the residuals the profile's ``uncertainty:`` section stores (written by ``perfmodel calibrate uncertainty``),

    low  = p * exp(c - sqrt((c - q_lo)^2 + (z * s)^2))
    high = p * exp(c + sqrt((q_hi - c)^2 + (z * s)^2))

where ``c`` is the residuals' median, ``q_lo, q_hi = c -+ h`` with ``h`` the ``level`` quantile of their distance
``|e - c|`` from it, ``z`` the normal quantile of the level and ``s`` the coefficient-covariance term. Three
sources:

(a) **coefficients** (k-fold pools of ``MIN_EMPIRICAL`` and more: the weights of "Quantiles" instead): the
    fit's Gauss-Newton covariance ``C`` of the fitted coefficients, propagated by the
    first-order delta method, ``s^2 = g' C g`` with ``g = d log(time) / d theta`` by forward differences on
    representative steps of the scenario's workload (the closed-form wave for throughputs and E2E, one
    prefill step for TTFT, one decode step for TPOT/ITL). The schedule is held fixed; no re-simulation. The
    cross-validated residuals of (b) come from refits, so they already hold the coefficient noise of runs like
    the calibration runs: with them, only the excess ``s = sqrt(max(s_raw^2 - s_ref^2, 0))`` over the
    calibration runs' median term ``s_ref`` (``coefficient_sd_reference``) is added, which leaves a prediction
    with more leverage (another model size, layout or workload) its extra width. Transfer residuals (c) are
    one fitted coefficient vector's errors, and a pool of fewer than ``MIN_EMPIRICAL`` residuals stands for
    the calibration runs too poorly: both get the whole term.
(b) **model error**: cross-validated residuals, by regime (``regime``: offline/online, CUDA graphs/eager,
    one GPU/several) where the regime holds at least ``MIN_REGIME`` of them, else pooled. A model the profile
    was fitted on uses the k-fold residuals (runs unseen, model seen); another model uses the
    leave-one-model-out residuals (the model family transfer).
(b') **model transfer**: a model the profile was not fitted on, or a GEMM kernel path (``kernel_path``) none of
    its runs used, takes the residuals of fits on other models' runs predicting them (calibrate/fit/transfer.py,
    the cases of benchmarks/bench_transfer.py: fits on one model, and on the small models for the large ones)
    pooled with the leave-one-model-out ones, where the profile stores them (``residuals.model_transfer``). A
    profile fitted on one model cannot measure that: it may carry another profile's, added to its own k-fold
    residuals (``model_transfer_source`` names it; ``calibrate uncertainty --model-transfer-from``).
(c) **transfer**: a profile used on another GPU (``Profile.status_for`` says "transferred") or another vLLM
    engine generation than it was fitted on uses the residuals of that profile predicting another calibrated
    data set (H200 -> Taiwania 2 V100 and back; the CPU set for a CPU), instead of (b).

Quantiles: with at least ``MIN_EMPIRICAL`` residuals, split conformal on the distance from the median (``h``
is the ``ceil((n + 1) * level)``-th smallest distance; one order statistic for both ends, so with ~30
residuals a bound is not the single most extreme residual of its side, as equal 5% tails would make it); with
fewer, a Student-t prediction interval ``mean +- t * sd * sqrt(1 + 1/n)``.
k-fold residuals (a model the profile was fitted on) are **locally weighted** where the profile stores each
one's coefficient term ``s_i`` (``residual_scales``) and the pool holds at least ``MIN_EMPIRICAL``: the
distances are measured in units of their run's own term, ``|e_i - c| / s_i``, and a prediction whose term is
``s`` gets ``c +- q * s`` with ``q`` that order statistic of the scaled distances, replacing (a)'s quadrature
sum (Lei, G'Sell, Rinaldo, Tibshirani and Wasserman, "Distribution-free predictive inference for
regression", JASA 2018, section 5.2). The k-fold errors grow with the term (the H200 runs: Spearman 0.53
between ``|e|`` and ``s``), so a typical prediction gets a narrower band and one with more leverage a wider one,
at the same coverage. Leave-one-model-out and transfer residuals are not weighted: a new model's or GPU's
error is a bias of its own that the coefficient term does not see (weighted, the H200's leave-one-model-out
intervals covered 84% instead of 89%).
A figure with no residuals of its own borrows its family's (TTFT p99 the TTFT median's, TPOT the ITL's, ...).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Mapping, Sequence

import numpy as np

from perfmodel.errors import UserError

DEFAULT_LEVEL = 0.9
MIN_REGIME = 8  # residuals a regime needs before it is used alone
MIN_EMPIRICAL = 20  # below this many residuals, a t interval instead of order statistics
REPRESENTATIVE_KINDS = ("wave", "prefill", "decode")  # the step times the coefficient term differentiates
# Decode steps of the closed-form wave the coefficient term costs (evenly spaced, each standing for its share):
# the step cost is near-linear in the context, so the log-gradient barely moves (tests/test_uncertainty.py),
# and the term is costed ~11 times per layout, which with every step made intervals 1.6x predict's time.
WAVE_DECODE_SAMPLES = 16
PREDICT_FIGURES = ("tokens_per_second", "output_tokens_per_second", "requests_per_second", "elapsed_time")
LATENCY_STATS = ("mean", "median", "p90", "p99")
SIMULATE_FIGURES = ("requests_per_second", "input_tokens_per_second", "output_tokens_per_second",
                    "tokens_per_second", "elapsed_s",
                    *(f"{k}_s_{s}" for k in ("ttft", "tpot", "itl", "e2e") for s in LATENCY_STATS))


def check_level(level: float) -> float:
    if not 0 < level < 1:
        raise UserError(f"--interval-level must be between 0 and 1 (e.g. 0.9), got {level}")
    return float(level)


def regime(*, mode: str, eager: bool, gpus: int) -> str:
    """The regime key residuals are grouped by, e.g. ``offline/graphs/1gpu``."""
    return f"{mode}/{'eager' if eager else 'graphs'}/{'1gpu' if gpus <= 1 else 'multigpu'}"


# What residuals inform a figure: (stored metric, sign) candidates in order (sign -1: the figure is the
# inverse of the metric, e.g. elapsed time of requests/s), and which representative step times it scales with.
def _family(figure: str) -> tuple[tuple[tuple[str, int], ...], str]:
    thr = (("tokens_per_second", 1), ("output_tokens_per_second", 1), ("requests_per_second", 1))
    if figure in ("tokens_per_second", "input_tokens_per_second"):
        return thr, "wave"
    if figure == "output_tokens_per_second":
        return (thr[1], thr[0], thr[2]), "wave"
    if figure == "requests_per_second":
        return (thr[2], thr[0], thr[1]), "wave"
    if figure in ("elapsed_time", "elapsed_s"):
        return tuple((m, -1) for m, _ in (thr[2], thr[0], thr[1])), "wave"
    if figure == "decode_tokens_per_s_per_request_mean":  # per-request decode speed, about 1 / TPOT
        return ((figure, 1), ("tpot_s_mean", -1), ("itl_s_mean", -1)), "decode"
    kind, _, stat = figure.partition("_s_")
    own = ((f"{kind}_s_{stat}", 1),)
    if kind == "ttft":
        return own + (("ttft_s_median", 1), ("ttft_s_mean", 1)), "prefill"
    if kind in ("tpot", "itl"):
        other = "itl" if kind == "tpot" else "tpot"
        return own + ((f"{kind}_s_median", 1), (f"{kind}_s_mean", 1), (f"{other}_s_mean", 1),
                      ("decode_tokens_per_s_per_request_mean", -1)), "decode"
    if kind == "e2e":
        return own + (("e2e_s_median", 1), ("e2e_s_mean", 1)), "wave"
    raise ValueError(f"no interval model for {figure!r}")


def step_kind(figure: str) -> str:
    """The representative step time ("wave", "prefill", "decode") a figure scales with."""
    return _family(figure)[1]


@dataclass(frozen=True, kw_only=True)
class Interval:
    """``level`` intervals of named figures: ``bounds[name] = (low, high)`` in the figure's own units."""

    level: float
    bounds: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    source: str = ""  # which residuals: "k-fold", "leave-one-model-out", "transfer", ...

    def to_dict(self) -> dict[str, Any]:
        """``{"level": 0.9, "source": ..., name: [low, high], ...}``, the JSON shape of issue 13 plus where the
        widths come from (issue 22: an interval for what the profile never saw says so)."""
        return {"level": self.level, "source": self.source,
                **{k: [float(lo), float(hi)] for k, (lo, hi) in self.bounds.items()}}

    def relative_half_width(self, name: str, point: float) -> float:
        """(high - low) / 2 / point, the ``±`` a table shows; nan when unknown."""
        if name not in self.bounds or not point or not math.isfinite(point):
            return math.nan
        lo, hi = self.bounds[name]
        return (hi - lo) / 2.0 / abs(point)

    def csv_columns(self, names: Sequence[str]) -> dict[str, float]:
        out: dict[str, float] = {}
        for n in names:
            lo, hi = self.bounds.get(n, (math.nan, math.nan))
            out[f"{n}_low"], out[f"{n}_high"] = lo, hi
        return out


def log_quantiles(residuals: Sequence[float], level: float) -> tuple[float, float, float] | None:
    """(lower, centre, upper) of log residuals at ``level`` (module docstring); None with fewer than 3."""
    r = np.asarray(residuals, dtype=float)
    n = len(r)
    if n < 3:
        return None
    alpha = 1.0 - level
    if n >= MIN_EMPIRICAL:
        centre = float(np.median(r))
        k = min(n, math.ceil((n + 1) * level))
        half = float(np.sort(np.abs(r - centre))[k - 1])
        return centre - half, centre, centre + half
    mean, sd = float(np.mean(r)), float(np.std(r, ddof=1))
    half = t_quantile(1 - alpha / 2, n - 1) * sd * math.sqrt(1 + 1 / n)
    return mean - half, mean, mean + half


def t_quantile(p: float, dof: int) -> float:
    """Student-t quantile by the Cornish-Fisher expansion around the normal (within 1% for dof >= 3)."""
    z = NormalDist().inv_cdf(p)
    v = float(dof)
    return (z + (z**3 + z) / (4 * v) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3))


def excess_sd(coef_sd: float, reference: float, num_residuals: int) -> float:
    """The coefficient term beyond the ``reference`` the cross-validated residuals already hold (module
    docstring, (a)); the whole term when they are fewer than ``MIN_EMPIRICAL`` (a handful of residuals, of
    one or two runs' models, stands for the calibration runs too poorly to take anything off). A term that
    could not be computed (NaN) counts as 0, as nothing is known of it."""
    if not math.isfinite(coef_sd):
        return 0.0
    if num_residuals < MIN_EMPIRICAL or not math.isfinite(reference):
        return coef_sd
    return math.sqrt(max(coef_sd * coef_sd - reference * reference, 0.0))


def reference_for(reference: Mapping[str, Any], key: str) -> Mapping[str, float]:
    """The coefficient reference of regime ``key`` (per step kind): the regime's own where the calibration runs
    held ``MIN_REGIME`` of it, else that of all runs (``"all"``); a flat mapping (profiles of before regimes had
    their own) serves every regime."""
    if not reference or all(isinstance(v, (int, float)) for v in reference.values()):
        return reference or {}
    return reference.get(key) or reference.get("all") or {}


def figure_bounds(point: float, residuals: Mapping[str, Mapping[str, Sequence[float]]], figure: str, key: str,
                  coef_sd: Mapping[str, float], reference: Mapping[str, Any], level: float,
                  scales: Mapping[str, Mapping[str, Sequence[float]]] | None = None) -> tuple[float, float] | None:
    """(low, high) of ``figure``'s interval around ``point`` in regime ``key``, or None with too few residuals:
    the residuals ``lookup`` picks and, where ``scales`` gives each of at least ``MIN_EMPIRICAL`` of them its
    coefficient term and the prediction has one, the locally weighted quantile (``normalized_half_width``);
    otherwise their quantiles and the coefficient term (per step kind, ``coef_sd``) beyond the regime's
    ``reference`` (module docstring)."""
    pooled = _pooled(residuals, scales, figure, key)
    if pooled is None or len(pooled[0]) < 3:
        return None
    r, s = pooled
    kind = step_kind(figure)
    own = coef_sd.get(kind, math.nan)
    if s is not None and len(r) >= MIN_EMPIRICAL and math.isfinite(own) and own > 0:
        centre, q_scaled = normalized_half_width(r, s, level)
        return point * math.exp(centre - q_scaled * own), point * math.exp(centre + q_scaled * own)
    q = log_quantiles(r, level)
    sd = excess_sd(coef_sd.get(kind, 0.0), reference_for(reference, key).get(kind, 0.0), len(r))
    return combine(point, q, sd, level)


def combine(point: float, q: tuple[float, float, float], coef_sd: float, level: float) -> tuple[float, float]:
    """The interval of ``point`` from residual quantiles ``q`` and the coefficient term (module docstring)."""
    lo, c, hi = q
    zs = NormalDist().inv_cdf(0.5 + level / 2) * coef_sd
    return (point * math.exp(c - math.hypot(c - lo, zs)), point * math.exp(c + math.hypot(hi - c, zs)))


# -- the profile's residuals ----------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class ResidualModel:
    """The ``uncertainty:`` section of a profile, read (see ``calibrate/report/uncertainty.py`` for the writer)."""

    section: Mapping[str, Any]
    gpu: str | None

    @property
    def covariance(self) -> tuple[tuple[str, ...], np.ndarray] | None:
        cov = self.section.get("covariance")
        if not cov:
            return None
        return tuple(cov["names"]), np.asarray(cov["matrix"], dtype=float)

    @property
    def coefficient_sd_reference(self) -> Mapping[str, Any]:
        """The calibration runs' median coefficient term per regime and step kind (module docstring, (a);
        ``reference_for`` picks one regime's); empty in profiles written before it was stored (then the whole
        term is added)."""
        return self.section.get("coefficient_sd_reference") or {}

    def choose(self, *, model_name: str, gpu_name: str, engine_generation: str, kernel_path: str | None = None
               ) -> tuple[str, Mapping]:
        """(source label, {regime: {metric: residuals}}) for a prediction of this kind."""
        fitted_gens = self.section.get("engine_generations") or ()
        transferred = (self.gpu is not None and gpu_name != self.gpu) or (
            bool(fitted_gens) and engine_generation not in fitted_gens)
        if transferred:
            device = "cpu" if gpu_name.startswith("cpu") else "gpu"
            sets = [t for t in self.section.get("transfer") or () if t.get("device", "gpu") == device]
            if sets:
                pooled: dict[str, list[float]] = {}
                for t in sets:
                    for metric, values in (t.get("residuals") or {}).items():
                        pooled.setdefault(metric, []).extend(values)
                label = "transfer from " + " + ".join(str(t.get("name")) for t in sets)
                return label, {"any": pooled}
        cv = self.section.get("residuals") or {}
        seen = _model_key(model_name) in {_model_key(m) for m in self.section.get("models") or ()}
        kernels = self.section.get("kernel_paths") or ()
        new_kernel = bool(kernels) and kernel_path is not None and kernel_path not in kernels
        if (not seen or new_kernel) and cv.get("model_transfer"):
            what = f"model {model_name}" if not seen else f"kernel path {kernel_path}"
            source = self.section.get("model_transfer_source")
            if source:  # a profile of one model: another profile's measured model transfer (calibrate/report/uncertainty.py)
                return (f"model-transfer measured on {source} ({what} not in the fit; this profile's runs are of "
                        f"one model: its k-fold errors plus {source}'s errors of fits on other models predicting "
                        f"them)", cv["model_transfer"])
            return (f"model-transfer ({what} not in the fit: fits on other models' runs predicting them, "
                    f"calibrate/fit/transfer.py, with leave-one-model-out)",
                    _merged(cv["model_transfer"], cv.get("unseen_model") or {}))
        if not seen and cv.get("unseen_model"):
            return "leave-one-model-out", cv["unseen_model"]
        if not seen and cv.get("seen_model"):  # one model in the fit: no data on another model's error
            return "k-fold (of other models: this one was not in the fit, so likely too narrow)", cv["seen_model"]
        return ("k-fold" if cv.get("seen_model") else "none"), cv.get("seen_model") or {}

    @property
    def seen_model_scales(self) -> Mapping[str, Mapping[str, Sequence[float]]]:
        """Each k-fold residual's coefficient term (shaped like ``residuals.seen_model``), for the locally
        weighted quantiles; empty in profiles written before they were stored."""
        return (self.section.get("residual_scales") or {}).get("seen_model") or {}


_CHECKPOINT_SUFFIX = re.compile(r"(-(instruct|chat|it|hf|gptq|awq|int4|int8|fp8))+$")


def _model_key(name: str) -> str:
    """One key for a model's names: catalog ``qwen2.5-72b`` (with -q gptq), the fitted checkpoint folder
    ``qwen2.5-72b-instruct-gptq-int4`` and its HF id ``Qwen/Qwen2.5-72B-Instruct-GPTQ-Int4`` are one network."""
    return _CHECKPOINT_SUFFIX.sub("", str(name).strip().lower().rsplit("/", 1)[-1])


def kernel_path(precision) -> str:
    """The GEMM kernel family a prediction runs (a ``Precision.quant_kernel``, or ``dense`` for cuBLAS GEMMs in
    the activation dtype): an interval for one the profile's runs never used carries the model-transfer spread."""
    return precision.quant_kernel or "dense"


def _merged(*pools: Mapping[str, Mapping[str, Sequence[float]]]) -> dict[str, dict[str, list[float]]]:
    """{regime: {metric: residuals}} pools concatenated regime by regime and metric by metric."""
    out: dict[str, dict[str, list[float]]] = {}
    for pool in pools:
        for key, by_metric in pool.items():
            for metric, values in by_metric.items():
                out.setdefault(key, {}).setdefault(metric, []).extend(values)
    return out


def _select(residuals: Mapping[str, Mapping[str, Sequence[float]]], figure: str, key: str
            ) -> tuple[list[tuple[str, str]], int] | None:
    """The (regime, metric) lists ``lookup`` pools for ``figure`` in regime ``key``, and their sign."""
    candidates, _ = _family(figure)
    mode, eager, gpus = (key.split("/") + ["", "", ""])[:3]
    tiers = (lambda r: r == key, lambda r: r.startswith(mode + "/") and r.endswith("/" + gpus),
             lambda r: r.startswith(mode + "/"), lambda r: True)
    for tier in tiers:
        for metric, sign in candidates:
            chosen = [(r, metric) for r, by_metric in residuals.items() if tier(r) and by_metric.get(metric)]
            if sum(len(residuals[r][m]) for r, m in chosen) >= (MIN_REGIME if tier is not tiers[-1] else 3):
                return chosen, sign
    return None


def lookup(residuals: Mapping[str, Mapping[str, Sequence[float]]], figure: str, key: str) -> np.ndarray | None:
    """The residuals (log measured/predicted, signed for ``figure``) for a figure in regime ``key``: the
    regime itself when it has ``MIN_REGIME``, else the regimes of the same mode and GPU count, then the mode,
    then all; within each, the figure's own metric first, then its family."""
    pooled = _pooled(residuals, None, figure, key)
    return pooled[0] if pooled else None


def lookup_scales(residuals: Mapping[str, Mapping[str, Sequence[float]]],
                  scales: Mapping[str, Mapping[str, Sequence[float]]] | None, figure: str, key: str
                  ) -> np.ndarray | None:
    """The coefficient terms of the residuals ``lookup`` returns, in the same order (``scales`` is shaped like
    ``residuals``); None when any of them is missing or not positive."""
    pooled = _pooled(residuals, scales, figure, key)
    return pooled[1] if pooled else None


def _pooled(residuals: Mapping[str, Mapping[str, Sequence[float]]],
            scales: Mapping[str, Mapping[str, Sequence[float]]] | None, figure: str, key: str
            ) -> tuple[np.ndarray, np.ndarray | None] | None:
    """(``lookup``'s residuals, their ``lookup_scales``) from one selection; None without residuals."""
    selected = _select(residuals, figure, key)
    if selected is None:
        return None
    chosen, sign = selected
    values = sign * np.asarray([v for r, m in chosen for v in residuals[r][m]], dtype=float)
    weights = [(scales.get(r) or {}).get(m) for r, m in chosen] if scales else None
    if weights is None or any(w is None or len(w) != len(residuals[r][m]) for w, (r, m) in zip(weights, chosen)):
        return values, None
    arr = np.asarray([v for w in weights for v in w], dtype=float)
    return values, (arr if arr.size and np.all(np.isfinite(arr)) and np.all(arr > 0) else None)


def normalized_half_width(residuals: Sequence[float], scales: Sequence[float], level: float
                          ) -> tuple[float, float]:
    """(centre, q): locally weighted split conformal. The scores are the residuals' distances from their median
    in units of each run's own coefficient term, ``|e_i - c| / s_i``; ``q`` is the ``ceil((n + 1) * level)``-th
    smallest, and a prediction whose coefficient term is ``s`` gets ``c +- q * s``."""
    r, s = np.asarray(residuals, dtype=float), np.asarray(scales, dtype=float)
    centre = float(np.median(r))
    k = min(len(r), math.ceil((len(r) + 1) * level))
    return centre, float(np.sort(np.abs(r - centre) / s)[k - 1])


# -- the coefficient term --------------------------------------------------------------------------------------
def coefficient_log_sd(scenario, layout, covariance, kinds: Sequence[str] = REPRESENTATIVE_KINDS) -> dict[str, float]:
    """Delta-method standard deviation of log step time, per kind of ``kinds`` ("wave", "prefill", "decode")."""
    if covariance is None:
        return {}
    names, cov = covariance
    coefficients = scenario.profile.coefficients
    base = _representative_times(scenario, layout, coefficients, kinds)
    grads = {k: np.zeros(len(names)) for k in base}
    for i, name in enumerate(names):
        value = getattr(coefficients, name, None)
        sd = math.sqrt(max(cov[i, i], 0.0))
        if value is None or sd == 0.0:
            continue
        lower, upper = type(coefficients).bounds(name)
        step = 0.1 * sd if value + 0.1 * sd <= upper else -0.1 * sd
        if not lower <= value + step <= upper:
            continue
        moved = _representative_times(scenario, layout, coefficients.replace(**{name: value + step}), kinds)
        for k in base:
            grads[k][i] = (math.log(moved[k]) - math.log(base[k])) / step
    return {k: float(math.sqrt(max(g @ cov @ g, 0.0))) for k, g in grads.items()}


def _representative_times(scenario, layout, coefficients, kinds: Sequence[str]) -> dict[str, float]:
    from perfmodel.analysis.estimate import wave_time_s
    from simulator.batch import BatchStats

    cost = scenario.with_coefficients(coefficients).step_cost(layout)
    w, e = scenario.workload, scenario.engine
    batch = max(1, min(e.max_num_seqs, w.num_prompts))
    prefill = min(w.input_len, e.max_num_batched_tokens)
    context = batch * (w.input_len + max(1, w.output_len // 2))
    times = {
        "wave": lambda: wave_time_s(cost, batch, w.input_len, w.output_len, e.max_num_batched_tokens,
                                    decode_samples=WAVE_DECODE_SAMPLES),
        "prefill": lambda: float(cost(BatchStats(prefill, 0, prefill * (prefill + 1) / 2.0, prefill, 0, 1, 1))),
        "decode": lambda: float(cost(BatchStats(0, batch, 0.0, 0, context, batch, batch)))}
    return {k: times[k]() for k in kinds}


# -- the public entry points -----------------------------------------------------------------------------------
def interval_for(scenario, layout, points: Mapping[str, float], *, mode: str, level: float = DEFAULT_LEVEL,
                 coef_sd: Mapping[str, float] | None = None) -> Interval | None:
    """Intervals of the figures in ``points`` (name -> predicted value) of ``layout`` under ``scenario``;
    None when the profile has no ``uncertainty:`` section. ``mode``: "offline" or "online"."""
    section = scenario.profile.uncertainty
    if not section:
        return None
    level = check_level(level)
    model = ResidualModel(section=section, gpu=scenario.profile.gpu)
    source, residuals = model.choose(model_name=scenario.model.name, gpu_name=scenario.cluster.gpu.name,
                                     engine_generation=scenario.engine.engine_generation,
                                     kernel_path=kernel_path(scenario.precision))
    if coef_sd is None:
        kinds = tuple(sorted({step_kind(name) for name, point in points.items()
                              if point is not None and math.isfinite(point) and point > 0}))
        coef_sd = coefficient_log_sd(scenario, layout, model.covariance, kinds)
    key = regime(mode=mode, eager=scenario.engine.enforce_eager, gpus=layout.tp * layout.pp)
    reference = {} if source.startswith("transfer") else model.coefficient_sd_reference
    scales = model.seen_model_scales if source == "k-fold" else None
    bounds = {}
    for name, point in points.items():
        if point is None or not math.isfinite(point) or point <= 0:
            continue
        figure = figure_bounds(point, residuals, name, key, coef_sd, reference, level, scales)
        if figure is not None:
            bounds[name] = figure
    return Interval(level=level, bounds=bounds, source=source)


def predict_intervals(scenario, predictions, level: float = DEFAULT_LEVEL) -> list[Interval | None]:
    """One interval per ``perfmodel.analysis.predict.LayoutPrediction`` (None where it does not fit)."""
    return [interval_for(scenario, p.layout, {n: getattr(p, n) for n in PREDICT_FIGURES}, mode="offline",
                         level=level) if p.fits else None for p in predictions]


def metrics_interval(scenario, layout, metrics, *, online: bool, level: float = DEFAULT_LEVEL) -> Interval | None:
    """The interval of a simulation's ``simulator.metrics.Metrics`` (the figures of ``SIMULATE_FIGURES``)."""
    return interval_for(scenario, layout, {n: getattr(metrics, n) for n in SIMULATE_FIGURES},
                        mode="online" if online else "offline", level=level)


def plus_minus(value: float, interval: Interval | None, name: str, scale: float = 1.0) -> str:
    """``6,363 ±7%`` for tables (the number shown times ``scale``, e.g. 1e3 for ms); the bare number when
    there is no interval."""
    from perfmodel.analysis.report import _cell

    text = _cell(value * scale)
    if interval is None:
        return text
    half = interval.relative_half_width(name, value)
    return text if math.isnan(half) else f"{text} ±{100 * half:.0f}%"
