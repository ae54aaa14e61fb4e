"""Depth and camera stages of occupancy-from-RGB (issue bridge-occupancy).

Depth Pro and Depth Anything run as tiny random-weight models saved in the real
transformers format (orv_engine.testing.tiny_depth) and loaded through the same code path as
real checkpoints. Depth Pro's metric depth is checked against a reference computed here from
the raw model outputs with the formula of the Depth Pro paper / Apple's ``infer``:
``f_px = W / (2 tan(fov / 2))``, inverse depth = canonical inverse depth * W / f_px,
resized bilinearly to the frame, depth = 1 / clamp(inverse depth, 1e-4, 1e4).
"""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from orv_engine.data.episode import Episode, EpisodeMeta
from orv_engine.occupancy.errors import OccupancyInputError
from orv_engine.occupancy.from_rgb import camera as camera_module
from orv_engine.occupancy.from_rgb.camera import (
    CAMERA_PRESETS,
    CameraPreset,
    EpisodeCamera,
    episode_camera,
    preset_focal_length,
)
from orv_engine.occupancy.from_rgb.depth import (
    DepthAnythingEstimator,
    DepthEstimate,
    DepthEstimator,
    DepthProEstimator,
    load_depth_estimator,
)
from orv_engine.testing.tiny_depth import build_tiny_depth_anything, build_tiny_depth_pro

H, W = 40, 60


@pytest.fixture(scope="module")
def depth_pro_path(tmp_path_factory):
    return build_tiny_depth_pro(tmp_path_factory.mktemp("tiny_depth_pro"))


@pytest.fixture(scope="module")
def depth_anything_path(tmp_path_factory):
    return build_tiny_depth_anything(tmp_path_factory.mktemp("tiny_depth_anything"))


@pytest.fixture(scope="module")
def depth_pro(depth_pro_path):
    return DepthProEstimator(depth_pro_path)


@pytest.fixture(scope="module")
def frames():
    return np.random.default_rng(0).integers(0, 256, (3, H, W, 3), dtype=np.uint8)


