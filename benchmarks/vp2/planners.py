"""Sampling-based visual MPC as in VP² (``vp2.mpc``): MPPI (default) and CEM.

Why re-implemented rather than imported: VP²'s package pulls hydra, robomimic and gym at
import time and prints per step; the planners themselves are a few lines. Their semantics
are kept, since the benchmark's numbers depend on them:

- actions are sampled with time-correlated Gaussian noise (``beta = 0.5``), clipped to
  [-1, 1], and prefixed with the last ``num_context - 1`` executed actions before going to
  the model (the model predicts the context transitions too);
- MPPI: one round of ``num_samples = 200``; the new mean is the ``exp(gamma * (r - max r))``
  -weighted average of the samples, ``gamma = 0.05``; the whole mean is the plan;
- CEM: ``opt_iters = 3`` rounds of 200 samples, the top 5 % refit mean and variance (the
  variance capped so 2 sigma stays in [-1, 1]); the best sample of the last round is the plan;
- the agent replans every step (``replan_interval = 1``), warm-starting from the rest of the
  previous plan (its last action repeated), and takes a zero action at step 0.

Model interface (VP²'s): ``model(batch) -> {"rgb": (N, num_context - 1 + horizon, H, W, 3)}``
with ``batch = {"video": (N, num_context, H, W, 3), "actions": (N, num_context - 1 + horizon,
a_dim), "state_obs": [...]}`` and attributes ``num_context``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np


class InvalidPlanError(RuntimeError):
    """A model or planner produced something that cannot be executed (NaN, wrong shape)."""


class CorrelatedNoiseSampler:
    """``eps_0 ~ N(0, std_0)``, ``eps_t = beta * eps_{t-1} + (1 - beta) * N(0, std_t)``."""

    def __init__(self, beta: float = 0.5, rng: np.random.Generator | None = None):
        self.beta = beta
        self.rng = rng if rng is not None else np.random.default_rng()

    def sample(self, num_samples: int, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
        horizon, a_dim = mean.shape
        noise = [self.rng.normal(size=(num_samples, a_dim)) * std[0]]
        for t in range(1, horizon):
            noise.append(self.beta * noise[-1] + (1 - self.beta) * self.rng.normal(size=(num_samples, a_dim)) * std[t])
        return mean[None] + np.stack(noise, axis=1)


def _warm_start(init_mean, horizon: int, a_dim: int) -> np.ndarray:
    mean = np.zeros((horizon, a_dim))
    if init_mean is not None and len(init_mean):
        init_mean = np.asarray(init_mean, dtype=np.float64)[:horizon]
        mean[: len(init_mean)] = init_mean
        mean[len(init_mean) :] = init_mean[-1]
    return mean


def check_rewards(rewards, num_samples: int) -> np.ndarray:
    rewards = np.asarray(rewards, dtype=np.float64).reshape(-1)
    if rewards.shape != (num_samples,):
        raise InvalidPlanError(f"the cost gave {rewards.shape[0]} rewards for {num_samples} samples")
    if not np.isfinite(rewards).all():
        raise InvalidPlanError(
            f"{int((~np.isfinite(rewards)).sum())} of {num_samples} rewards are NaN/inf "
            "(the world model predicted non-finite frames?)"
        )
    return rewards


@dataclass
class _PlannerBase:
    model: object
    reward: object
    a_dim: int
    horizon: int = 10
    num_samples: int = 200
    init_std: tuple = (0.5, 0.5, 0.5, 0.0)
    beta: float = 0.5
    seed: int | None = None
    prediction_times: list = field(default_factory=list)

    def __post_init__(self):
        self.init_std = np.broadcast_to(np.asarray(self.init_std, dtype=np.float64), (self.a_dim,)).copy()
        self.sampler = CorrelatedNoiseSampler(self.beta, np.random.default_rng(self.seed))

    def score(self, new_actions: np.ndarray, obs_history, state_history, action_history, goal):
        """Clip, prefix context actions, predict, reward. Returns (rewards, full action samples)."""
        n_ctx = self.model.num_context
        n = new_actions.shape[0]
        new_actions = np.clip(new_actions, -1.0, 1.0)
        context_actions = np.asarray(action_history[len(action_history) - (n_ctx - 1) :], dtype=np.float64)
        context_actions = context_actions.reshape(n_ctx - 1, self.a_dim)
        actions = np.concatenate([np.broadcast_to(context_actions[None], (n, n_ctx - 1, self.a_dim)), new_actions], 1)
        video = np.asarray(obs_history[-n_ctx:], dtype=np.float32)
        batch = {
            "video": np.broadcast_to(video[None], (n, *video.shape)),
            "actions": actions,
            "state_obs": list(state_history[-n_ctx:]),
        }
        t0 = time.perf_counter()
        predictions = self.model(batch)["rgb"]
        self.prediction_times.append(time.perf_counter() - t0)
        expected = (n, n_ctx - 1 + self.horizon, *video.shape[1:])
        if tuple(np.shape(predictions)) != expected:
            raise InvalidPlanError(f"the model predicted frames of shape {np.shape(predictions)}, expected {expected}")
        return check_rewards(self.reward(predictions, goal), n), actions


class MPPIPlanner(_PlannerBase):
    """VP²'s MPPIOptimizer (one sampling round, exponentially weighted mean)."""

    gamma: float = 0.05

    def __init__(self, *args, gamma: float = 0.05, **kwargs):
        super().__init__(*args, **kwargs)
        self.gamma = gamma

    def plan(self, obs_history, state_history, action_history, goal, init_mean=None) -> np.ndarray:
        mean = _warm_start(init_mean, self.horizon, self.a_dim)
        std = np.broadcast_to(self.init_std, (self.horizon, self.a_dim))
        samples = self.sampler.sample(self.num_samples, mean, std)
        rewards, actions = self.score(samples, obs_history, state_history, action_history, goal)
        weights = np.exp(self.gamma * (rewards - rewards.max()))
        new_actions = actions[:, self.model.num_context - 1 :]
        return (weights[:, None, None] * new_actions).sum(0) / (weights.sum() + 1e-10)


