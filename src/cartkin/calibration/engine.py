"""Calibration of a virtual population to published trial figures by importance reweighting.

θ = log typical values and log ω (SD of the log, from CV%) of the calibrated parameters. One proposal
population per arm is drawn from a wider log-normal around the start values and simulated once with
`cartkin.compare` (per-patient outcomes and drawn parameters kept). A candidate θ gives each proposal
patient the weight p_θ(φ_i) / q(φ_i) (log-normal densities of the log-parameters with the scenario's
correlations; covariates cancel), and every target statistic is a weighted mean or smoothed weighted median
of the per-patient outcomes: smooth in θ, no re-simulation (prevalence weighting, Allen et al. 2016,
CPT Pharmacometrics Syst Pharmacol 5:140). The targets' log-likelihood plus the log-normal priors is
maximised (L-BFGS-B within the bounds), the proposal re-centred at the estimate for the next round, and the
uncertainty taken from the Hessian (Laplace). The calibrated population is finally simulated plainly (no
weights) to report each target's simulated value with its Monte-Carlo interval.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize

from ..errors import CartkinError
from ..scenario.compare import compare
from . import statistics as st
from .spec import Target, Targets, cv_to_omega, omega_to_cv


@dataclass(frozen=True)
class TargetRow:
    """One target beside the calibrated population's simulated value."""
    target: Target
    observed_low: float
    observed_high: float
    simulated: float
    simulated_low: float
    simulated_high: float
    z: float
    p: float
    n_simulated: float

    @property
    def inside(self) -> bool:
        return bool(self.observed_low <= self.simulated <= self.observed_high)


@dataclass(frozen=True)
class Estimate:
    """A calibrated quantity: parameter, "typical" or "cv", start, estimate and 95% interval (Laplace)."""
    parameter: str
    quantity: str
    start: float
    value: float
    se_log: float
    low: float
    high: float
    at_bound: bool


@dataclass(frozen=True, eq=False)
class Calibration:
    """Result of `calibrate`: estimates, targets vs simulated, posterior draws, the calibrated scenario data."""
    targets: Targets
    estimates: tuple[Estimate, ...]
    rows: tuple[TargetRow, ...]
    draws: tuple[dict, ...]  # PARAMETER (typical) and PARAMETER_cv (CV%) per posterior draw
    typical: dict
    cv: dict
    scenario_data: dict = field(repr=False)  # calibrated.toml, without the uncertainty table
    converged: bool = False
    reason: str = ""
    ess: tuple[float, ...] = ()  # per arm, at the estimate, last round
    rounds: tuple[dict, ...] = ()  # per round: log posterior, ESS, estimate
    log_likelihood: float = math.nan
    profile: tuple[dict, ...] = ()  # scale, log_likelihood, per-target simulated values
    profile_interval: tuple[float, float, str] | None = None

    def summary_text(self) -> str:
        lines = [f"{self.targets.name}: {'converged' if self.converged else 'NOT converged'} ({self.reason})"]
        for e in self.estimates:
            lines.append(f"  {e.parameter} {e.quantity}: {e.start:.4g} -> {e.value:.4g} "
                         f"[{e.low:.4g}, {e.high:.4g}]" + (" (at a bound)" if e.at_bound else ""))
        inside = sum(r.inside for r in self.rows)
        lines.append(f"targets inside their 95% interval: {inside} of {len(self.rows)}")
        for r in self.rows:
            lines.append(f"  {'ok  ' if r.inside else 'MISS'} {r.target.statistic} [{', '.join(r.target.arms)}]: "
                         f"observed {r.target.value:.4g} [{r.observed_low:.4g}, {r.observed_high:.4g}], "
                         f"simulated {r.simulated:.4g} [{r.simulated_low:.4g}, {r.simulated_high:.4g}], "
                         f"z {r.z:.2f}")
        if self.profile_interval is not None:
            low, high, note = self.profile_interval
            lines.append(f"profile of {', '.join(self.targets.profile.parameters)} scale: consistent with the "
                         f"targets for scales {low:g} to {high:g} ({note})")
        return "\n".join(lines)