def _reference_depth_pro(path, frames, focal_px=None):
    """Apple's metric depth from the raw transformers forward, written out here."""
    from transformers import DepthProForDepthEstimation, DepthProImageProcessor

    model = DepthProForDepthEstimation.from_pretrained(path, local_files_only=True).eval()
    processor = DepthProImageProcessor.from_pretrained(path, local_files_only=True)
    pixel_values = processor(images=list(frames), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        outputs = model(pixel_values=pixel_values)
    height, width = frames.shape[1:3]
    fov = outputs.field_of_view.double().numpy()
    per_frame_focal = width / (2.0 * np.tan(np.radians(fov) / 2.0))
    focal = float(np.median(per_frame_focal)) if focal_px is None else focal_px
    inverse = outputs.predicted_depth.double() * (width / focal)  # metric inverse depth at the model's size
    inverse = torch.nn.functional.interpolate(inverse[:, None], size=(height, width), mode="bilinear",
                                              align_corners=False)[:, 0]
    depth = 1.0 / torch.clamp(inverse, 1e-4, 1e4)
    return depth.numpy(), focal, per_frame_focal, outputs, processor


# ---------------------------------------------------------------- Depth Pro


def test_tiny_depth_pro_folder_is_the_real_format(depth_pro_path, depth_anything_path):
    import json

    for path, model_type in [(depth_pro_path, "depth_pro"), (depth_anything_path, "depth_anything")]:
        names = {p.name for p in path.iterdir()}
        assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= names
        assert json.loads((path / "config.json").read_text())["model_type"] == model_type
    config = json.loads((depth_pro_path / "config.json").read_text())
    assert config["use_fov_model"] is True
    assert config["image_model_config"]["image_size"] == config["patch_size"]


def test_depth_pro_matches_apples_formula_on_the_raw_outputs(depth_pro, depth_pro_path, frames):
    result = depth_pro.estimate(frames)
    reference, focal, per_frame_focal, _, _ = _reference_depth_pro(depth_pro_path, frames)
    assert isinstance(result, DepthEstimate) and result.metric and result.scale == 1.0 and result.shift == 0.0
    assert result.depth.shape == (3, H, W) and result.depth.dtype == np.float32
    assert np.all(np.isfinite(result.depth)) and np.all(result.depth > 0)
    np.testing.assert_allclose(result.depth, reference, rtol=1e-4)
    # one K per episode: the median focal of the per-frame FOV estimates (which do differ)
    assert np.ptp(per_frame_focal) > 0
    assert result.intrinsics.shape == (3, 3) and result.intrinsics.dtype == np.float64
    np.testing.assert_allclose(result.intrinsics,
                               [[focal, 0, (W - 1) / 2], [0, focal, (H - 1) / 2], [0, 0, 1]], rtol=1e-6)
    # a 60-degree field of view (the tiny FOV head's bias): f ~= W / (2 tan 30 deg)
    assert abs(focal - W / (2 * math.tan(math.radians(60) / 2))) < 0.05 * focal


def test_depth_pro_loads_the_fov_head_a_checkpoint_holds(depth_pro, depth_pro_path, frames, tmp_path):
    import json
    import shutil

    copy = Path(shutil.copytree(depth_pro_path, tmp_path / "depth_pro_no_flag"))
    config = json.loads((copy / "config.json").read_text())
    config["use_fov_model"] = False  # FOV weights on disk, flag off: transformers alone would drop them
    (copy / "config.json").write_text(json.dumps(config))
    reloaded = DepthProEstimator(copy)
    assert reloaded.model.fov_model is not None
    np.testing.assert_allclose(reloaded.estimate(frames[:2]).depth, depth_pro.estimate(frames[:2]).depth, rtol=1e-5)


def test_depth_pro_single_frame_agrees_with_transformers_post_processing(depth_pro, depth_pro_path, frames):
    one = frames[:1]
    _, _, _, outputs, processor = _reference_depth_pro(depth_pro_path, one)
    post = processor.post_process_depth_estimation(outputs, target_sizes=[(H, W)])[0]
    np.testing.assert_allclose(depth_pro.estimate(one).depth[0], post["predicted_depth"].numpy(), rtol=1e-4)
    assert depth_pro.estimate(one).intrinsics[0, 0] == pytest.approx(float(post["focal_length"]), rel=1e-5)


def test_depth_pro_uses_a_known_focal_length(depth_pro, depth_pro_path, frames):
    near = depth_pro.estimate(frames, focal_length_px=50.0)
    far = depth_pro.estimate(frames, focal_length_px=100.0)
    np.testing.assert_allclose(far.depth, 2.0 * near.depth, rtol=1e-5)  # depth = f / (W * canonical)
    reference, focal, *_ = _reference_depth_pro(depth_pro_path, frames, focal_px=50.0)
    assert focal == 50.0
    np.testing.assert_allclose(near.depth, reference, rtol=1e-4)
    np.testing.assert_allclose(near.intrinsics, [[50.0, 0, 29.5], [0, 50.0, 19.5], [0, 0, 1]])
    assert far.intrinsics[0, 0] == far.intrinsics[1, 1] == 100.0
    batched = DepthProEstimator(depth_pro_path, batch_size=2).estimate(frames, focal_length_px=50.0)
    np.testing.assert_allclose(batched.depth, near.depth, rtol=1e-5)  # batching changes nothing


def test_depth_pro_marks_unusable_pixels_nan(depth_pro, frames, monkeypatch):
    canonical = np.full((3, H, W), 2.0)
    canonical[0, 0, :3] = [np.nan, -1.0, np.inf]
    canonical[1, 5, 5] = 0.0
    monkeypatch.setattr(depth_pro, "predict", lambda f: (canonical, np.array([60.0, 61.0, 59.0])))
    result = depth_pro.estimate(frames, focal_length_px=30.0)
    assert np.isnan(result.depth[0, 0, :3]).all() and np.isnan(result.depth[1, 5, 5])
    assert np.isfinite(result.depth).sum() == 3 * H * W - 4
    np.testing.assert_allclose(result.depth[2], 30.0 / (W * 2.0), rtol=1e-6)
    canonical[2] = np.nan  # a frame with nothing usable is an error
    with pytest.raises(OccupancyInputError, match=r"no usable .*frame\(s\) \[2\]"):
        depth_pro.estimate(frames, focal_length_px=30.0)


def test_depth_pro_bad_model_output_and_bad_input(depth_pro_path, frames):
    bad = DepthProEstimator(depth_pro_path)
    with pytest.raises(OccupancyInputError, match="uint8"):
        bad.estimate(frames.astype(np.float32))
    with pytest.raises(OccupancyInputError, match=r"\(T, H, W, 3\)"):
        bad.estimate(frames[..., 0])
    with pytest.raises(OccupancyInputError, match="non-empty"):
        bad.estimate(frames[:0])
    for focal in (0.0, -5.0, float("nan"), "wide"):
        with pytest.raises(OccupancyInputError, match="focal_length_px"):
            bad.estimate(frames, focal_length_px=focal)
    with torch.no_grad():
        bad.model.fov_model.head.layers[-1].bias.fill_(float("nan"))
    with pytest.raises(OccupancyInputError, match="field_of_view"):
        bad.estimate(frames)
    assert np.isfinite(bad.estimate(frames, focal_length_px=40.0).depth).all()  # a known focal needs no FOV
    bad.model.use_fov_model = False  # a checkpoint without the FOV head
    with pytest.raises(OccupancyInputError, match="no field-of-view head"):
        bad.estimate(frames)
    with torch.no_grad():
        bad.model.head.layers[-2].bias.fill_(float("nan"))  # all-NaN canonical inverse depth
    with pytest.raises(OccupancyInputError, match=r"no usable .*frame\(s\) \[0, 1, 2\]"):
        bad.estimate(frames, focal_length_px=40.0)
    with torch.no_grad():
        bad.model.head.layers[-2].bias.fill_(-1e9)  # ReLU -> zero inverse depth everywhere
    with pytest.raises(OccupancyInputError, match="no usable"):
        bad.estimate(frames, focal_length_px=40.0)


# ---------------------------------------------------------------- Depth Anything


def test_depth_anything_has_one_scale_per_episode(depth_anything_path):
    estimator = DepthAnythingEstimator(depth_anything_path, target_median=2.0)
    two = np.random.default_rng(1).integers(0, 256, (2, 30, 44, 3), dtype=np.uint8)
    result = estimator.estimate(two, focal_length_px=123.0)  # the focal is accepted and unused
    assert result.metric is False and result.intrinsics is None and result.shift == 0.0
    assert result.depth.shape == (2, 30, 44) and result.depth.dtype == np.float32
    raw = estimator.adapter.predict(two).astype(np.float64)  # relative disparity
    assert np.median(result.depth[0]) == pytest.approx(2.0, rel=1e-4)
    assert result.scale == pytest.approx(1.0 / (np.median(raw[0]) * 2.0), rel=1e-5)
    # the same scale on both frames: depth * disparity is one constant over the episode
    np.testing.assert_allclose(result.depth * raw, 1.0 / result.scale, rtol=1e-4)
    ratio = (result.depth[1] / result.depth[0]) * (raw[1] / raw[0])
    np.testing.assert_allclose(ratio, 1.0, rtol=1e-4)  # ratios between frames preserved
    with pytest.raises(OccupancyInputError, match="uint8"):
        estimator.estimate(two.astype(np.int64))
    with pytest.raises(OccupancyInputError, match="target_median"):
        DepthAnythingEstimator(depth_anything_path, target_median=0.0)
    with torch.no_grad():
        estimator.adapter.model.head.conv3.bias.fill_(float("nan"))
    with pytest.raises(OccupancyInputError, match="no positive value|no usable"):
        estimator.estimate(two)


# ---------------------------------------------------------------- loading


def test_load_depth_estimator_detects_the_model_type(depth_pro_path, depth_anything_path):
    pro = load_depth_estimator(depth_pro_path)
    anything = load_depth_estimator(str(depth_anything_path), kind="depth_anything")
    assert isinstance(pro, DepthProEstimator) and pro.name == "depth_pro"
    assert isinstance(anything, DepthAnythingEstimator) and anything.name == "depth_anything"
    assert isinstance(pro, DepthEstimator) and isinstance(anything, DepthEstimator)
    assert isinstance(load_depth_estimator(depth_anything_path, kind="auto"), DepthAnythingEstimator)


def test_load_depth_estimator_errors_name_the_path(tmp_path, depth_pro_path):
    missing = tmp_path / "no_such_model"
    with pytest.raises(OccupancyInputError, match=f"{missing}.*not a folder"):
        load_depth_estimator(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(OccupancyInputError, match=f"{empty}.*no config.json"):
        load_depth_estimator(empty)
    zoe = tmp_path / "zoe"
    zoe.mkdir()
    (zoe / "config.json").write_text('{"model_type": "zoedepth"}')
    with pytest.raises(OccupancyInputError, match=f"{zoe}.*unsupported model_type 'zoedepth'"):
        load_depth_estimator(zoe)
    (empty / "config.json").write_text("not json")
    with pytest.raises(OccupancyInputError, match="cannot read"):
        load_depth_estimator(empty)
    with pytest.raises(OccupancyInputError, match="kind"):
        load_depth_estimator(depth_pro_path, kind="midas")
    with pytest.raises(OccupancyInputError, match="model_type 'depth_pro', expected 'depth_anything'"):
        load_depth_estimator(depth_pro_path, kind="depth_anything")


# ---------------------------------------------------------------- camera


def _episode(dataset="bridge", num_frames=3, height=H, width=W, intrinsics=None, extrinsics=None):
    meta = EpisodeMeta(dataset=dataset, episode_id="bridge_dataset/train/shard-0#7", source_file="shard-0",
                       index_in_file=7)
    return Episode(
        frames={"image_0": np.zeros((num_frames, height, width, 3), np.uint8)},
        actions=np.zeros((num_frames, 7), np.float32), states=np.zeros((num_frames, 7), np.float32),
        instruction="put the cup in the sink", meta=meta,
        intrinsics=None if intrinsics is None else {"image_0": intrinsics},
        extrinsics=None if extrinsics is None else {"image_0": extrinsics},
    )


K_DATASET = np.array([[70.0, 0, 30.0], [0, 71.0, 20.0], [0, 0, 1]])
K_MODEL = np.array([[52.0, 0, 29.5], [0, 52.0, 19.5], [0, 0, 1]])
PRESET = CameraPreset(width=120, height=80, fx=100.0, fy=102.0, cx=59.5, cy=39.5, source="test calibration")


def test_camera_preset_scales_with_the_pixel_centre_convention():
    K = PRESET.intrinsics_at(H, W)  # half size
    np.testing.assert_allclose(K, [[50.0, 0, 29.5], [0, 51.0, 19.5], [0, 0, 1]])
    np.testing.assert_allclose(PRESET.intrinsics_at(80, 120), [[100, 0, 59.5], [0, 102, 39.5], [0, 0, 1]])
    with pytest.raises(OccupancyInputError):
        PRESET.intrinsics_at(0, W)
    for name, preset in CAMERA_PRESETS.items():  # whatever the table holds is sourced and sane
        assert name in {"bridge", "rt1", "droid", "maniskill"} and preset.source.strip()
        assert preset.fx > 0 and preset.fy > 0 and 0 <= preset.cx < preset.width and 0 <= preset.cy < preset.height


def test_episode_camera_priority_order(monkeypatch):
    monkeypatch.setitem(camera_module.CAMERA_PRESETS, "bridge", PRESET)
    recorded = episode_camera(_episode(intrinsics=K_DATASET), "image_0", estimated_intrinsics=K_MODEL)
    assert isinstance(recorded, EpisodeCamera) and recorded.source == "dataset"
    assert recorded.intrinsics.shape == (3, 3, 3) and recorded.intrinsics.dtype == np.float64
    np.testing.assert_array_equal(recorded.intrinsics, np.broadcast_to(K_DATASET, (3, 3, 3)))

    preset = episode_camera(_episode(), "image_0", estimated_intrinsics=K_MODEL)
    assert preset.source == "preset"
    np.testing.assert_allclose(preset.intrinsics[2], PRESET.intrinsics_at(H, W))

    estimated = episode_camera(_episode(dataset="rt1"), "image_0", estimated_intrinsics=K_MODEL)
    assert estimated.source == "depth_model"
    np.testing.assert_array_equal(estimated.intrinsics, np.broadcast_to(K_MODEL, (3, 3, 3)))

    assert preset_focal_length(_episode(intrinsics=K_DATASET), "image_0", H, W) == 70.0
    assert preset_focal_length(_episode(intrinsics=K_DATASET), "image_0", 2 * H, 2 * W) == 140.0
    assert preset_focal_length(_episode(), "image_0", H, W) == 50.0
    assert preset_focal_length(_episode(dataset="rt1"), "image_0", H, W) is None


def test_episode_camera_shapes_and_static_camera():
    per_frame_K = np.stack([K_DATASET * [[1 + t, 1, 1], [1, 1 + t, 1], [1, 1, 1]] for t in range(3)])
    poses = np.stack([np.eye(4)] * 3)
    poses[:, 0, 3] = [0.0, 0.1, 0.2]
    moving = episode_camera(_episode(intrinsics=per_frame_K, extrinsics=poses), "image_0")
    np.testing.assert_array_equal(moving.intrinsics, per_frame_K)
    np.testing.assert_array_equal(moving.extrinsics, poses)
    assert preset_focal_length(_episode(intrinsics=per_frame_K), "image_0", H, W) == 140.0  # median fx

    static = episode_camera(_episode(dataset="rt1", num_frames=4), "image_0", estimated_intrinsics=K_MODEL)
    assert static.extrinsics.shape == (4, 4, 4) and static.extrinsics.dtype == np.float64
    np.testing.assert_array_equal(static.extrinsics, np.broadcast_to(np.eye(4), (4, 4, 4)))
    single_pose = episode_camera(_episode(intrinsics=K_DATASET, extrinsics=poses[1]), "image_0")
    np.testing.assert_array_equal(single_pose.extrinsics, np.broadcast_to(poses[1], (3, 4, 4)))


def test_episode_camera_errors_name_the_episode_and_camera():
    with pytest.raises(OccupancyInputError, match=r"no intrinsics: episode bridge_dataset/train/shard-0#7 "
                                                  r"camera 'image_0'.*give a depth model that estimates the field"):
        episode_camera(_episode(dataset="rt1"), "image_0")
    with pytest.raises(OccupancyInputError, match=r"shard-0#7 has no frames for camera 'wrist'"):
        episode_camera(_episode(), "wrist", estimated_intrinsics=K_MODEL)
    with pytest.raises(OccupancyInputError, match=r"intrinsics \(episode .*#7 camera 'image_0'\).*shape"):
        episode_camera(_episode(intrinsics=np.eye(4)), "image_0")
    with pytest.raises(OccupancyInputError, match=r"extrinsics .*last row"):
        episode_camera(_episode(intrinsics=K_DATASET, extrinsics=np.ones((4, 4))), "image_0")
    with pytest.raises(OccupancyInputError, match="estimated_intrinsics.*positive"):
        episode_camera(_episode(dataset="rt1"), "image_0", estimated_intrinsics=np.zeros((3, 3)))


def test_depth_pro_intrinsics_feed_the_episode_camera(depth_pro):
    episode = _episode(dataset="rt1", num_frames=2)
    episode.frames["image_0"] = np.random.default_rng(2).integers(0, 256, (2, H, W, 3), dtype=np.uint8)
    focal = preset_focal_length(episode, "image_0", H, W)
    estimate = depth_pro.estimate(episode.frames["image_0"], focal_length_px=focal)
    camera = episode_camera(episode, "image_0", estimated_intrinsics=estimate.intrinsics)
    assert focal is None and camera.source == "depth_model"
    np.testing.assert_array_equal(camera.intrinsics[1], estimate.intrinsics)
