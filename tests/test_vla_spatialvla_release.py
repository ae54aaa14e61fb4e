"""The released SpatialVLA, converted: a tiny format twin -> ``convert_spatialvla`` -> ``load_policy``.

The reference below is written from the raw tensors and JSON files of the twin, following
upstream's code paths (GitHub SpatialVLA/SpatialVLA ``model/modeling_spatialvla.py``,
``model/processing_spatialvla.py``, ``model/action_tokenizer.py``): [0, 1] pixels,
normalised for SigLIP; ZoeDepth on the 31-pixel reflect-padded image resized to 384;
per-patch back-projection with the processor config's intrinsics and the NeRF-encoded
MLP, added to SigLIP's features; ``spatial_embed_tokens`` for the action ids; Gemma2
with a bidirectional prefix; greedy tokens (restricted to their slot, like the policy);
edge-midpoint decoding and ``q01``/``q99`` un-normalisation.
"""

from __future__ import annotations

import json
import math
import shutil
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

INSTRUCTION = "Put the Spoon in the pot"
BRIDGE = "bridge_orig/1.0.0"


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    from orv_engine.testing.released_spatialvla import build_released_spatialvla
    from vla_finetune.policies.spatialvla.convert_spatialvla import convert_spatialvla

    tmp = tmp_path_factory.mktemp("spatialvla_release")
    src = build_released_spatialvla(tmp / "spatialvla-4b-224-pt")
    start = time.perf_counter()
    dst = convert_spatialvla(src, tmp / "converted")
    return {"tmp": tmp, "src": src, "dst": dst, "convert_s": time.perf_counter() - start}


def _raw(src):
    index = json.loads((src / "model.safetensors.index.json").read_text())["weight_map"]
    tensors = {}
    for name in sorted(set(index.values())):
        tensors.update(load_file(str(src / name)))
    return tensors


def _submodel(cls, config, tensors, prefix, folder):
    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(folder)
    save_file({k[len(prefix):]: v.contiguous() for k, v in tensors.items() if k.startswith(prefix)},
              str(folder / "model.safetensors"))
    return cls.from_pretrained(str(folder), attn_implementation="eager").eval()