class _Space:
    """The calibrated coordinates x: log typical value and/or log ω of each moving parameter."""

    def __init__(self, targets: Targets, typical: dict, cv: dict):
        self.entries = []  # (parameter, "typical" | "cv", bounds in x, prior (mean, sd) in x or None)
        for m in targets.moving:
            if m.typical is not None:
                prior = (math.log(m.typical_prior[0]), cv_to_omega(m.typical_prior[1])) if m.typical_prior else None
                self.entries.append((m.name, "typical", (math.log(m.typical[0]), math.log(m.typical[1])), prior))
            if m.cv is not None:
                prior = (math.log(cv_to_omega(m.cv_prior[0])), cv_to_omega(m.cv_prior[1])) if m.cv_prior else None
                self.entries.append((m.name, "cv", (math.log(cv_to_omega(m.cv[0])), math.log(cv_to_omega(m.cv[1]))),
                                     prior))
        self.typical0, self.cv0 = dict(typical), dict(cv)

    def x_of(self, typical: dict, cv: dict) -> np.ndarray:
        return np.array([math.log(typical[p]) if q == "typical" else math.log(cv_to_omega(cv[p]))
                         for p, q, _, _ in self.entries])

    def values(self, x: np.ndarray) -> tuple[dict, dict]:
        typical, cv = dict(self.typical0), dict(self.cv0)
        for (p, q, _, _), xi in zip(self.entries, x):
            if q == "typical":
                typical[p] = math.exp(xi)
            else:
                cv[p] = omega_to_cv(math.exp(xi))
        return typical, cv

    def log_prior(self, x: np.ndarray) -> float:
        total = 0.0
        for (_, _, _, prior), xi in zip(self.entries, x):
            if prior is not None:
                total -= 0.5 * ((xi - prior[0]) / prior[1]) ** 2
        return total

    @property
    def bounds(self):
        return [b for _, _, b, _ in self.entries]


class _Proposal:
    """One simulated proposal population per arm: per-patient outcome columns and log-parameters."""

    def __init__(self, targets: Targets, typical: dict, cv: dict, proposal_cv: dict, seed: int, client=None):
        self.arm_names = targets.arm_names
        self.data, self.logx = [], []
        scenario = None
        for k in range(len(targets.arms)):
            scenario = targets.scenario((k,), targets.proposal_size, seed, typical, proposal_cv)
            result = compare(scenario, client=client, trials=False)
            arm = result.arms[0]
            self.data.append({name: np.asarray(v, dtype=float) for name, v in arm.outcomes.items()})
            spec = scenario.population
            self.names = tuple(spec.variability_cv)
            idx = [scenario.model.parameter_index(q) for q in self.names]
            self.logx.append(np.log(result.parameters[:, idx]))
        self.correlation = _correlation(self.names, scenario.population.correlation)
        self.inverse = np.linalg.inv(self.correlation)
        model = scenario.model
        self.mean_q, self.omega_q = self._moments(model, scenario.population.typical, scenario.population.variability_cv)
        self.model = model
        self.log_q = [self._log_density(x, self.mean_q, self.omega_q) for x in self.logx]

    def _moments(self, model, typical: dict, cv: dict):
        mean = np.array([math.log(typical.get(q, model.parameter(q).default)) for q in self.names])
        omega = np.array([cv_to_omega(cv[q]) for q in self.names])
        return mean, omega

    def _log_density(self, x: np.ndarray, mean: np.ndarray, omega: np.ndarray) -> np.ndarray:
        z = (x - mean) / omega
        return -0.5 * np.einsum("ij,jk,ik->i", z, self.inverse, z) - np.sum(np.log(omega))

    def weights(self, typical: dict, cv: dict) -> list[np.ndarray]:
        """Importance weights of each arm's proposal patients for the population with these typical values
        and CV%s of the calibrated parameters (the others as in the proposal)."""
        mean, omega = self.mean_q.copy(), self.omega_q.copy()
        for j, q in enumerate(self.names):
            if q in typical:
                mean[j] = math.log(typical[q])
            if q in cv:
                omega[j] = cv_to_omega(cv[q])
        out = []
        for x, log_q in zip(self.logx, self.log_q):
            log_w = self._log_density(x, mean, omega) - log_q
            log_w -= log_w.max()
            out.append(np.exp(log_w))
        return out


def _correlation(names, pairs) -> np.ndarray:
    R = np.eye(len(names))
    for (a, b), r in pairs.items():
        i, j = names.index(a), names.index(b)
        R[i, j] = R[j, i] = r
    return R


def _statistics(targets: Targets, arm_names, data, weights) -> list[st.Simulated]:
    return [st.simulated(t, arm_names, data, weights) for t in targets.targets]


