"""Fit step-cost coefficients to online runs (served requests, closed loop or at a rate) by re-simulating them.

Offline runs are fitted by re-costing one recorded schedule (calibrate/fit/offline.py); online runs cannot be: when a
request arrives depends on when earlier ones finished, and under vLLM's V0 engine a waiting prompt stalls every
decode, so TTFT and per-request decode speed depend on the mix of prefill and decode steps, not on their sum
alone. Each residual evaluation therefore simulates every run again (tens of milliseconds each on the Taiwania
runs). The residuals are the log ratios predicted / measured of each run's output tokens/s, mean TTFT and mean
per-request decode speed (those it has), plus a pull toward the prior like the offline fit's:

    r = [log(pred_k(theta) / meas_k) for runs and metrics] + [lambda * (theta_i - prior_i) / scale_i]

with ``scale_i = max(prior_i, (upper_i - lower_i) / 10)``.

minimised by ``scipy.optimize.least_squares`` with bounds, a soft-L1 loss and finite differences, from two
starts (``minimise_with_scan``): the given one, and the best point of a quasi-random scan of the bounds.
Closed-loop runs give the objective local minima (a request's arrival depends on when earlier ones finished,
a prompt's on which steps it stalls).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
from scipy import optimize

from calibrate.fit.observations import Observation, predicted_metrics
from perfmodel.cost.coefficients import Coefficients
from perfmodel.engine.releases import EngineGeneration

# The pull toward the prior, per unit of each coefficient (PRIOR_SCALE_RANGE_FRACTION). Weaker than offline
# fits' 0.1: the soft-L1 loss (f_scale 0.05) flattens the 10-40% residuals online runs start from, and at 0.1
# the pull held most coefficients at their datasheet priors (Taiwania 2 in-sample decode-speed error 20% at
# 0.1, 11% at 0.02, before the V0 pipeline model).
ONLINE_REGULARIZATION = 0.02
# The smallest unit of the pull toward the prior, as a fraction of a coefficient's bounds (see fit_online).
PRIOR_SCALE_RANGE_FRACTION = 0.1
# Points of the scan of the bounds for a second start (minimise_with_scan). Measured on the Taiwania 2 runs:
# without the TP8 PP1 runs, the fit from the prior alone stops at a soft-L1 cost of 0.24 (its own training runs
# 33% off at c=1) although a point of cost 0.013 exists; the best of 32 points starts the fit there (64: the same
# optimum). Each point costs one evaluation.
SCAN_POINTS = 32
SOFT_L1_SCALE = 0.05  # residuals beyond ~5% count about linearly (robust to a run the model cannot match)
# With anchors (perfmodel.cost.anchors), a run's log error of one sd, against which an anchor's sd is weighed: the
# penalty of a coefficient one anchor sd away equals that of one run off by this much.
ANCHOR_DATA_SD = SOFT_L1_SCALE
# What an online run's measurements say, in the names predicted_metrics uses.
ONLINE_FIT_METRICS = ("output_tokens_per_second", "ttft_s_mean", "decode_tokens_per_s_per_request_mean")


def uninformed_by_engine(observations: Sequence[Observation]) -> set[str]:
    """Coefficients none of the runs' engines pays: the all-reduce latency of the implementation vLLM picks for
    none of their TP groups (``comm.custom_allreduce_applies``; both without TP), and the pipeline's Ray call
    (``pp_step_overhead_s``, ``pp_per_seq_overhead_s``) without a V0 engine with pipeline parallelism."""
    from perfmodel.cost import comm
    from perfmodel.layout import place

    custom = [comm.custom_allreduce_applies(o.scenario.cluster, o.layout.tp,
                                            place(o.layout, o.scenario.cluster.gpus_per_node).tp_spans_nodes)
              for o in observations if o.layout.tp > 1]
    skip = set()
    if not any(custom):
        skip.add("allreduce_latency_s")
    if all(custom):
        skip.add("nccl_allreduce_latency_s")
    if not any(o.layout.pp > 1 and o.engine.engine_generation is EngineGeneration.V0 for o in observations):
        skip.update(("pp_step_overhead_s", "pp_per_seq_overhead_s"))
    return skip


def kernel_coefficients(observations: Sequence[Observation]) -> tuple[str, ...]:
    """The own coefficients (``KernelFamily.fitted``) of the kernel families these runs use, in table order."""
    from perfmodel.cost import kernels

    used = {f.name for o in observations for f in kernels.families_used(o.model, o.precision, o.layout.tp)}
    kv = {n for o in observations for n in kernels.kv_cache_coefficients(o.precision)}
    return tuple(n for f in kernels.KERNELS if f.name in used for n in f.fitted) + tuple(sorted(kv))


def online_step_coefficients(observations: Sequence[Observation]) -> tuple[str, ...]:
    """The coefficients online runs of these layouts and kernels can pin down (fewer than offline runs:
    every evaluation is a simulation)."""
    names = ["gemm_compute_efficiency", "memory_efficiency", "step_overhead_s", "per_seq_overhead_s",
             "server_request_latency_s"]
    # Left at their priors: gemm_half_efficiency_tokens (the batch sizes of a closed-loop log do not separate
    # it from the compute efficiency), exllama_reread_fraction (1: each 8-row chunk is a block of its own that
    # reads the weights) and p2p_latency_s (tens of microseconds beside the milliseconds of a step).
    names += kernel_coefficients(observations)
    skip = uninformed_by_engine(observations)
    names += [n for n in ("allreduce_latency_s", "nccl_allreduce_latency_s", "pp_step_overhead_s",
                          "pp_per_seq_overhead_s") if n not in skip]
    if any(o.engine.engine_generation is EngineGeneration.V0 and not o.engine.enforce_eager for o in observations):
        names.append("eager_layer_overhead_s")  # V0 prefill steps run without CUDA graphs
    return tuple(names)


def serving_coefficients(observations: Sequence[Observation]) -> tuple[str, ...]:
    """The served-request coefficients these runs inform (docs/online-model.md), fitted on their own with the
    step costs kept (calibrate.fit.serving): the request's path and the stream's per-token cost always; the floor
    of steps without CUDA graphs only with V1 engines that use graphs."""
    names = ["server_request_latency_s", "server_stream_token_s"]
    if any(o.engine.engine_generation == "v1" and not o.engine.enforce_eager for o in observations):
        names.append("server_graphless_layer_s")
    return tuple(names)


def anchor_penalty(x: np.ndarray, centre: np.ndarray, sd: np.ndarray, weight: float = 1.0) -> np.ndarray:
    """Penalty residuals of a Gaussian prior N(centre, sd^2) on each coefficient, in the units of a run's log
    error (``ANCHOR_DATA_SD``), transformed so that ``least_squares``' soft-L1 loss of each equals the quadratic
    ``0.5 * p^2`` of ``p = weight * ANCHOR_DATA_SD * (x - centre) / sd``: the loss that makes the data residuals
    robust must not make an anchor soft (a coefficient 5 sd away would otherwise cost only linearly)."""
    p = weight * ANCHOR_DATA_SD * (np.asarray(x) - centre) / sd
    f = SOFT_L1_SCALE
    return np.sign(p) * f * np.sqrt((1.0 + p**2 / (2.0 * f**2)) ** 2 - 1.0)


def anchor_arrays(anchors, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(centres, sds) of the named coefficients' anchors."""
    return (np.array([anchors[n].value for n in names], float), np.array([anchors[n].sd for n in names], float))


