"""VP² planning pieces in the project venv: costs, MPPI/CEM, the agent's checks, the ORV
world model behind VP²'s interface (tiny random weights, saved and loaded as a real
checkpoint), and the summary. The simulator runs are in test_vp2_run.py (side venv)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.vp2.costs import ClassifierReward, CombinedReward, ConvPredictor, SquaredErrorReward, build_reward
from benchmarks.vp2.planners import CEMPlanner, CorrelatedNoiseSampler, InvalidPlanError, MPPIPlanner, PlanningAgent
from benchmarks.vp2.run import EpisodeRecord, parse_args, summarise
from benchmarks.vp2.world_model import ORVWorldModel, action_adapter

SIZE = 16


class DotModel:
    """A tiny deterministic 'video model': a bright dot at the integrated x/y action position.
    Planning toward a goal image of the dot elsewhere must move the dot there."""

    num_context = 2

    def __init__(self, nan: bool = False, wrong_shape: bool = False):
        self.nan, self.wrong_shape = nan, wrong_shape

    @staticmethod
    def render(xy) -> np.ndarray:
        yy, xx = np.mgrid[0:SIZE, 0:SIZE]
        cx, cy = (np.asarray(xy) + 1) / 2 * (SIZE - 1)
        dot = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 4.0)
        return np.repeat(dot[..., None], 3, axis=-1).astype(np.float32)

    def __call__(self, batch):
        actions = batch["actions"][:, self.num_context - 1 :]
        n, horizon = actions.shape[:2]
        positions = np.clip(np.cumsum(actions[..., :2] * 0.25, axis=1), -1, 1)
        frames = np.stack([[self.render(p) for p in seq] for seq in positions])
        context = batch["video"][:, -1:]
        out = np.concatenate([context, frames], axis=1)
        if self.nan:
            out[0, 1] = np.nan
        if self.wrong_shape:
            out = out[:, :-1]
        return {"rgb": out}


def _history():
    start = DotModel.render((0.0, 0.0))
    return [start, start], [None], [np.zeros(4)]


def test_squared_error_is_vp2_sum_and_broadcasts_the_goal():
    pred = np.zeros((2, 3, 4, 4, 3), np.float32)
    pred[1] = 0.5
    goal = np.ones((4, 4, 3), np.float32)
    reward = SquaredErrorReward(weight=2.0)(pred, goal)
    np.testing.assert_allclose(reward, [-2.0 * 3 * 4 * 4 * 3, -2.0 * 0.25 * 3 * 4 * 4 * 3])
    per_frame_goal = np.ones((3, 4, 4, 3), np.float32)
    np.testing.assert_allclose(SquaredErrorReward()(pred, per_frame_goal), reward / 2)
    with pytest.raises(ValueError, match="does not match"):
        SquaredErrorReward()(pred, np.ones((5, 5, 3)))


def test_classifier_reward_loads_a_checkpoint_and_sums_logits_over_time(tmp_path):
    torch.manual_seed(0)
    net = ConvPredictor()
    path = tmp_path / "push_red.pt"
    torch.save(net.state_dict(), path)
    reward = ClassifierReward.from_checkpoint(path, weight=10.0)
    frames = np.random.default_rng(0).random((3, 2, 64, 64, 3)).astype(np.float32)
    with torch.no_grad():
        logits = net(torch.from_numpy(frames.reshape(6, 64, 64, 3)).permute(0, 3, 1, 2)).view(3, 2)
    np.testing.assert_allclose(reward(frames), 10.0 * logits.sum(1).numpy(), rtol=1e-4, atol=1e-4)
    combined = build_reward(path)
    assert isinstance(combined, CombinedReward)
    goal = np.zeros((64, 64, 3), np.float32)
    expected = 0.5 * SquaredErrorReward()(frames, goal) + reward(frames)
    np.testing.assert_allclose(combined(frames, goal), expected, rtol=1e-4)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        ClassifierReward.from_checkpoint(tmp_path / "missing.pt")


def test_correlated_noise_is_correlated_over_time():
    sampler = CorrelatedNoiseSampler(beta=0.5, rng=np.random.default_rng(0))
    samples = sampler.sample(4000, np.zeros((5, 2)), np.ones((5, 2)))
    assert samples.shape == (4000, 5, 2)
    corr = np.corrcoef(samples[:, 1, 0], samples[:, 2, 0])[0, 1]
    assert 0.5 < corr < 0.9
    independent = np.corrcoef(samples[:, 0, 0], samples[:, 0, 1])[0, 1]
    assert abs(independent) < 0.1


@pytest.mark.parametrize("planner_cls, kwargs", [(MPPIPlanner, {"gamma": 1.0}), (CEMPlanner, {})])
def test_planners_move_toward_the_goal_image(planner_cls, kwargs):
    # gamma 1.0: a 16x16 dot's squared errors are ~100x smaller than a 64x64 scene's.
    goal = DotModel.render((0.75, -0.75))
    planner = planner_cls(DotModel(), SquaredErrorReward(), a_dim=4, horizon=4, num_samples=200,
                          init_std=(0.5, 0.5, 0.0, 0.0), seed=0, **kwargs)
    obs, states, actions = _history()
    plan = planner.plan(obs, states, actions, goal)
    assert plan.shape == (4, 4)
    assert plan[:, 0].sum() > 0.3 and plan[:, 1].sum() < -0.3  # toward +x, -y
    np.testing.assert_allclose(plan[:, 2:], 0.0)  # zero std: those dims stay at the mean


def test_agent_rejects_nan_and_wrong_shapes():
    goal = DotModel.render((0.5, 0.5))
    obs, states, _ = _history()
    for model, match in [(DotModel(nan=True), "NaN"), (DotModel(wrong_shape=True), "shape")]:
        agent = PlanningAgent(MPPIPlanner(model, SquaredErrorReward(), a_dim=4, horizon=3, num_samples=8, seed=0), 4)
        agent.act(0, obs, states, goal)
        with pytest.raises(InvalidPlanError, match=match):
            agent.act(1, obs, states, goal)

    class BadPlanner:
        def __init__(self, plan):
            self.plan_value = plan

        def plan(self, *args, **kwargs):
            return self.plan_value

    for plan, match in [(np.full((3, 4), np.nan), "NaN"), (np.zeros((3, 5)), "shape")]:
        agent = PlanningAgent(BadPlanner(plan), 4)
        agent.act(0, obs, states, goal)
        with pytest.raises(InvalidPlanError, match=match):
            agent.act(1, obs, states, goal)


def test_action_adapter_pads_into_the_bridge_layout_and_rejects_mismatches():
    a = np.arange(1, 5, dtype=np.float32)[None]
    np.testing.assert_array_equal(action_adapter(4, 7)(a), [[1, 2, 3, 0, 0, 0, 4]])
    np.testing.assert_array_equal(action_adapter(5, 7)(np.arange(1, 6)[None]), [[1, 2, 3, 0, 0, 4, 5]])
    np.testing.assert_array_equal(action_adapter(4, 4)(a), a)
    with pytest.raises(ValueError, match="3-d but the world model takes action_dim=7"):
        action_adapter(3, 7)
    with pytest.raises(ValueError, match="5-d but the world model takes action_dim=4"):
        action_adapter(5, 4)


@pytest.fixture(scope="module")
def tiny_world_model_path(tmp_path_factory):
    from benchmarks.vp2.tiny_world_model import save_tiny_world_model

    return save_tiny_world_model(tmp_path_factory.mktemp("vp2") / "orv-tiny-action", action_dim=7)


def test_orv_world_model_predicts_vp2_shaped_frames_driven_by_actions(tiny_world_model_path):
    model = ORVWorldModel.from_pretrained(tiny_world_model_path, action_dim=4, num_inference_steps=2,
                                          max_batch_size=2)
    rng = np.random.default_rng(0)
    video = np.broadcast_to(rng.random((1, 2, 64, 64, 3)).astype(np.float32), (3, 2, 64, 64, 3))
    actions = rng.uniform(-1, 1, (3, 1 + 3, 4)).astype(np.float32)
    actions[1] = actions[0]
    actions[2, 1:, :3] = -actions[0, 1:, :3]
    model.seed, model.calls = 0, 0
    out = model({"video": video, "actions": actions})["rgb"]
    assert out.shape == (3, 1 + 3, 64, 64, 3)
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    np.testing.assert_array_equal(out[:, 0], video[:, 1])  # the context position is the observed frame
    model.calls = 0
    again = model({"video": video, "actions": actions})["rgb"]
    np.testing.assert_allclose(again, out, atol=1e-5)  # seeded per sample and call: reproducible
    # Same noise (sample index 0 of call 0), different actions: only the actions can differ.
    first, planned = video[:1, -1], actions[:, 1:]
    model.calls = 0
    a = model.predict(first, planned[:1])
    model.calls = 0
    c = model.predict(first, planned[2:3])
    assert np.abs(a - c).mean() > 1e-3, "actions do not change the predicted frames"
    with pytest.raises(ValueError, match=r"batch\['actions'\]"):
        model({"video": video, "actions": actions[..., :3]})


def test_world_model_refuses_a_transformer_with_visual_conditions():
    from tiny_orv import tiny_pipeline

    with pytest.raises(ValueError, match="action-only"):
        ORVWorldModel(tiny_pipeline(), action_dim=7)


def test_summary_counts_errors_unknown_tasks_and_normalises_by_the_oracle():
    def rec(model, task, ep, success=None, status="ok", error=None):
        return EpisodeRecord(model, task, ep, ep, status=status, success=success, error=error)

    model = [rec("orv", "a", 0, True), rec("orv", "a", 1, False), rec("orv", "a", 2, status="error", error="NaN"),
             rec("orv", "b", 0, True), rec("orv", "x", -1, status="unknown_task", error="unknown")]
    oracle = [rec("sim", "a", 0, True), rec("sim", "a", 1, True), rec("sim", "b", 0, False)]
    s = summarise(model, oracle)
    assert s["tasks"]["a"]["success_rate"] == 0.5 and s["tasks"]["a"]["errors"] == 1
    assert s["tasks"]["a"]["success_rate_errors_as_failures"] == pytest.approx(1 / 3)
    assert s["unknown_tasks"] == ["x"] and s["errors"] == 1 and not s["complete"]
    assert s["tasks"]["a"]["normalised_score"] == 0.5
    assert s["tasks"]["b"]["normalised_score"] is None  # the oracle never succeeded: not normalisable
    assert s["normalised_score"] == 0.5 and s["normalised_tasks"] == ["a"]


def test_cli_defaults_are_vp2s():
    args = parse_args(["--out", "x"])
    assert (args.planner, args.num_samples, args.horizon, args.context, args.max_steps, args.episodes) == (
        "mppi", 200, 10, 2, 15, 100)
    assert (args.gamma, args.beta, args.cem_iters, args.elites_frac) == (0.05, 0.5, 3, 0.05)
    with pytest.raises(SystemExit):
        parse_args(["--out", "x", "--planner", "random-shooting"])