def _log_likelihood(targets: Targets, sims) -> float:
    return float(sum(st.log_likelihood(t, s) for t, s in zip(targets.targets, sims)))


def _ess(w: np.ndarray) -> float:
    return float(w.sum() ** 2 / np.sum(w * w))


def calibrate(targets: Targets | str, scenario=None, client=None, progress=None) -> Calibration:
    """Calibrate the population of a targets file (a `Targets`, a path or a shipped name: "eliana",
    "meta10-19") to its targets. scenario: a scenario file replacing the file's start scenario.
    client: a `distributed.Client` for the simulations (results are identical either way).
    progress: None or a callable taking one line of text per step."""
    if not isinstance(targets, Targets):
        targets = Targets.from_toml(targets, scenario=scenario)
    say = progress if callable(progress) else (lambda text: None)
    start = targets.scenario((0,), 1, targets.seed, {}, {m.name: m.start_cv for m in targets.moving})
    spec = start.population
    model = start.model
    typical = {m.name: spec.typical.get(m.name, model.parameter(m.name).default) for m in targets.moving}
    cv = {m.name: m.start_cv for m in targets.moving}
    space = _Space(targets, typical, cv)
    x = space.x_of(typical, cv)
    x0 = x.copy()
    rounds = []
    hessian_note = ""
    cov = None
    proposal = None
    reason = ""
    for r in range(targets.rounds):
        typical_r, cv_r = space.values(x)
        proposal_cv = {m.name: max(m.proposal_cv if r == 0 else 0.0, omega_to_cv(1.5 * cv_to_omega(cv_r[m.name])),
                                   cv_r[m.name]) for m in targets.moving}
        say(f"round {r + 1}: simulating {len(targets.arms)} x {targets.proposal_size} proposal patients")
        proposal = _Proposal(targets, typical_r, cv_r, proposal_cv, targets.seed + 7919 * r, client)
        _check_columns(targets, proposal)

        def objective(xv):
            t, c = space.values(xv)
            w = proposal.weights(t, c)
            # a trust region: candidates the proposal cannot represent (ESS below min_ess) are penalised;
            # the next round's proposal is centred at this round's estimate
            penalty = sum(max(0.0, math.log(targets.min_ess / max(_ess(wk), 1e-9))) ** 2 for wk in w)
            return -(_log_likelihood(targets, _statistics(targets, proposal.arm_names, proposal.data, w))
                     + space.log_prior(xv)) + 10.0 * penalty

        if space.entries:
            inside = np.array([min(max(v, lo), hi) for v, (lo, hi) in zip(x, space.bounds)])
            fit = optimize.minimize(objective, inside, method="L-BFGS-B", bounds=space.bounds,
                                    options={"maxiter": 500})
            x_new = fit.x
            ok = bool(fit.success)
            message = str(fit.message)
        else:
            x_new, ok, message = x, True, "nothing to move"
        t, c = space.values(x_new)
        ess = [_ess(w) for w in proposal.weights(t, c)]
        rounds.append({"round": r + 1, "log_posterior": -objective(x_new), "ess": ess, "optimizer": message,
                       "x": x_new.copy(), "success": ok})
        say(f"round {r + 1}: log posterior {-objective(x_new):.2f}, ESS {', '.join(f'{e:.0f}' for e in ess)}")
        x = x_new
    # uncertainty: Laplace on the last proposal's reweighted posterior
    if space.entries:
        H = _hessian(objective, x, space.bounds)
        try:
            L = np.linalg.cholesky(H)
            cov = np.linalg.inv(L.T) @ np.linalg.inv(L)
        except np.linalg.LinAlgError:
            hessian_note = "the Hessian is not positive definite: some calibrated quantity is not identified"
            cov = np.linalg.pinv(H)
            cov = 0.5 * (cov + cov.T)
            w, V = np.linalg.eigh(cov)
            cov = (V * np.clip(w, 1e-12, None)) @ V.T
    last = rounds[-1]
    ess = last["ess"]
    converged = True
    reasons = []
    if min(ess) < targets.min_ess:
        converged = False
        reasons.append(f"effective sample size {min(ess):.0f} below min_ess {targets.min_ess:g}: the calibrated "
                       f"population is too far from the proposal (more rounds or a larger proposal_size)")
    if not last["success"]:
        converged = False
        reasons.append(f"optimizer: {last['optimizer']}")
    if hessian_note:
        converged = False
        reasons.append(hessian_note)
    if len(rounds) > 1 and cov is not None:
        # two rounds' estimates differ by Monte-Carlo error (different proposal patients) and by what is left
        # of the climb; the difference (variance 2 σ_MC² for independent proposals) is added to the
        # uncertainty, and a move beyond 3 Laplace SE and 5% means the estimate is still travelling
        step = rounds[-1]["x"] - rounds[-2]["x"]
        se = np.sqrt(np.diag(cov))
        moved = np.abs(step) / np.maximum(se, 1e-9)
        far = (moved > 3.0) & (np.abs(step) > math.log(1.05))
        if np.any(far):
            converged = False
            j = int(np.argmax(np.where(far, moved, 0)))
            reasons.append(f"{space.entries[j][0]} {space.entries[j][1]} still moved {moved[j]:.1f} SE "
                           f"({100 * math.expm1(abs(step[j])):.0f}%) in the last round (add rounds)")
        cov = cov + np.diag(step ** 2 / 2)
    for j, (p, q, (lo, hi), _) in enumerate(space.entries):
        if x[j] - lo < 1e-6 or hi - x[j] < 1e-6:
            converged = False
            reasons.append(f"{p} {q} at its bound: the targets pull beyond it")
    reason = "; ".join(reasons) if reasons else (f"{len(rounds)} rounds, ESS {min(ess):.0f}, "
                                                 f"last move within 3 SE or 5%")
    typical_hat, cv_hat = space.values(x)
    estimates = []
    se_all = np.sqrt(np.diag(cov)) if cov is not None else np.zeros(len(x))
    for j, (p, q, (lo, hi), _) in enumerate(space.entries):
        se = float(se_all[j])
        at_bound = bool(x[j] - lo < 1e-6 or hi - x[j] < 1e-6)
        to_value = (lambda v: math.exp(v)) if q == "typical" else (lambda v: omega_to_cv(math.exp(v)))
        estimates.append(Estimate(p, q, to_value(x0[j]), to_value(x[j]), se, to_value(max(x[j] - st.Z95 * se, lo)),
                                  to_value(min(x[j] + st.Z95 * se, hi)), at_bound))
    draws = _draws(space, x, cov, targets)
    say(f"simulating the calibrated population: {len(targets.arms)} x {targets.final_size} patients")
    sims, n_sim = _plain(targets, typical_hat, cv_hat, targets.final_size, targets.seed + 1, client)
    rows = tuple(_row(t, s) for t, s in zip(targets.targets, sims))
    loglik = _log_likelihood(targets, sims)
    profile, interval = (), None
    if targets.profile is not None:
        say(f"profile over a scale of {', '.join(targets.profile.parameters)}")
        profile, interval = _profile(targets, typical_hat, cv_hat, client)
    base_population = targets.base.get("population", {})
    data = targets.scenario_data(tuple(range(len(targets.arms))), base_population.get("n", 1000),
                                 base_population.get("seed", targets.seed), typical_hat, cv_hat)
    scenario_head = data.setdefault("scenario", {})
    base_provenance = targets.base.get("scenario", {}).get("provenance", "")
    base_provenance = "" if base_provenance.startswith("not yet calibrated") else base_provenance
    scenario_head["name"] = f"{targets.name}, calibrated"
    scenario_head["description"] = (f"calibrated to {targets.name} ({len(targets.targets)} targets, "
                                    f"{sum(r.inside for r in rows)} inside their 95% interval) by cartkin calibrate")
    inside = sum(r.inside for r in rows)
    scenario_head["provenance"] = (
        f"calibrated by cartkin calibrate to {targets.name} ({targets.path}): {inside} of {len(targets.targets)} "
        f"targets inside their 95% interval, {'converged' if converged else 'NOT converged: ' + reason}; "
        f"calibrated: " + ", ".join(typical_hat) + (f"; started from {base_provenance}" if base_provenance else ""))
    return Calibration(targets, tuple(estimates), rows, draws, typical_hat, cv_hat, data, converged, reason,
                       tuple(ess), tuple(rounds), loglik, profile, interval)