def soft_l1_cost(residuals: np.ndarray) -> float:
    """The objective ``least_squares`` minimises with ``loss="soft_l1"`` and ``f_scale=SOFT_L1_SCALE``."""
    z = (np.asarray(residuals) / SOFT_L1_SCALE) ** 2
    return float(SOFT_L1_SCALE**2 * np.sum(np.sqrt(1.0 + z) - 1.0))


def minimise_with_scan(residuals, x0: np.ndarray, lower: np.ndarray, upper: np.ndarray, x_scale: np.ndarray, *,
                       scan_points: int = SCAN_POINTS, max_nfev: int = 40,
                       progress: Callable[[str], None] | None = None):
    """The better of two local fits: from ``x0`` and from the lowest-cost point of a scrambled Sobol scan of
    the bounds (fixed seed, so a fit is reproducible); ties keep ``x0``'s."""
    say = progress or (lambda _message: None)

    def local(start: np.ndarray, label: str):
        result = optimize.least_squares(residuals, start, bounds=(lower, upper), x_scale=x_scale, loss="soft_l1",
                                        f_scale=SOFT_L1_SCALE, diff_step=1e-3, max_nfev=max_nfev)
        say(f"local fit from {label}: cost {result.cost:.4g} after {result.nfev} evaluations")
        return result

    say(f"local fit from the start ({len(x0)} coefficients)")
    results = [local(x0, "the start")]
    if scan_points > 0:
        from scipy.stats import qmc

        say(f"scanning {scan_points} points of the bounds for a second start")
        points = lower + qmc.Sobol(len(x0), scramble=True, seed=0).random(scan_points) * (upper - lower)
        best = min(points, key=lambda x: _scan_cost(residuals, x))
        results.append(local(np.clip(best, lower + 1e-12, upper), "the scan's best point"))
    return min(results, key=lambda r: r.cost)