class CEMPlanner(_PlannerBase):
    """VP²'s CEMOptimizer (elites refit mean/variance; the best last-round sample is the plan)."""

    def __init__(self, *args, opt_iters: int = 3, elites_frac: float = 0.05, alpha: float = 0.0, **kwargs):
        kwargs.setdefault("init_std", (0.5, 0.5, 0.0, 0.0))  # VP²'s cem.yaml
        super().__init__(*args, **kwargs)
        self.opt_iters, self.elites_frac, self.alpha = opt_iters, elites_frac, alpha

    def plan(self, obs_history, state_history, action_history, goal, init_mean=None) -> np.ndarray:
        n_ctx = self.model.num_context
        mean = _warm_start(init_mean, self.horizon, self.a_dim)
        var = np.tile(self.init_std[None] ** 2, (self.horizon, 1))
        num_elites = max(1, int(self.elites_frac * self.num_samples))
        for _ in range(self.opt_iters):
            capped = np.minimum(np.minimum(((mean + 1) / 2) ** 2, ((1 - mean) / 2) ** 2), var)
            samples = self.sampler.sample(self.num_samples, mean, np.sqrt(capped))
            rewards, actions = self.score(samples, obs_history, state_history, action_history, goal)
            elites = actions[np.argsort(-rewards)[:num_elites], n_ctx - 1 :]
            mean = self.alpha * mean + (1 - self.alpha) * elites.mean(0)
            var = self.alpha * var + (1 - self.alpha) * elites.var(0)
        return actions[int(np.argmax(rewards)), n_ctx - 1 :]


PLANNERS = {"mppi": MPPIPlanner, "cem": CEMPlanner}


class PlanningAgent:
    """VP²'s PlanningAgent: a zero action first, then replan every ``replan_interval`` steps.

    Every action is checked before it reaches the simulator: a plan of the wrong shape or
    with NaN/inf raises :class:`InvalidPlanError` (the run records it for the episode).
    """

    def __init__(self, planner, a_dim: int, replan_interval: int = 1, initial_action=None):
        self.planner, self.a_dim, self.replan_interval = planner, a_dim, replan_interval
        self.initial_action = np.zeros(a_dim) if initial_action is None else np.asarray(initial_action, float)
        self.reset()

    def reset(self):
        self.plan, self.actions, self.steps_since_replan = [], [], 10**9

    def act(self, t: int, obs_history, state_history, goal) -> np.ndarray:
        if t == 0:
            self.plan = [self.initial_action]
        elif self.steps_since_replan >= self.replan_interval or len(self.plan) == 0:
            plan = self.planner.plan(obs_history, state_history, self.actions, goal,
                                     init_mean=self.plan if len(self.plan) else None)
            plan = np.asarray(plan, dtype=np.float64)
            if plan.ndim != 2 or plan.shape[1] != self.a_dim or plan.shape[0] < 1:
                raise InvalidPlanError(f"the planner returned a plan of shape {plan.shape}, expected (steps, {self.a_dim})")
            if not np.isfinite(plan).all():
                raise InvalidPlanError("the planner returned NaN/inf actions")
            self.plan, self.steps_since_replan = list(plan), 0
        action = np.asarray(self.plan[0], dtype=np.float64)
        if action.shape != (self.a_dim,) or not np.isfinite(action).all():
            raise InvalidPlanError(f"action {action!r} is not a finite ({self.a_dim},) vector")
        self.actions.append(action.copy())
        self.plan = self.plan[1:]
        self.steps_since_replan += 1
        return action