def _check_columns(targets: Targets, proposal: _Proposal) -> None:
    for i, t in enumerate(targets.targets):
        for arm in t.arms:
            columns = proposal.data[proposal.arm_names.index(arm)]
            if t.column not in columns or (t.group and "response" not in columns):
                raise CartkinError(f"targets[{i + 1}].statistic: the scenario's outcomes have no column "
                                   f"{t.column!r} (columns: {', '.join(sorted(columns))})")


def _hessian(f, x: np.ndarray, bounds, step: float = 1e-3) -> np.ndarray:
    """Central finite-difference Hessian (steps kept inside the bounds by shifting the stencil)."""
    d = x.size
    H = np.zeros((d, d))
    c = np.array([min(max(v, lo + 2 * step), hi - 2 * step) for v, (lo, hi) in zip(x, bounds)])
    f0 = f(c)
    for i in range(d):
        e_i = np.zeros(d)
        e_i[i] = step
        H[i, i] = (f(c + e_i) - 2 * f0 + f(c - e_i)) / step ** 2
        for j in range(i):
            e_j = np.zeros(d)
            e_j[j] = step
            H[i, j] = H[j, i] = (f(c + e_i + e_j) - f(c + e_i - e_j) - f(c - e_i + e_j) + f(c - e_i - e_j)) \
                / (4 * step ** 2)
    return H