def _scan_cost(residuals, x: np.ndarray) -> float:
    """A scan point's cost; inf where the replay cannot run (a corner of the bounds may make a run impossible,
    which should cost the scan that point, not the whole fit)."""
    try:
        return soft_l1_cost(residuals(x))
    except (ArithmeticError, RuntimeError, ValueError):
        return math.inf


def fit_online(observations: Sequence[Observation], start: Coefficients, prior: Coefficients, names: Sequence[str],
               *, regularization: float = ONLINE_REGULARIZATION, max_nfev: int = 40, scan_points: int = SCAN_POINTS,
               progress: Callable[[str], None] | None = None, anchors=None):
    """(fitted coefficients, the OptimizeResult with ``pull_per_unit``, number of data residuals). With ``anchors``
    (perfmodel.cost.anchors), the pull toward the prior is replaced by each anchor's penalty (:func:`anchor_penalty`,
    ``regularization`` its weight)."""
    targets = [(o, metric, o.measured[metric]) for o in observations for metric in ONLINE_FIT_METRICS
               if o.measured.get(metric, 0) > 0]
    prior_x = np.array([getattr(prior, n) for n in names])
    lower, upper = (np.array(v) for v in zip(*(Coefficients.bounds(n) for n in names)))
    # The pull is per unit of the prior, but at least per tenth of the coefficient's range: a prior of a few
    # microseconds (per-sequence CPU time, all-reduce latencies) would otherwise act as a hard constraint.
    scale = np.maximum(np.where(prior_x > 0, prior_x, 0.0), (upper - lower) * PRIOR_SCALE_RANGE_FRACTION)
    x0 = np.clip(np.array([getattr(start, n) for n in names]), lower + 1e-12, upper)

    def residuals(x: np.ndarray) -> np.ndarray:
        c = start.replace(**dict(zip(names, map(float, x))))
        predicted = {o.run_id: predicted_metrics(o, o.simulate(c, kv_from="model", record_timeline=False))
                     for o in observations}
        data = [math.log(max(predicted[o.run_id].get(metric, 1e-9), 1e-9) / value) for o, metric, value in targets]
        return np.concatenate([data, pull(x)])

    if anchors is None:
        def pull(x: np.ndarray) -> np.ndarray:
            return regularization * (x - prior_x) / scale

        pull_per_unit = regularization / scale
    else:
        centre, sd = anchor_arrays(anchors, names)

        def pull(x: np.ndarray) -> np.ndarray:
            return anchor_penalty(x, centre, sd, regularization)

        pull_per_unit = regularization * ANCHOR_DATA_SD / sd
    result = minimise_with_scan(residuals, x0, lower, upper, scale, scan_points=scan_points, max_nfev=max_nfev,
                                progress=progress)
    result.pull_per_unit = pull_per_unit  # d(pull residual)/dx at the anchor, for fit.CoefficientFitter._stderr
    fitted = start.replace(**dict(zip(names, map(float, result.x))))
    return fitted, result, len(targets)
