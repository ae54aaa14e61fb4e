"""ORV-MV: the view-attention model, its training, sampling, side-view conditions, pipeline.

Tiny random-weight models are saved in the real diffusers folder format and loaded back
through ``from_pretrained`` as a user would load real checkpoints.

Equivariance, exactly what is tested: for a model whose view modules are *not* at their
zero start (random weights, so views interact), permuting the views of the input latents,
their condition latents AND their ``view_ids`` (the view indices of Eq. 3's positional
encoding) permutes the outputs the same way. Permuting the inputs alone (ids kept 0..V-1)
does not, and must not, since the positions tell the views apart.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from occupancy_scenes import IDENTITY, K, SIZE, VOXEL, occupancy_from_depths, plane
from tiny_orv import condition_maps, first_frame, frame_actions, perturb_new_modules, tiny_orv_transformer, tiny_pipeline
from orv_engine.models import ORVTransformer3DModel
from orv_engine.models.checkpoint_files import CheckpointError
from orv_engine.models.transformer_orv_mv import ORVMultiViewTransformer3DModel
from orv_engine.occupancy import OccupancyInputError, ViewCamera, render_condition_maps
from orv_engine.occupancy.cameras import look_at
from orv_engine.occupancy.side_views import align_side_cameras, side_view_conditions
from orv_engine.pipelines import ORVPipeline
from orv_engine.pipelines.pipeline_orv_mv import ORVMultiViewPipeline
from orv_engine.training.multiview_sampling import (
    BRIDGE_SINGLE_VIEW_SAMPLES, BRIDGE_THREE_VIEW_SAMPLES, ViewSampling, sample_views, single_view_keep_probability,
)

BRIDGE_DEBUG = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bridge_debug" / "bridge_dataset" / "1.0.0"


# ---------------------------------------------------------------- helpers


def _trained_single_view(tmp_path) -> Path:
    """A tiny single-view ORV (random action/condition modules) saved as a diffusers folder."""
    model = tiny_orv_transformer(seed=0)
    perturb_new_modules(model)
    model.save_pretrained(tmp_path / "single")
    return tmp_path / "single"


def _randomise_view_modules(model: ORVMultiViewTransformer3DModel, seed: int = 3, scale: float = 0.3) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("view_attention_blocks."):
                p.add_(torch.randn(p.shape, generator=g) * scale)


def _inputs(batch: int, views: int, frames: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        hidden_states=torch.randn(batch, views, frames, 32, 8, 8, generator=g),
        encoder_hidden_states=torch.randn(batch, 8, 32, generator=g),
        timestep=torch.tensor([700, 20][:batch]),
        actions=torch.randn(batch, 4 * frames, 7, generator=g),
        condition_latents=torch.randn(batch, views, frames, 32, 8, 8, generator=g),
    )


# ---------------------------------------------------------------- model


def test_fresh_multiview_model_equals_single_view_model_and_round_trips(tmp_path):
    single_dir = _trained_single_view(tmp_path)
    single = ORVTransformer3DModel.from_pretrained(single_dir).eval()
    multi = ORVMultiViewTransformer3DModel.from_pretrained(single_dir, num_views=3).eval()  # via from_single_view
    assert multi.config.num_views == 3
    # The view modules are copies of the blocks' first AdaLN and attention with a zero projection.
    block, view = multi.transformer_blocks[1], multi.view_attention_blocks[1]
    assert torch.equal(view.attn1.to_q.weight, block.attn1.to_q.weight)
    assert torch.equal(view.attn1.to_out[0].weight, block.attn1.to_out[0].weight)
    assert torch.equal(view.norm1.linear.weight, block.norm1.linear.weight)
    assert not view.proj_out.weight.any() and not view.proj_out.bias.any()

    x = _inputs(batch=2, views=1)
    with torch.no_grad():
        expected = single(x["hidden_states"][:, 0], x["encoder_hidden_states"], x["timestep"], actions=x["actions"],
                          condition_latents=x["condition_latents"][:, 0]).sample
        got = multi(**x).sample
    assert got.shape == (2, 1, 3, 16, 8, 8)
    torch.testing.assert_close(got[:, 0], expected, atol=1e-5, rtol=0)

    # Several views at the zero start: the view modules add nothing, the view positions
    # (upstream adds them to the residual stream, for V > 1 only) are what changes each view.
    x3 = _inputs(batch=1, views=3, seed=1)
    x3["timestep"] = x3["timestep"][:1]
    with torch.no_grad():
        got3 = multi(**x3).sample
        positions = multi._view_positions(torch.zeros(3, 48, 16), 3, None, 3, 8, 8)
        assert positions.abs().sum() > 0
        for block in multi.view_attention_blocks:  # switch the modules off entirely: same outputs
            block.forward = lambda hidden_states, *args: hidden_states
        torch.testing.assert_close(multi(**x3).sample, got3, atol=1e-6, rtol=0)
        del_forward = [block.__dict__.pop("forward") for block in multi.view_attention_blocks]
        assert len(del_forward) == 2

    # save_pretrained / from_pretrained in the diffusers folder format.
    _randomise_view_modules(multi)
    multi.save_pretrained(tmp_path / "mv")
    assert (tmp_path / "mv" / "config.json").is_file()
    loaded = ORVMultiViewTransformer3DModel.from_pretrained(tmp_path / "mv").eval()
    assert loaded.config.num_views == 3
    for (k, a), (k2, b) in zip(multi.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    with torch.no_grad():
        torch.testing.assert_close(loaded(**x3).sample, multi(**x3).sample, atol=0, rtol=0)
    # the single-view loader refuses a multi-view folder with a message naming the right class
    with pytest.raises(CheckpointError, match="ORVMultiViewTransformer3DModel"):
        ORVTransformer3DModel.from_pretrained(tmp_path / "mv")


def test_permuting_views_with_their_ids_permutes_outputs(tmp_path):
    multi = ORVMultiViewTransformer3DModel.from_single_view(tiny_orv_transformer(seed=0), num_views=3).eval()
    _randomise_view_modules(multi)
    x = _inputs(batch=2, views=3, seed=2)
    ids = torch.tensor([[0, 1, 2], [2, 0, 1]])
    perm = torch.tensor([2, 0, 1])
    with torch.no_grad():
        out = multi(**x, view_ids=ids).sample
        permuted = {**x, "hidden_states": x["hidden_states"][:, perm],
                    "condition_latents": x["condition_latents"][:, perm]}
        out_perm = multi(**permuted, view_ids=ids[:, perm]).sample
        torch.testing.assert_close(out_perm, out[:, perm], atol=1e-5, rtol=0)

        # Not vacuous: the views interact (view 0's output depends on view 1's input) ...
        changed = {**x, "hidden_states": x["hidden_states"].clone()}
        changed["hidden_states"][:, 1] += 1.0
        assert (multi(**changed, view_ids=ids).sample[:, 0] - out[:, 0]).abs().max() > 1e-3
        # ... and the view positions matter: permuting inputs without their ids changes the result.
        no_ids = multi(**permuted, view_ids=ids).sample
        assert (no_ids - out[:, perm]).abs().max() > 1e-4


def test_bad_model_input_is_named():
    multi = ORVMultiViewTransformer3DModel.from_single_view(tiny_orv_transformer(seed=0), num_views=2).eval()
    x = _inputs(batch=1, views=2)
    x["timestep"] = x["timestep"][:1]
    with torch.no_grad():
        with pytest.raises(ValueError, match="views axis"):
            multi(**{**x, "hidden_states": x["hidden_states"][:, 0], "condition_latents": None})
        with pytest.raises(ValueError, match="num_views=2"):
            multi(**_inputs(batch=1, views=3) | {"timestep": torch.tensor([5])})
        with pytest.raises(ValueError, match="one set per view"):
            multi(**{**x, "condition_latents": x["condition_latents"][:, :1]})
        with pytest.raises(ValueError, match="view_ids"):
            multi(**x, view_ids=torch.tensor([[0, 5]]))
        with pytest.raises(ValueError, match="view_ids"):
            multi(**x, view_ids=torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="already multi-view"):
        ORVMultiViewTransformer3DModel.from_single_view(multi)


# ---------------------------------------------------------------- pipeline


def _tiny_mv_pipeline(single: ORVPipeline, num_views: int = 3) -> ORVMultiViewPipeline:
    multi = ORVMultiViewTransformer3DModel.from_single_view(single.transformer, num_views=num_views).eval()
    return ORVMultiViewPipeline(tokenizer=single.tokenizer, text_encoder=single.text_encoder, vae=single.vae,
                                transformer=multi, scheduler=single.scheduler)


def test_one_view_pipeline_matches_single_view_pipeline_and_multiview_round_trips(tmp_path):
    single = tiny_pipeline(seed=0)
    single.save_pretrained(tmp_path / "single")
    single = ORVPipeline.from_pretrained(tmp_path / "single")
    multi = _tiny_mv_pipeline(single)
    kwargs = dict(num_inference_steps=2, output_type="np")
    ref = single(first_frame(0), frame_actions(), conditions=condition_maps(), generator=torch.Generator().manual_seed(5),
                 **kwargs).frames
    got = multi([first_frame(0)], frame_actions(), conditions=[condition_maps()],
                generator=torch.Generator().manual_seed(5), **kwargs).frames
    assert ref.shape == (1, 8, 64, 64, 3) and got.shape == (1, 1, 8, 64, 64, 3)
    np.testing.assert_allclose(got[:, 0], ref, atol=1e-5, rtol=0)

    # Three views with their own first frames and conditions; save and reload the pipeline.
    _randomise_view_modules(multi.transformer)
    multi.save_pretrained(tmp_path / "mv")
    reloaded = ORVMultiViewPipeline.from_pretrained(tmp_path / "mv")
    assert isinstance(reloaded.transformer, ORVMultiViewTransformer3DModel)
    images = [first_frame(s) for s in range(3)]
    conds = [condition_maps(seed=s) for s in range(3)]
    a = multi(images, frame_actions(), conditions=conds, generator=torch.Generator().manual_seed(1), **kwargs).frames
    b = reloaded(images, frame_actions(), conditions=conds, generator=torch.Generator().manual_seed(1),
                 **kwargs).frames
    assert a.shape == (1, 3, 8, 64, 64, 3) and np.isfinite(a).all()
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)

    with pytest.raises(ValueError, match="one dict per view"):
        multi(images, frame_actions(), conditions=conds[:2], **kwargs)
    with pytest.raises(ValueError, match="at most num_views=3"):
        multi(images + images[:1], frame_actions(), **kwargs)
    with pytest.raises(ValueError, match="conditions of view 1"):
        multi(images[:2], frame_actions(), conditions=[conds[0], {"depth": conds[1]["depth"]}], **kwargs)
    with pytest.raises(TypeError, match="ORVMultiViewTransformer3DModel"):
        ORVMultiViewPipeline(tokenizer=single.tokenizer, text_encoder=single.text_encoder, vae=single.vae,
                             transformer=single.transformer, scheduler=single.scheduler)


def test_multiview_rollout_chains_chunks_for_all_views_and_matches_single_view_with_one_view():
    single = tiny_pipeline(seed=0)
    multi = _tiny_mv_pipeline(single)
    total = 13  # chunks of 8 frames start at 0 and 7; the second is padded
    acts = frame_actions(total, seed=2)
    conds = {k: v[:, :32, :32] for k, v in condition_maps(total).items()}
    kwargs = dict(chunk_frames=8, num_inference_steps=1)
    ref = single.rollout(first_frame(0)[:32, :32], acts, conds, generator=torch.Generator().manual_seed(3), **kwargs)
    got = multi.rollout([first_frame(0)[:32, :32]], acts, [conds], generator=torch.Generator().manual_seed(3),
                        **kwargs)
    assert ref.shape == (1, total, 32, 32, 3) and got.shape == (1, 1, total, 32, 32, 3)
    np.testing.assert_allclose(got[:, 0], ref, atol=1e-5, rtol=0)

    # two views: the first chunk is one ordinary multi-view call; the second starts from each view's frame 7
    _randomise_view_modules(multi.transformer)
    images = [first_frame(s)[:32, :32] for s in range(2)]
    view_conds = [conds, {k: v[:, ::-1].copy() for k, v in conds.items()}]
    video = multi.rollout(images, acts, view_conds, generator=torch.Generator().manual_seed(4), **kwargs)
    assert video.shape == (1, 2, total, 32, 32, 3) and np.isfinite(video).all()
    first = multi(images, acts[:8], conditions=[{k: v[:8] for k, v in c.items()} for c in view_conds],
                  generator=torch.Generator().manual_seed(4), num_inference_steps=1, output_type="np").frames
    np.testing.assert_allclose(video[:, :, :8], first, atol=1e-5, rtol=0)
    assert not np.allclose(video[:, 0], video[:, 1])  # the views differ
    with pytest.raises(ValueError, match="one dict per view"):
        multi.rollout(images, acts, view_conds[:1], **kwargs)
    with pytest.raises(ValueError, match="of view 1 has 12 frames"):
        multi.rollout(images, acts, [conds, {k: v[:12] for k, v in conds.items()}], **kwargs)


# ---------------------------------------------------------------- training


@pytest.mark.skipif(not BRIDGE_DEBUG.is_dir(), reason=f"shared BridgeV2 debug data absent at {BRIDGE_DEBUG}")
def test_tiny_multiview_model_trains_and_generates(tmp_path):
    import orv_engine  # noqa: F401  (torch before TensorFlow)
    from orv_engine.training.config_mv import load_multiview_config
    from orv_engine.testing.tiny_orv import save_tiny_pipeline
    from orv_engine.training.trainer_mv import MultiViewTrainer

    save_tiny_pipeline(tmp_path / "tiny")
    single = ORVTransformer3DModel.from_pretrained(tmp_path / "tiny" / "transformer")  # converted, as the trainer does
    config_file = Path(__file__).resolve().parents[1] / "configs" / "tiny_mv.yaml"

    def config(out: str):
        return load_multiview_config(config_file, [
            f"model.pretrained_path={tmp_path / 'tiny'}", f"output_dir={tmp_path / out}", f"data.path={BRIDGE_DEBUG}",
            "train.max_steps=3", "train.gradient_accumulation_steps=1", "train.checkpoint_every=2",
            "train.log_every=1",
        ])

    summary = MultiViewTrainer(config("run"), log=lambda m: None).train()
    assert summary["step"] == 3 and all(np.isfinite(summary["losses"]))
    assert all(1 <= len(v[0].split("+")) <= 3 for v in summary["views"])
    # Exact resume: killed after step 2, resumed from its checkpoint, step 3 is the same step.
    first = MultiViewTrainer(config("resumed"), log=lambda m: None).train(stop_after=2)
    rest = MultiViewTrainer(config("resumed"), log=lambda m: None).train(resume="latest")
    assert first["views"] + rest["views"] == summary["views"]
    np.testing.assert_allclose(first["losses"] + rest["losses"], summary["losses"], rtol=1e-6)

    pipe = ORVMultiViewPipeline.from_pretrained(tmp_path / "run" / "final")
    start = ORVMultiViewTransformer3DModel.from_single_view(single, num_views=3)
    trained = dict(pipe.transformer.named_parameters())
    view_names = [n for n, _ in start.named_parameters() if n.startswith("view_attention_blocks.")]
    changed = [n for n in view_names if not torch.equal(dict(start.named_parameters())[n], trained[n])]
    assert any(".proj_out." in n for n in changed) and any(".attn1.to_q." in n for n in changed)
    frames = pipe([first_frame(0), first_frame(1)], frame_actions(), num_inference_steps=2,
                  generator=torch.Generator().manual_seed(0)).frames
    assert frames.shape == (1, 2, 8, 64, 64, 3) and np.isfinite(frames).all()


# ---------------------------------------------------------------- view sampling


def test_view_sampling_statistics():
    keep = single_view_keep_probability(BRIDGE_SINGLE_VIEW_SAMPLES, BRIDGE_THREE_VIEW_SAMPLES)
    assert keep == pytest.approx(0.4 * 57978 / (0.6 * 89901))
    rule = ViewSampling()
    # The paper's mixture (Table 10 proportions) over many samples and seeds.
    n1, n3 = 6079, 3921
    kept_single = kept_multi = 0
    counts = {2: 0, 3: 0}
    first = {"a": 0, "b": 0, "c": 0}
    for i in range(n1):
        kept_single += len(sample_views(f"ep{i}@0", ["a"], seed=i % 7, rule=rule)) == 1
    for i in range(n3):
        views = sample_views(f"ep{n1 + i}@0", ["a", "b", "c"], seed=i % 7, rule=rule)
        assert len(set(views)) == len(views) and set(views) <= {"a", "b", "c"}
        counts[len(views)] += 1
        first[views[0]] += 1
        kept_multi += 1
    assert abs(kept_single / n1 - keep) < 0.03
    assert abs(kept_single / (kept_single + kept_multi) - 0.40) < 0.02  # ~40% single view after subsampling
    assert abs(counts[3] / n3 - 0.5) < 0.03  # 2 or 3 views with probability 0.5 each
    assert all(abs(f / n3 - 1 / 3) < 0.04 for f in first.values())  # randomised order
    # Two views keep both; max_views caps; fixed order when asked.
    assert sorted(sample_views("x@1", ["a", "b"], seed=0)) == ["a", "b"]
    assert all(len(sample_views(f"y{i}", ["a", "b", "c"], 0, rule=ViewSampling(max_views=2))) == 2 for i in range(50))
    ordered = ViewSampling(shuffle_views=False, three_view_probability=1.0)
    assert sample_views("z", ["a", "b", "c"], 0, rule=ordered) == ("a", "b", "c")


def test_view_sampling_is_a_pure_seeded_function():
    ids = [f"episode/{i}@{i % 4}" for i in range(200)]
    draw = lambda seed, epoch: [sample_views(i, ["a", "b", "c"], seed, epoch) for i in ids]  # noqa: E731
    assert draw(0, 0) == draw(0, 0)
    assert draw(0, 0) != draw(0, 1) and draw(0, 0) != draw(1, 0)
    with pytest.raises(ValueError, match="episode/9@1: no camera views"):
        sample_views("episode/9@1", [], 0)
    with pytest.raises(ValueError, match="duplicate"):
        sample_views("e", ["a", "a"], 0)
    with pytest.raises(ValueError, match="three_view_probability"):
        ViewSampling(three_view_probability=1.5)


# ---------------------------------------------------------------- side-view conditions


def _scene():
    return occupancy_from_depths([plane(0.12)], [np.zeros((SIZE, SIZE), int)])


def test_side_camera_sees_the_reference_occupancy_at_the_expected_depth():
    occupancy = _scene()
    shifted = IDENTITY.copy()
    shifted[0, 3] = 0.02  # 2 cm right, same orientation: the plane stays 0.12 away
    tilted = look_at([0.03, 0.0, 0.0], [0.0, 0.0, 0.12], up=(0, -1, 0))
    cameras = {"anchor": ViewCamera(K, IDENTITY, SIZE, SIZE), "shifted": ViewCamera(K, shifted, SIZE, SIZE),
               "tilted": ViewCamera(K, tilted, SIZE, SIZE)}
    anchor, side, tilt = side_view_conditions(occupancy, cameras, ["anchor", "shifted", "tilted"], backend="torch")
    inner = (slice(2, -2), slice(2, -2))
    assert anchor.valid[0][inner].all()
    # Shifted camera: plane x in [-0.0384, 0.0384] is seen in columns j <= 31.5 + 0.0184 / 0.0012 = 46.8.
    assert side.valid[0][2:-2, 2:44].all() and not side.valid[0][:, 50:].any()
    assert np.abs(side.depth[0][2:-2, 2:44] - 0.12).max() <= VOXEL
    # Tilted camera: the optical axis hits the plane at the target, sqrt(0.03^2 + 0.12^2) away.
    centre = tilt.depth[0][31:33, 31:33]
    assert tilt.valid[0][31:33, 31:33].all()
    assert abs(centre.mean() - np.hypot(0.03, 0.12)) <= 1.5 * VOXEL


def test_cameras_of_a_scaled_reconstruction_aligned_by_eq1_give_the_same_side_render():
    occupancy = _scene()
    true_side = look_at([0.03, -0.01, 0.0], [0.0, 0.0, 0.12], up=(0, -1, 0))
    alpha = 2.5  # the other reconstruction is alpha times smaller
    other_side = true_side.copy()
    other_side[:3, 3] /= alpha
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    depth_anchor = 0.1 + 0.0004 * cols + 0.0002 * rows
    depth_anchor[:3, :3] = 0.0  # invalid pixels are ignored by the fit
    depth_other = depth_anchor / alpha
    aligned = align_side_cameras({"side": ViewCamera(K, other_side, SIZE, SIZE)}, depth_other, depth_anchor)
    assert aligned.alignment.scale == pytest.approx(alpha) and aligned.alignment.shift == 0.0
    np.testing.assert_allclose(aligned.cameras["side"].cam_to_world, true_side, atol=1e-12)
    expected = render_condition_maps(occupancy, ViewCamera(K, true_side, SIZE, SIZE), backend="torch")
    (got,) = side_view_conditions(occupancy, aligned.cameras, ["side"], backend="torch")
    assert expected.valid.mean() > 0.3
    np.testing.assert_allclose(got.depth, expected.depth, atol=1e-6)
    np.testing.assert_array_equal(got.semantics, expected.semantics)
    # Unaligned cameras render something else (the test can fail).
    (wrong,) = side_view_conditions(occupancy, {"side": ViewCamera(K, other_side, SIZE, SIZE)}, ["side"],
                                    backend="torch")
    assert np.abs(wrong.depth - expected.depth).max() > 0.01


def test_side_view_bad_input():
    occupancy = _scene()
    cameras = {"anchor": ViewCamera(K, IDENTITY, SIZE, SIZE)}
    with pytest.raises(OccupancyInputError, match=r"\['wrist'\] have no camera .*anchor"):
        side_view_conditions(occupancy, cameras, ["anchor", "wrist"])
    with pytest.raises(OccupancyInputError, match="duplicates"):
        side_view_conditions(occupancy, cameras, ["anchor", "anchor"])
    with pytest.raises(OccupancyInputError, match="no camera to align"):
        align_side_cameras({}, plane(0.1), plane(0.1))
    with pytest.raises(OccupancyInputError, match="shape"):
        align_side_cameras(cameras, plane(0.1, 8), plane(0.1))


# ---------------------------------------------------------------- calibrated multi-camera data


def test_multiview_samples_render_every_view_from_the_reference_occupancy():
    """A simulated episode given a second, calibrated camera: its training conditions are the
    reference camera's occupancy rendered from it, and the loss runs on them."""
    from dataclasses import replace

    from torch.utils.data import default_collate

    import orv_engine
    from orv_engine.data import RLDSReader
    from orv_engine.occupancy.condition_images import condition_images
    from orv_engine.occupancy.clip_conditions import view_condition_maps
    from orv_engine.occupancy.from_episode import occupancy_from_episode
    from orv_engine.occupancy.side_views import episode_view_cameras, episode_view_conditions, reference_occupancy
    from orv_engine.training.multiview_sampling import ViewSampling
    from orv_engine.training.data_mv import MultiViewClipDataset
    from orv_engine.training.trainer_mv import multiview_batch_latents, multiview_diffusion_loss
    from orv_engine.data.clips import PRESETS
    from orv_engine.training.config import LossConfig
    from tiny_orv import tiny_vae

    demo = Path(orv_engine.__file__).parent / "demo_data" / "orv_tabletop"
    episode = next(iter(RLDSReader(demo)))
    side_pose = np.array(episode.extrinsics["image_0"], dtype=np.float64, copy=True)
    side_pose[..., :3, 3] += side_pose[..., :3, 0] * 0.03  # 3 cm along the camera's x axis
    episode.frames["image_1"] = episode.frames["image_0"]
    episode.depth["image_1"] = episode.depth["image_0"] * 0.9  # would change a merged occupancy
    episode.segmentation["image_1"] = episode.segmentation["image_0"]
    episode.intrinsics["image_1"] = episode.intrinsics["image_0"]
    episode.extrinsics["image_1"] = side_pose

    config = replace(PRESETS["sim"], num_frames=8, height=64, width=64, clip_interval=16)
    dataset = MultiViewClipDataset(demo, config, cameras=["image_0"], shuffle=False, seed=0,
                                   rule=ViewSampling(three_view_probability=1.0), condition_kinds=["depth", "semantics"],
                                   conditions_source="occupancy", reference_camera="image_0")
    dataset.cameras = ("image_0", "image_1")  # the demo files hold one camera; this episode has two
    samples = dataset._episode_clips(episode)
    assert samples and all(sorted(s.views) == ["image_0", "image_1"] for s in samples)
    sample = samples[0]
    side = sample.clips[sample.views.index("image_1")]
    steps = list(side.frame_indices) + [side.frame_indices[-1]]
    expected = condition_images(view_condition_maps(episode, "image_1", steps, 64, 64,
                                                    occupancy=reference_occupancy(episode, "image_0")),
                                ["depth", "semantics"])
    merged = condition_images(view_condition_maps(episode, "image_1", steps, 64, 64,
                                                  occupancy=occupancy_from_episode(episode)), ["depth", "semantics"])
    np.testing.assert_array_equal(side.conditions["depth"], expected["depth"])
    assert not np.array_equal(side.conditions["depth"], merged["depth"])
    anchor = sample.clips[sample.views.index("image_0")]
    assert not np.array_equal(anchor.conditions["depth"], side.conditions["depth"])  # another viewpoint
    cams = episode_view_cameras(episode, ["image_0", "image_1"], 64, 64)
    np.testing.assert_allclose(cams["image_1"].cam_to_world, side_pose)
    with pytest.raises(OccupancyInputError, match="no intrinsics for camera 'wrist'"):
        episode_view_cameras(episode, ["wrist"], 64, 64)
    with pytest.raises(OccupancyInputError, match="no depth for the reference camera 'wrist'"):
        reference_occupancy(episode, "wrist")

    # The objective on these samples: one timestep per sample, finite, gradients reach the gate.
    batch = default_collate([dataset._out(sample)])
    assert batch["video"].shape == (1, 2, 9, 3, 64, 64) and batch["conditions"]["depth"].shape == (1, 2, 3, 9, 64, 64)
    g = torch.Generator().manual_seed(0)
    inputs = multiview_batch_latents(tiny_vae(), batch, ["depth", "semantics"], g, LossConfig(), torch.device("cpu"),
                                     torch.float32)
    assert inputs.condition_latents.shape == (1, 2, 3, 32, 8, 8)
    inputs.prompt_embeds = torch.randn(1, 8, 32)
    model = ORVMultiViewTransformer3DModel.from_single_view(tiny_orv_transformer(seed=0), num_views=3).train()
    from diffusers import CogVideoXDPMScheduler

    loss, drawn = multiview_diffusion_loss(model, CogVideoXDPMScheduler(prediction_type="v_prediction"), inputs, g)
    loss.backward()
    assert torch.isfinite(loss) and drawn["timesteps"].shape == (1,) and drawn["drop_image"].shape == (1, 2)
    assert model.view_attention_blocks[0].proj_out.weight.grad.abs().sum() > 0

    # Generation of both views of the episode together: first frames, actions, per-view conditions.
    views = ["image_1", "image_0"]
    conditions = episode_view_conditions(episode, views, steps, 64, 64, ["depth", "semantics"],
                                         reference_camera="image_0")  # 8 frames + the placeholder
    np.testing.assert_array_equal(conditions[0]["depth"], expected["depth"])
    pipe = _tiny_mv_pipeline(tiny_pipeline(seed=0))
    frames = pipe([sample.clips[sample.views.index(v)].frames[0] for v in views], episode.actions[anchor.frame_indices],
                  conditions=conditions, num_inference_steps=2, generator=torch.Generator().manual_seed(0)).frames
    assert frames.shape == (1, 2, 8, 64, 64, 3) and np.isfinite(frames).all()