def reference_position_embedding(tensors, depth, intrinsic, patch, reso, n_freqs):
    """Ego3D from the raw MLP weights and a ``(H, W)`` depth map, point by point."""
    h, w = depth.shape
    step, offset = patch // reso, patch / reso / 2
    cells = depth.reshape(h // step, step, w // step, step).mean(axis=(1, 3))  # area resize: block means
    k_inv = np.linalg.inv(intrinsic)
    rows = []
    for pi in range(h // patch):
        for pj in range(w // patch):
            features = []
            for a in range(reso):
                for b in range(reso):
                    i, j = pi * reso + a, pj * reso + b
                    xyz = k_inv @ np.array([j * step + offset, i * step + offset, 1.0]) * cells[i, j]
                    for c, value in enumerate(xyz):
                        v = (value - (2.0 if c == 2 else 0.0)) / 2.0
                        features += [v] + [math.sin(2 ** k * v) for k in range(n_freqs)] \
                            + [math.cos(2 ** k * v) for k in range(n_freqs)]
            rows.append(features)
    x = torch.tensor(rows, dtype=torch.float32)
    head = "position_embedding_3d.position_embedding_head"
    x = F.linear(x, tensors[f"{head}.0.weight"], tensors[f"{head}.0.bias"])
    x = F.layer_norm(x, x.shape[-1:], tensors[f"{head}.1.weight"], tensors[f"{head}.1.bias"], eps=1e-5)
    return F.linear(torch.relu(x), tensors[f"{head}.3.weight"], tensors[f"{head}.3.bias"])


def reference_decode(token_ids, begin, processor_config, dataset=BRIDGE):
    """Upstream's token -> action decoding and un-normalisation, from processor_config.json."""
    policy, num_bins = processor_config["bin_policy"], processor_config["action_config"]["num_bins"]
    mid = {k: 0.5 * (np.array(v[:-1]) + np.array(v[1:])) for g in ("translation", "rotation")
           for k, v in policy[g].items()}
    nt, nphi, nr = (num_bins["translation"][k] for k in ("theta_bins", "phi_bins", "r_bins"))
    npitch, nyaw = num_bins["rotation"]["pitch_bins"], num_bins["rotation"]["yaw_bins"]
    stats = processor_config["statistics"][dataset]["action"]
    q01, q99, mask = np.array(stats["q01"]), np.array(stats["q99"]), np.array(stats["mask"])
    out = []
    for t, r, g in np.asarray(token_ids).reshape(-1, 3) - begin:
        theta, phi, rad = mid["theta_bins"][t // (nphi * nr)], mid["phi_bins"][(t // nr) % nphi], mid["r_bins"][t % nr]
        xyz = np.clip([rad * math.sin(theta) * math.cos(phi), rad * math.sin(theta) * math.sin(phi),
                       rad * math.cos(theta)], -1, 1)
        r = r - nt * nphi * nr
        rpy = [mid["roll_bins"][r // (npitch * nyaw)], mid["pitch_bins"][(r // nyaw) % npitch],
               mid["yaw_bins"][r % nyaw]]
        grip = float(g - nt * nphi * nr - num_bins["rotation"]["roll_bins"] * npitch * nyaw)
        normalised = np.array([*xyz, *rpy, grip])
        out.append(np.where(mask, 0.5 * (normalised + 1) * (q99 - q01) + q01, normalised))
    return np.stack(out)


@pytest.fixture(scope="module")
def reference(released, tmp_path_factory):
    """Tokens and actions of the released model on one image, computed from the raw files."""
    from transformers import (Gemma2Config, Gemma2ForCausalLM, GemmaTokenizer, SiglipImageProcessor,
                              SiglipVisionConfig, SiglipVisionModel, ZoeDepthConfig, ZoeDepthForDepthEstimation)

    src, tmp = released["src"], tmp_path_factory.mktemp("reference")
    config = json.loads((src / "config.json").read_text())
    pconfig = json.loads((src / "processor_config.json").read_text())
    tensors = _raw(src)
    image = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)

    pixels = SiglipImageProcessor.from_pretrained(str(src))(images=[image], return_tensors="pt")["pixel_values"]
    assert 0.0 <= pixels.min() and pixels.max() <= 1.0  # the release leaves normalisation to the model
    size = pixels.shape[-1]
    # ZoeDepth: pad 31 (reflect), resize to 384 (bicubic, corners aligned), normalise; depth back and crop
    zoe = _submodel(ZoeDepthForDepthEstimation, ZoeDepthConfig(**config["vision_zoe_config"]), tensors,
                    "vision_zoe_model.", tmp / "zoe")
    zoe_in = F.interpolate(F.pad(pixels, (31, 31, 31, 31), mode="reflect"), size=(384, 384), mode="bicubic",
                           align_corners=True)
    with torch.no_grad():
        depth = zoe(pixel_values=(zoe_in - 0.5) / 0.5).predicted_depth
    depth = F.interpolate(depth[:, None], size=(size + 62, size + 62), mode="bicubic",
                          align_corners=True)[0, 0, 31:-31, 31:-31].double().numpy()
    entry = pconfig["intrinsic_config"][BRIDGE]
    intrinsic = np.array(entry["intrinsic"], float) * np.array([[size / entry["width"]], [size / entry["height"]],
                                                                 [1.0]])
    patch = config["vision_config"]["patch_size"]
    position = reference_position_embedding(tensors, depth, intrinsic, patch, config["ego3d_patch_reso"],
                                            config["n_freqs"])

    siglip = _submodel(SiglipVisionModel, SiglipVisionConfig(**config["vision_config"]), tensors, "vision_tower.",
                       tmp / "vision")
    with torch.no_grad():
        features = siglip((pixels - 0.5) / 0.5).last_hidden_state[0] + position
        image_features = F.linear(features, tensors["multi_modal_projector.linear.weight"],
                                  tensors["multi_modal_projector.linear.bias"])
    # Gemma2 with upstream's embeddings: spatial_embed_tokens for the action ids, sqrt(hidden) scaling of text
    text = {k: v for k, v in config["text_config"].items() if k not in ("architectures", "torch_dtype")}
    lm = _submodel(Gemma2ForCausalLM, Gemma2Config(**text), tensors, "language_model.", tmp / "lm")
    begin, count = config["action_token_begin_idx"], config["spatial_token_num"]
    table, spatial = tensors["language_model.model.embed_tokens.weight"], tensors["spatial_embed_tokens.weight"]
    hidden = table.shape[1]

    def embed(ids):
        rows = torch.stack([spatial[i - begin] if begin <= i < begin + count else table[i] for i in ids])
        return rows * torch.tensor(hidden ** 0.5)

    tokenizer = GemmaTokenizer.from_pretrained(str(src))
    text_ids = [tokenizer.bos_token_id] + tokenizer(INSTRUCTION.lower() + "\n", add_special_tokens=False)["input_ids"]
    prefix = len(image_features) + len(text_ids)
    slots = [(0, 16 * 32 * 8), (4096, 8192), (8192, 8194)]
    generated, first_logits = [], None
    for step in range(3 * pconfig["action_chunk_size"]):
        inputs = torch.cat([image_features, embed(text_ids + generated)])[None]
        n = inputs.shape[1]
        allowed = torch.ones(n, n).tril().bool()
        allowed[:prefix, :prefix] = True  # PaliGemma's prefix-LM: image + prompt see each other
        mask = torch.zeros(1, 1, n, n).masked_fill(~allowed, torch.finfo(torch.float32).min)
        with torch.no_grad():
            logits = lm(inputs_embeds=inputs, attention_mask=mask,
                        position_ids=torch.arange(1, n + 1)[None]).logits[0, -1]
        first_logits = logits if first_logits is None else first_logits
        lo, hi = slots[step % 3]
        generated.append(begin + lo + int(torch.argmax(logits[begin + lo:begin + hi])))
    return {"image": image, "tokens": np.array(generated), "begin": begin, "first_logits": first_logits,
            "actions": reference_decode(generated, begin, pconfig), "position": position, "pixels": pixels,
            "depth": depth, "intrinsic": intrinsic, "tensors": tensors, "pconfig": pconfig}


def test_converted_folder_and_config(released):
    from vla_finetune.policies.spatialvla import SpatialVLAPolicy

    dst = released["dst"]
    names = {p.name for p in dst.iterdir()}
    assert {"config.json", "model.safetensors", "dataset_statistics.json", "action_tokenizer.json",
            "tokenizer.json"} <= names
    config = json.loads((dst / "config.json").read_text())
    assert config["model_type"] == "spatialvla_orv" and config["use_ego3d"]
    assert config["chunk_size"] == 4 and config["prompt_template"] == "{instruction}"
    assert (config["execution"], config["ensemble_weight_decay"]) == ("ensemble", -0.8)
    source = json.loads((released["src"] / "config.json").read_text())
    assert config["action_token_offset"] == source["action_token_begin_idx"]
    statistics = json.loads((dst / "dataset_statistics.json").read_text())
    pconfig = json.loads((released["src"] / "processor_config.json").read_text())
    assert statistics["action"]["q01"] == pconfig["statistics"][BRIDGE]["action"]["q01"]
    policy = SpatialVLAPolicy.from_pretrained(dst)
    assert policy.action_tokenizer.to_bin_policy() == pconfig["bin_policy"]
    assert policy.processor.tokenizer.convert_ids_to_tokens(config["action_token_offset"]) == "<ACTION00000>"
    # the input rows of the action ids are the trained spatial embeddings; the output head keeps its own
    raw = _raw(released["src"])
    begin = config["action_token_offset"]
    table = policy.backbone.get_input_embeddings().weight
    torch.testing.assert_close(table[begin:begin + 8194], raw["spatial_embed_tokens.weight"])
    torch.testing.assert_close(table[:begin], raw["language_model.model.embed_tokens.weight"][:begin])
    torch.testing.assert_close(policy.backbone.lm_head.weight, raw["language_model.lm_head.weight"])
    print(f"conversion of the twin: {released['convert_s']:.1f} s")


def test_ego3d_matches_the_reference_on_a_depth_map(released, reference):
    from vla_finetune.policies.spatialvla import SpatialVLAPolicy

    policy = SpatialVLAPolicy.from_pretrained(released["dst"]).eval()
    ego3d = policy.ego3d
    np.testing.assert_allclose(np.array(policy.config.intrinsic), reference["intrinsic"], rtol=1e-12)
    # a synthetic depth map, then the whole path from the image (ZoeDepth's depth included)
    depth = 0.5 + np.random.default_rng(0).random((32, 32))
    expected = reference_position_embedding(reference["tensors"], depth, reference["intrinsic"], 8, 2, 8)
    with torch.no_grad():
        points = ego3d.points(torch.tensor(depth, dtype=torch.float32)[None, None])
        got = ego3d.position_embedding_head(ego3d.encode(points))
        torch.testing.assert_close(got[0], expected, atol=1e-5, rtol=1e-5)
        full = ego3d((reference["pixels"] - 0.5) / 0.5)[0]
    torch.testing.assert_close(full, reference["position"], atol=1e-4, rtol=1e-4)


def test_actions_equal_the_reference(released, reference):
    from vla_finetune.policies.interface import TemporalEnsembler, load_policy

    loaded = load_policy(released["dst"], execution="chunk", execute_steps=4)
    model = loaded.model
    prefix = model.prefix_inputs([reference["image"]], [INSTRUCTION])
    with torch.no_grad():
        logits = model.backbone(**prefix).logits[0, -1]
    torch.testing.assert_close(logits, reference["first_logits"], atol=1e-4, rtol=1e-4)
    tokens = model.predict_tokens([reference["image"]], [INSTRUCTION])[0] + model.config.action_token_offset
    np.testing.assert_array_equal(tokens, reference["tokens"])
    loaded.reset(INSTRUCTION)
    actions = np.stack([loaded.act(reference["image"]) for _ in range(4)])
    np.testing.assert_allclose(actions, reference["actions"], atol=1e-6)
    # the released execution: ensemble of the 4-step chunks, newer chunks weigh more (m = -0.8)
    ensembled = TemporalEnsembler(model, weight_decay=model.config.ensemble_weight_decay)
    ensembled.reset(INSTRUCTION)
    first = ensembled.act(reference["image"])
    np.testing.assert_allclose(first, reference["actions"][0], atol=1e-6)


def _edited(src, tmp, name, edit):
    folder = tmp / name
    shutil.copytree(src, folder)
    path = folder / "processor_config.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return folder


def test_bad_input_names_file_and_field(released, tmp_path):
    from orv_engine.models.checkpoint_files import CheckpointError
    from orv_engine.testing.tiny_vla import build_tiny_paligemma
    from vla_finetune.policies.spatialvla.convert_spatialvla import convert_spatialvla
    from vla_finetune.policy_data.normalization import StatisticsError

    src = released["src"]
    with pytest.raises(CheckpointError, match=r"config.json: model_type 'paligemma' is not 'spatialvla'"):
        convert_spatialvla(build_tiny_paligemma(tmp_path / "paligemma"), tmp_path / "out")
    with pytest.raises(CheckpointError, match="not found"):
        convert_spatialvla(tmp_path / "nothing", tmp_path / "out")
    folder = _edited(src, tmp_path, "no_q99", lambda d: d["statistics"][BRIDGE]["action"].pop("q99"))
    with pytest.raises(StatisticsError, match=r"processor_config.json: statistics\['bridge_orig/1.0.0'\].action.q99"):
        convert_spatialvla(folder, tmp_path / "out")
    with pytest.raises(StatisticsError, match=r"processor_config.json: statistics has no entry 'kuka'"):
        convert_spatialvla(src, tmp_path / "out", dataset="kuka")
    folder = _edited(src, tmp_path, "no_statistics", lambda d: d.pop("statistics"))
    with pytest.raises(StatisticsError, match=r"processor_config.json: no 'statistics'"):
        convert_spatialvla(folder, tmp_path / "out")
    folder = _edited(src, tmp_path, "short_grid", lambda d: d["bin_policy"]["translation"]["theta_bins"].pop(5))
    with pytest.raises(CheckpointError, match=r"processor_config.json: bin_policy.translation.theta_bins: 15 bins but "
                                              r"action_config.num_bins.translation.theta_bins says 16"):
        convert_spatialvla(folder, tmp_path / "out")
    folder = _edited(src, tmp_path, "more_bins", lambda d: d["action_config"]["num_bins"]["rotation"].update(
        roll_bins=32))
    with pytest.raises(CheckpointError, match=r"bin_policy.rotation.roll_bins: 16 bins but .*roll_bins says 32"):
        convert_spatialvla(folder, tmp_path / "out")
    folder = tmp_path / "missing_shard"
    shutil.copytree(src, folder)
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model.safetensors.index.json: weight_map names "
                                              r"model-00002-of-00002.safetensors"):
        convert_spatialvla(folder, tmp_path / "out")


def test_lora_post_finetuning_continues_from_the_converted_folder(released, bridge_debug, tmp_path):
    from vla_fixtures import tiny_config, write_statistics
    from vla_finetune.policies.interface import load_policy
    from vla_finetune.training.trainer import VLATrainer

    statistics = write_statistics(bridge_debug, tmp_path / "dataset_statistics_openvla.json")
    config = tiny_config("tiny_spatialvla", tmp_path, released["dst"], bridge_debug, statistics, max_steps=3,
                         batch_size=2)
    trainer = VLATrainer(config, log=lambda message: None)
    trainer.setup()
    policy = trainer.unwrapped
    trainable = [n for n, p in policy.named_parameters() if p.requires_grad]
    assert any("lora_" in n for n in trainable) and any("position_embedding_head" in n for n in trainable)
    assert not any("depth_model" in n for n in trainable)
    before = policy.ego3d.position_embedding_head[0].weight.detach().clone()
    summary = trainer.train()
    assert summary["step"] == 3 and all(np.isfinite(summary["losses"]))
    assert not torch.equal(before, policy.ego3d.position_embedding_head[0].weight)
    final = tmp_path / "run" / "final"
    assert not any("lora" in k for k in load_file(str(final / "model.safetensors")))
    merged = trainer.unwrapped.eval()
    loaded = load_policy(final, execution="chunk")
    assert loaded.model.config.use_ego3d and loaded.model.config.chunk_size == 4
    image = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    merged.reset(INSTRUCTION)
    loaded.reset(INSTRUCTION)
    np.testing.assert_allclose(loaded.act(image), merged.predict_chunk(image)[0], atol=1e-5)
