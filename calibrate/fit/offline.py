"""Fit the model's coefficients to measured runs.

Two independent fits:

* **Memory** (group ``memory``: ``activation_bytes_per_token``, ``non_torch_memory_bytes``): vLLM's KV budget
  is linear in them, ``kv = util*total - weights - logits - a*act_unit - non_torch``, so a bounded linear least
  squares on the measured KV bytes (relative residuals) finds them. CUDA-graph memory (group ``graph_memory``)
  is outside that budget and not fitted.
* **Step cost** (groups ``step``, ``eager``, ``tensor_parallel``, ``pipeline_parallel``): offline runs'
  schedules do not depend on step times, so each run is simulated once with vLLM's measured KV blocks and its
  steps are recorded; the predicted elapsed time is then ``r * sum_k cost(step_k; theta)``, where ``r`` (1
  without pipeline parallelism) carries the pipeline's overlap from the simulation. ``scipy.optimize.least_squares`` minimises
  log-ratio residuals with bounds, a robust soft-L1 loss and a pull toward the datasheet defaults; the
  simulation is redone at the fitted values and the fit repeated (``outer_iterations``).

With ``anchors`` (perfmodel.cost.anchors: each coefficient's independent value and stated sd), the pull is each
anchor's Gaussian prior instead (``fit_online.anchor_penalty``: penalty residuals weighted by the anchor's sd, in
units of a run's log error), in the step fits and in the memory fit alike: the fit explains only what the anchors
leave, and ``findings_`` lists the coefficients at a bound or far from their anchors.

Only coefficients the data can inform are fitted: no eager runs, no ``eager_layer_overhead_s``; no TP>1, no
all-reduce terms; no PP>1, no ``p2p_latency_s``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy import optimize

from calibrate.fit.online import (ANCHOR_DATA_SD, ONLINE_REGULARIZATION, SOFT_L1_SCALE, anchor_arrays, anchor_penalty,
                                  kernel_coefficients, uninformed_by_engine)
from calibrate.fit.observations import Observation
from hardware.spec import ClusterSpec
from perfmodel.cost.coefficients import Coefficients
from perfmodel.cost.memory import activation_peak_bytes, kv_bytes_per_token_per_gpu

# Coefficient groups (perfmodel.cost.coefficients.GROUPS) fitted on elapsed times, in this order; then the coefficients
# of the kernel families the runs use (perfmodel.cost.kernels.KERNELS, kernel_coefficients).
STEP_GROUPS = ("step", "eager", "tensor_parallel", "pipeline_parallel")


def measured_kv_bytes(obs: Observation) -> float | None:
    """KV bytes per GPU vLLM allocated: its log's "Available KV cache memory" when recorded, else its block
    count times the bytes of a block (exact for models without sliding-window layer groups)."""
    if obs.measured_kv_cache_bytes:
        return float(obs.measured_kv_cache_bytes)
    if obs.measured_num_gpu_blocks and not any(obs.model.layer_is_sliding):
        return obs.measured_num_gpu_blocks * obs.engine.block_size * kv_bytes_per_token_per_gpu(
            obs.model, obs.precision, obs.layout)
    return None


def informed_step_coefficients(observations: Sequence[Observation], *, anchored: bool = False) -> tuple[str, ...]:
    """The step-cost coefficients these runs can pin down. With anchors, also the per-prefill-token time (its
    anchor keeps it from taking over the GEMMs' compute efficiency; without one it was left at 0)."""
    offline = [o for o in observations if o.mode == "offline"]
    informed = {"step": True, "eager": any(o.eager for o in offline),
                "tensor_parallel": any(o.layout.tp > 1 for o in offline),
                "pipeline_parallel": any(o.layout.pp > 1 for o in offline)}
    skip = uninformed_by_engine(offline)
    groups = STEP_GROUPS + (("prefill",) if anchored else ())
    informed["prefill"] = anchored
    names = [n for g in groups if informed[g] for n in Coefficients.group(g)] + list(kernel_coefficients(offline))
    return tuple(n for n in names if n not in skip)


@dataclass(frozen=True)
class _Trace:
    """One offline run's recorded steps and the simulation's pipeline factor."""

    obs: Observation
    steps: object  # BatchStats with array fields
    pipeline_factor: float
    measured_elapsed_s: float


OFFLINE_REGULARIZATION = 0.1
# With anchors, a run's relative error of measured KV bytes of one sd (the memory fit's in-sample error is 0.3%)
MEMORY_ANCHOR_DATA_SD = 0.005


class CoefficientFitter:
    """Estimator: ``CoefficientFitter(cluster, prior).fit(observations).coefficients_``."""

    def __init__(self, cluster: ClusterSpec, prior: Coefficients | None = None, *, step_names: Sequence[str] | None = None,
                 fit_memory: bool = True, regularization: float | None = None, outer_iterations: int = 2,
                 progress: Callable[[str], None] | None = None, anchors=None,
                 prior_fitted: Sequence[str] = ()) -> None:
        self.cluster = cluster
        self.prior = prior or Coefficients()
        # perfmodel.cost.anchors mapping: the priors become the anchors' (``regularization`` then weighs them, default 1)
        self.anchors = anchors
        self.prior_fitted = tuple(prior_fitted)  # fitted in the prior profile (--prior): never reset to anchors
        if anchors is not None and regularization is None:
            regularization = 1.0
        self.step_names = step_names
        self.fit_memory = fit_memory
        # None: 0.1 for offline fits, ONLINE_REGULARIZATION for online ones (calibrate/fit/online.py says why)
        self.regularization = OFFLINE_REGULARIZATION if regularization is None else regularization
        self._online_regularization = ONLINE_REGULARIZATION if regularization is None else regularization
        self.outer_iterations = outer_iterations
        self.progress = progress  # messages of the online fit's stages (minutes on the Taiwania runs)

    # -- public ----------------------------------------------------------------------------------------------
    def fit(self, observations: Sequence[Observation]) -> "CoefficientFitter":
        from calibrate.fit.online import fit_online, online_step_coefficients

        offline = [o for o in observations if o.mode == "offline" and o.measured.get("elapsed_s")]
        online = [o for o in observations if o.mode == "online"]
        if offline:
            names = tuple(self.step_names or informed_step_coefficients(offline, anchored=self.anchors is not None))
        else:  # online runs only (the Taiwania 2 log): fit by re-simulating them
            names = tuple(self.step_names or online_step_coefficients(online))
        fit_memory = self.fit_memory and any(measured_kv_bytes(o) for o in observations)
        coefficients = self.prior
        if self.anchors is not None:
            coefficients = coefficients.replace(**self._unfitted_at_anchors(names, fit_memory))
        self.memory_result_ = None
        if fit_memory:
            coefficients, self.memory_result_ = self._fit_memory(observations, coefficients)
        self.step_result_ = None
        if offline and names:
            for _ in range(self.outer_iterations):
                traces = [self._trace(o, coefficients) for o in offline]
                coefficients, self.step_result_ = self._fit_steps(traces, coefficients, names)
        elif not offline:
            if online and names:
                coefficients, self.step_result_, self._num_data = fit_online(
                    online, coefficients, self.prior, names, regularization=self._online_regularization,
                    progress=self.progress, anchors=self.anchors)
        self.coefficients_ = coefficients
        self.fitted_ = (Coefficients.group("memory") if self.memory_result_ is not None else ()) + (
            names if self.step_result_ is not None else ())
        self.stderr_ = self._stderr(names)
        self.num_observations_ = len(observations)
        if self.anchors is not None:
            from perfmodel.cost.anchors import findings

            self.findings_ = findings(coefficients, self.fitted_, self.anchors)
        else:
            self.findings_ = []
        return self

    def _unfitted_at_anchors(self, names: Sequence[str], fit_memory: bool) -> dict[str, float]:
        """Every anchored coefficient these runs do not fit takes its anchor's value, so that a profile carries
        no generic default where a measurement exists (docs/anchors.md). Kept as they are: the server's terms,
        which ``calibrate fit-serving`` fits (their anchors were timed on V1's server, not V0's), and whatever the
        prior profile fitted."""
        kept = (set(names) | set(self.prior_fitted) | set(Coefficients.group("serving"))
                | (set(Coefficients.group("memory")) if fit_memory else set()))
        return {n: a.value for n, a in self.anchors.items() if n not in kept}

    # -- memory ----------------------------------------------------------------------------------------------
    def _fit_memory(self, observations: Sequence[Observation], prior: Coefficients):
        """Bounded linear least squares on each engine's measured KV bytes, relative residuals."""
        rows, targets, seen = [], [], set()
        no_activation = prior.replace(activation_bytes_per_token=0.0, non_torch_memory_bytes=0.0)
        unit = no_activation.replace(activation_bytes_per_token=1.0)
        for o in observations:
            key = (o.model_name, o.layout, o.engine)
            kv_measured = measured_kv_bytes(o)
            if kv_measured is None or key in seen:
                continue
            seen.add(key)
            plan = o.memory(no_activation)
            logits = activation_peak_bytes(o.model, o.precision, o.layout, o.engine, no_activation)
            forward_unit = activation_peak_bytes(o.model, o.precision, o.layout, o.engine, unit) - logits
            rhs = plan.budget_bytes - plan.weights_bytes - logits - kv_measured
            rows.append([forward_unit / kv_measured, 1.0 / kv_measured])
            targets.append(rhs / kv_measured)
        if not rows:
            return prior, None
        names = Coefficients.group("memory")  # the columns of ``rows``, in this order
        if self.anchors is not None:  # each anchor a row: weight * (x_i - anchor_i) in units of a run's error
            centre, sd = anchor_arrays(self.anchors, names)
            weight = self.regularization * MEMORY_ANCHOR_DATA_SD / sd
            rows += list(np.diag(weight))
            targets += list(weight * centre)
        lower, upper = zip(*(Coefficients.bounds(n) for n in names))
        res = optimize.lsq_linear(np.array(rows), np.array(targets), bounds=(lower, upper))
        return prior.replace(**dict(zip(names, map(float, res.x)))), res

    # -- step cost -------------------------------------------------------------------------------------------
    def _trace(self, obs: Observation, coefficients: Coefficients) -> _Trace:
        result = obs.simulate(coefficients, kv_from="measured")
        summed = float(np.sum(obs.step_cost(coefficients)(result.steps)))
        factor = result.metrics.elapsed_s / summed if summed > 0 else 1.0
        return _Trace(obs=obs, steps=result.steps, pipeline_factor=factor, measured_elapsed_s=obs.measured["elapsed_s"])

    def _predict_elapsed(self, trace: _Trace, coefficients: Coefficients) -> float:
        cost = trace.obs.step_cost(coefficients)
        return trace.pipeline_factor * float(np.sum(cost(trace.steps)))

    def _fit_steps(self, traces: Sequence[_Trace], start: Coefficients, names: Sequence[str]):
        prior = np.array([getattr(self.prior, n) for n in names])
        x0 = np.array([getattr(start, n) for n in names])
        lower, upper = (np.array(v) for v in zip(*(Coefficients.bounds(n) for n in names)))
        scale = np.where(prior > 0, prior, (upper - lower) * 1e-3)
        x0 = np.clip(x0, lower + 1e-12, upper)

        if self.anchors is None:
            def pull(x: np.ndarray) -> np.ndarray:
                return self.regularization * (x - prior) / scale

            pull_per_unit = self.regularization / scale
        else:
            centre, sd = anchor_arrays(self.anchors, names)

            def pull(x: np.ndarray) -> np.ndarray:
                return anchor_penalty(x, centre, sd, self.regularization)

            pull_per_unit = self.regularization * ANCHOR_DATA_SD / sd

        def residuals(x: np.ndarray) -> np.ndarray:
            c = start.replace(**dict(zip(names, map(float, x))))
            data = [math.log(self._predict_elapsed(t, c) / t.measured_elapsed_s) for t in traces]
            return np.concatenate([data, pull(x)])

        result = optimize.least_squares(residuals, x0, bounds=(lower, upper), x_scale=scale, loss="soft_l1",
                                        f_scale=SOFT_L1_SCALE, max_nfev=200 * len(names))
        result.pull_per_unit = pull_per_unit  # d(pull residual)/dx at the prior, for _stderr
        if self.anchors is not None:
            result.unit_scale = scale
        self._num_data = len(traces)
        fitted = start.replace(**dict(zip(names, map(float, result.x))))
        return fitted, result

    def _stderr(self, names: Sequence[str]) -> dict[str, float]:
        """Standard errors at the optimum: a Gauss-Newton covariance from the data rows of the Jacobian
        ``least_squares`` returns (weighted by its soft-L1 loss, so runs far off count less) and the raw data
        residuals' variance, plus the pull toward the prior per unit as the fit scaled it (``pull_per_unit``: a
        prior of 0 must not read as an infinitely strong pull, which made the pseudo-inverse discard every other
        direction)."""
        out: dict[str, float] = {}
        self.covariance_ = None  # (names, matrix) of the step coefficients, for perfmodel.uncertainty.intervals
        res = self.step_result_
        if res is not None:
            n = self._num_data
            jac = res.jac[:n]
            dof = max(1, n - len(names))
            sigma2 = float(np.sum(res.fun[:n] ** 2)) / dof
            # anchored fits invert in units of each coefficient's scale (x_scale): pinv's cutoff is relative to
            # the largest singular value, and a coefficient counted in thousands of rows beside one in
            # microseconds had its variance cut to 0
            unit = getattr(res, "unit_scale", np.ones(len(names)))
            try:
                scaled = np.linalg.pinv((jac * unit).T @ (jac * unit) + np.diag((res.pull_per_unit * unit) ** 2))
                cov = unit[:, None] * scaled * unit[None, :] * sigma2
                out.update({nm: float(math.sqrt(max(cov[i, i], 0.0))) for i, nm in enumerate(names)})
                self.covariance_ = (tuple(names), cov)
            except np.linalg.LinAlgError:
                pass
        return out