def test_multiview_config_is_checked():
    from orv_engine.config_validation import ConfigError
    from orv_engine.training.config_mv import load_multiview_config, multiview_config_from_dict

    root = Path(__file__).resolve().parents[1] / "configs"
    for name in ("tiny_mv.yaml", "bridge/mv.yaml", "droid/mv.yaml"):
        config = load_multiview_config(root / name, check_paths=False)
        assert config.multiview.num_views == 3 and config.train.batch_size == 1
    assert load_multiview_config(root / "tiny_mv.yaml", check_paths=False).multiview.rule().single_view_keep == \
        pytest.approx(single_view_keep_probability(BRIDGE_SINGLE_VIEW_SAMPLES, BRIDGE_THREE_VIEW_SAMPLES))
    base = {"validation": {"every": 0}, "tracker": "none"}
    bad = [
        ({"multiview": {"num_vews": 2}}, "multiview.num_vews: unknown key"),
        ({"multiview": {"trainable": "some"}}, "multiview.trainable"),
        ({"multiview": {"single_view_keep": 1.5}}, "multiview.single_view_keep"),
        ({"multiview": {"cameras": ["a"], "reference_camera": "b"}}, "multiview.reference_camera"),
        ({"train": {"batch_size": 2}}, "train.batch_size"),
        ({"validation": {"every": 10}}, "validation.every"),
    ]
    for values, message in bad:
        with pytest.raises(ConfigError, match=message):
            multiview_config_from_dict({**base, **values}, check_paths=False)