def _draws(space: _Space, x: np.ndarray, cov, targets: Targets) -> tuple[dict, ...]:
    if not space.entries:
        return ()
    rng = np.random.default_rng(targets.seed)
    sample = rng.multivariate_normal(x, cov, size=targets.draws, method="cholesky")
    lows, highs = np.array(space.bounds).T
    sample = np.clip(sample, lows, highs)
    out = []
    for row in sample:
        typical, cv = space.values(row)
        draw = {}
        for p, q, _, _ in space.entries:
            if q == "typical":
                draw[p] = typical[p]
            else:
                draw[f"{p}_cv"] = cv[p]
        out.append(draw)
    return tuple(out)


def _plain(targets: Targets, typical: dict, cv: dict, n: int, seed: int, client=None):
    """Target statistics of a plain simulation (equal weights) of each arm."""
    data = []
    for k in range(len(targets.arms)):
        result = compare(targets.scenario((k,), n, seed, typical, cv), client=client, trials=False)
        data.append({name: np.asarray(v, dtype=float) for name, v in result.arms[0].outcomes.items()})
    weights = [np.ones(next(iter(d.values())).size) for d in data]
    sims = _statistics(targets, targets.arm_names, data, weights)
    return sims, n


def _row(target: Target, sim: st.Simulated) -> TargetRow:
    lo, hi = st.observed_interval(target, sim)
    slo, shi = st.simulated_interval(target, sim)
    z, p = st.agreement(target, sim)
    return TargetRow(target, lo, hi, sim.value, slo, shi, z, p, sim.ess)


def _profile(targets: Targets, typical: dict, cv: dict, client=None):
    """The targets' log-likelihood over scales s of the profile parameters (typical = s × calibrated, capped
    at the parameter's upper bound), by plain simulation at each scale."""
    prof = targets.profile
    start = targets.scenario((0,), 1, targets.seed, typical, cv)
    model = start.model
    centre = {p: start.population.typical.get(p, model.parameter(p).default) for p in prof.parameters}
    rows = []
    for s in prof.scales:
        moved = dict(typical)
        for p in prof.parameters:
            moved[p] = min(s * centre[p], model.parameter(p).upper)
        sims, _ = _plain(targets, moved, cv, prof.size, targets.seed + 2, client)
        row = {"scale": s, "log_likelihood": _log_likelihood(targets, sims)}
        for t, sim in zip(targets.targets, sims):
            name = f"{t.statistic} [{', '.join(t.arms)}]"
            row[name] = sim.value
            if t.kind == "pct" and t.count is not None:  # how often a trial of n gives the observed count
                row[f"P(x = {t.count:g} of {t.n:g}) {name}"] = st.binomial_probability(t, sim)
        rows.append(row)
    ll = np.array([r["log_likelihood"] for r in rows])
    inside = np.flatnonzero(2 * (ll.max() - ll) <= 3.841)
    low, high = prof.scales[inside[0]], prof.scales[inside[-1]]
    notes = []
    if inside[0] == 0:
        notes.append(f"no lower limit within the grid (≤ {low:g})")
    if inside[-1] == len(prof.scales) - 1:
        notes.append(f"no upper limit within the grid (≥ {high:g})")
    if len(inside) != inside[-1] - inside[0] + 1:
        notes.append("not one interval: Monte-Carlo noise or a multimodal likelihood")
    note = "; ".join(notes) or "likelihood-ratio 95% interval (2 ΔlogL ≤ 3.84) on the grid"
    return tuple(rows), (low, high, note)
