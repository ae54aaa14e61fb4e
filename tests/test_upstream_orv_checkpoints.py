"""The official ORV checkpoints: every upstream folder kind loads through our loaders and
computes what upstream's model computes (a reference written from the raw upstream weights
in tests/upstream_orv.py), the conversion CLI round-trips, bad folders fail clearly."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).parent))
from upstream_orv import load_upstream_folder, reference_forward, upstream_inputs, write_upstream_folder  # noqa: E402

from orv_engine.models import CheckpointError, ORVTransformer3DModel  # noqa: E402
from orv_engine.preprocessing import ORVPreprocessing  # noqa: E402
from orv_engine.models.transformer_orv_mv import ORVMultiViewTransformer3DModel  # noqa: E402

ATOL = 1e-5


def chunk_aligned(actions: torch.Tensor) -> torch.Tensor:
    """Upstream's per-frame actions (B, 4(L-1), 7) -> our chunk-aligned (B, 4L, 7) (4 zero rows first)."""
    return torch.cat([actions.new_zeros(actions.shape[0], 4, actions.shape[2]), actions], dim=1)


def ours(model, inputs, views: int = 1, with_conditions: bool = True):
    """Our model on the same inputs, in upstream's output layout (B, V*F, C, h, w)."""
    b, vf = inputs["hidden_states"].shape[:2]
    f = vf // views
    conditions = None
    if with_conditions and inputs.get("depths") is not None and model.condition_kinds:
        conditions = torch.cat([inputs["depth_latents"], inputs["label_latents"]], dim=2)
    kwargs = dict(encoder_hidden_states=inputs["encoder_hidden_states"], timestep=inputs["timestep"],
                  actions=chunk_aligned(inputs["actions"]))
    with torch.no_grad():
        if isinstance(model, ORVMultiViewTransformer3DModel):
            x = inputs["hidden_states"].reshape(b, views, f, *inputs["hidden_states"].shape[2:])
            c = None if conditions is None else conditions.reshape(b, views, f, *conditions.shape[2:])
            out = model(hidden_states=x, condition_latents=c, **kwargs).sample
            return out.reshape(b, vf, *out.shape[3:])
        return model(hidden_states=inputs["hidden_states"], condition_latents=conditions, **kwargs).sample


def reference(folder, inputs, with_conditions: bool = True):
    state, config = load_upstream_folder(folder)
    args = {k: v for k, v in inputs.items() if k not in ("depth_latents", "label_latents")}
    if not with_conditions:
        args.update(depths=None, labels=None)
    with torch.no_grad():
        return reference_forward(state, config, **args)


@pytest.mark.parametrize("kind", ["stage1", "stage2", "1.4b"])
def test_single_view_upstream_folders_compute_upstreams_function(tmp_path, kind, caplog):
    folder = write_upstream_folder(tmp_path / kind, kind, seed=1, recon_action=(kind == "stage1"))
    with caplog.at_level(logging.INFO, logger="orv_engine.models.loading"):
        model = ORVTransformer3DModel.from_pretrained(folder)
    line = [r.message for r in caplog.records if "converted upstream ORV checkpoint" in r.message]
    assert len(line) == 1 and "action_embed.mlp.0" in line[0]
    if kind == "stage1":
        assert "action_recon" in line[0]  # the training-only head is dropped, and said so
    _, config = load_upstream_folder(folder)
    inputs = upstream_inputs(config, batch=2, latent_frames=3, seed=2)
    torch.testing.assert_close(ours(model, inputs), reference(folder, inputs), atol=ATOL, rtol=0)
    # the preprocessing upstream trained with travels with the model
    pre = model.preprocessing
    assert (pre.action_convention, pre.condition_encoding, pre.placeholder_frame) == ("eef-frame", "orv-official", False)
    assert pre.num_frames == config["sample_frames"] and pre.height == 8 * config["sample_height"]
    assert (pre.scheduler, pre.timestep_spacing, pre.num_inference_steps, pre.guidance_scale, pre.prompt) == (
        "CogVideoXDPMScheduler", "trailing", 50, 1.0, "")
    if kind == "stage2":
        assert model.condition_kinds == ["depth", "semantics"]
        # conditions matter, and the zero-started fusion of a stage-2 model is not zero here
        torch.testing.assert_close(ours(model, inputs, with_conditions=False), reference(folder, inputs, False),
                                   atol=ATOL, rtol=0)
        assert (ours(model, inputs) - ours(model, inputs, with_conditions=False)).abs().max() > 1e-3
    if kind == "1.4b":
        assert model.config.use_rotary_positional_embeddings and not model.config.modulate_text_tokens
        # the 1.4B blocks never see the text: another prompt, the same output
        other = dict(inputs, encoder_hidden_states=torch.randn_like(inputs["encoder_hidden_states"]))
        torch.testing.assert_close(ours(model, other), ours(model, inputs), atol=0, rtol=0)


def test_sharded_upstream_folder_loads(tmp_path):
    folder = write_upstream_folder(tmp_path / "sharded", "stage2", seed=3, sharded=True)
    assert len(list(folder.glob("*.safetensors"))) == 3
    model = ORVTransformer3DModel.from_pretrained(folder)
    _, config = load_upstream_folder(folder)
    inputs = upstream_inputs(config, seed=4)
    torch.testing.assert_close(ours(model, inputs), reference(folder, inputs), atol=ATOL, rtol=0)


@pytest.mark.parametrize("views", [1, 2, 3])
def test_multiview_upstream_folder_computes_upstreams_function(tmp_path, views):
    folder = write_upstream_folder(tmp_path / "mv", "multiview", seed=5)
    with pytest.raises(CheckpointError, match="ORVMultiViewTransformer3DModel"):
        ORVTransformer3DModel.from_pretrained(folder)
    model = ORVMultiViewTransformer3DModel.from_pretrained(folder)
    assert model.config.num_views == 3
    _, config = load_upstream_folder(folder)
    inputs = upstream_inputs(config, batch=2, latent_frames=3, num_views=views, seed=6)
    torch.testing.assert_close(ours(model, inputs, views), reference(folder, inputs), atol=ATOL, rtol=0)


def test_stage1_upstream_folder_becomes_multiview_with_copied_view_modules(tmp_path):
    folder = write_upstream_folder(tmp_path / "s1", "stage1", seed=7)
    single = ORVTransformer3DModel.from_pretrained(folder)
    multi = ORVMultiViewTransformer3DModel.from_pretrained(folder, num_views=2)
    _, config = load_upstream_folder(folder)
    inputs = upstream_inputs(config, batch=1, latent_frames=3, num_views=1, seed=8)
    torch.testing.assert_close(ours(multi, inputs, 1), ours(single, inputs), atol=ATOL, rtol=0)
    assert torch.equal(multi.view_attention_blocks[0].attn1.to_q.weight, single.transformer_blocks[0].attn1.to_q.weight)


def test_orv_convert_round_trips(tmp_path):
    src = write_upstream_folder(tmp_path / "src", "multiview", seed=9, recon_action=True)
    dst = tmp_path / "dst"
    run = subprocess.run([sys.executable, "-m", "orv_engine.models.convert", "orv-official", str(src), str(dst)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "converted upstream ORV checkpoint" in run.stdout + run.stderr
    saved = json.loads((dst / "config.json").read_text())
    assert saved["_class_name"] == "ORVMultiViewTransformer3DModel"
    assert ORVPreprocessing.from_dict(saved["preprocessing"]).action_convention == "eef-frame"
    keys = set(load_file(str(dst / "diffusion_pytorch_model.safetensors")))
    assert not any(k.startswith(("action_embed.", "mv_blocks.", "action_recon.")) for k in keys)
    converted, direct = (ORVMultiViewTransformer3DModel.from_pretrained(p) for p in (dst, src))
    _, config = load_upstream_folder(src)
    inputs = upstream_inputs(config, num_views=2, seed=10)
    torch.testing.assert_close(ours(converted, inputs, 2), ours(direct, inputs, 2), atol=0, rtol=0)
    torch.testing.assert_close(ours(converted, inputs, 2), reference(src, inputs), atol=ATOL, rtol=0)
    # converting a converted folder is refused (nothing upstream left) rather than silently copied
    again = subprocess.run([sys.executable, "-m", "orv_engine.models.convert", "orv-official", str(dst),
                            str(tmp_path / "again")], capture_output=True, text=True)
    assert again.returncode == 2 and "not an official ORV folder" in again.stderr


def _break(folder: Path, edit) -> None:
    weights = folder / "diffusion_pytorch_model.safetensors"
    state = load_file(str(weights))
    edit(state)
    save_file(state, str(weights))


def test_bad_upstream_folders_raise_checkpoint_errors_naming_what(tmp_path, monkeypatch):
    import orv_engine.models.loading as loading

    def no_weights(*args, **kwargs):  # errors come from the headers, before any weight is read
        raise AssertionError("weights were read before the checkpoint was checked")

    monkeypatch.setattr(loading, "load_checkpoint", no_weights)

    def fresh(name):
        return write_upstream_folder(tmp_path / name, "stage2", seed=11)

    folder = fresh("extra")
    _break(folder, lambda s: s.update({"mystery.weight": torch.ones(2)}))
    with pytest.raises(CheckpointError, match=r"unexpected weights: mystery\.weight"):
        ORVTransformer3DModel.from_pretrained(folder)

    folder = fresh("missing")
    _break(folder, lambda s: s.pop("initial_combine_linear.weight"))
    with pytest.raises(CheckpointError, match=r"missing weights: condition_fusion\.proj\.weight"):
        ORVTransformer3DModel.from_pretrained(folder)

    folder = fresh("shape")
    _break(folder, lambda s: s.update({"action_embed.mlp.0.weight": torch.ones(3, 28)}))
    with pytest.raises(CheckpointError, match=r"mismatched shapes: action_encoder\.proj_in\.weight"):
        ORVTransformer3DModel.from_pretrained(folder)

    folder = fresh("truncated")
    weights = folder / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=r"diffusion_pytorch_model\.safetensors is truncated"):
        ORVTransformer3DModel.from_pretrained(folder)

    folder = fresh("noconfig")
    (folder / "config.json").unlink()
    with pytest.raises(CheckpointError, match="has no config.json"):
        ORVTransformer3DModel.from_pretrained(folder)

    folder = write_upstream_folder(tmp_path / "one", "stage2", seed=12, num_control_keys=1)
    with pytest.raises(CheckpointError, match=r"condition_kinds=\['depth'\]"):
        ORVTransformer3DModel.from_pretrained(folder)


def _cogvideox_folder(path: Path) -> Path:
    """A tiny CogVideoX-2B-like pipeline folder (T5, VAE, DDIM with leading spacing, stock transformer)."""
    from diffusers import CogVideoXDDIMScheduler, CogVideoXPipeline
    from tiny_orv import tiny_stock_transformer, tiny_text_encoder, tiny_tokenizer, tiny_vae

    tokenizer = tiny_tokenizer()
    scheduler = CogVideoXDDIMScheduler(timestep_spacing="leading", snr_shift_scale=1.0, rescale_betas_zero_snr=True,
                                       prediction_type="v_prediction", clip_sample=False)
    CogVideoXPipeline(tokenizer=tokenizer, text_encoder=tiny_text_encoder(len(tokenizer), d_model=32), vae=tiny_vae(),
                      transformer=tiny_stock_transformer(), scheduler=scheduler).save_pretrained(path)
    return path


def test_pipeline_takes_the_official_weights_next_to_a_cogvideox_folder(tmp_path, monkeypatch):
    """The user's recipe: CogVideoX-2B for T5/VAE/scheduler, the official transformer folder.
    The checkpoint's conventions apply: its scheduler, its 50 steps, its empty prompt, its
    condition encoding (sampled posteriors of [0, 1] images), 4k frames."""
    from diffusers import CogVideoXDPMScheduler
    from tiny_orv import first_frame

    from orv_engine.occupancy.condition_images import encoded_condition_images
    from orv_engine.pipelines import ORVPipeline

    base = _cogvideox_folder(tmp_path / "CogVideoX-2b")
    official = write_upstream_folder(tmp_path / "orv-gen-model" / "transformer", "stage2", seed=13)
    with pytest.raises(TypeError, match="ORVTransformer3DModel"):
        ORVPipeline.from_pretrained(base)  # the stock transformer is not an ORV model
    pipe = ORVPipeline.from_pretrained(base, transformer=str(official))
    assert isinstance(pipe.scheduler, CogVideoXDPMScheduler) and pipe.scheduler.config.timestep_spacing == "trailing"
    pipe.set_progress_bar_config(disable=True)

    calls = []
    forward = pipe.transformer.forward
    monkeypatch.setattr(pipe.transformer, "forward", lambda *a, **k: calls.append(k) or forward(*a, **k))
    rng = np.random.default_rng(0)
    maps = {"depth": rng.uniform(0.0, 0.6, (12, 64, 64)).astype(np.float32),
            "semantics": rng.integers(-1, 50, (12, 64, 64))}
    images = encoded_condition_images(maps, ["depth", "semantics"], pipe.transformer.preprocessing.condition_encoding)
    actions = rng.normal(0, 1, (12, 7)).astype(np.float32)  # 12 = 4k: 4 latent frames (an even count)
    out = pipe(first_frame(0), actions, images, generator=torch.Generator().manual_seed(0)).frames
    assert out.shape == (1, 12, 64, 64, 3) and np.isfinite(out).all()
    assert len(calls) == 50  # the checkpoint's number of steps
    assert calls[0]["condition_latents"].shape == (1, 4, 32, 8, 8)
    # sampled condition posteriors: another generator seed, other condition latents
    calls.clear()
    pipe(first_frame(0), actions, images, num_inference_steps=1, generator=torch.Generator().manual_seed(1))
    other = calls[0]["condition_latents"]
    calls.clear()
    pipe(first_frame(0), actions, images, num_inference_steps=1, generator=torch.Generator().manual_seed(2))
    assert not torch.equal(other, calls[0]["condition_latents"])


def test_decoding_an_even_number_of_latent_frames_gives_4k_plus_1_frames():
    from tiny_orv import tiny_pipeline

    pipe = tiny_pipeline()
    for latent_frames in (3, 4, 8):
        video = pipe.decode_latents(torch.randn(1, latent_frames, 16, 8, 8))
        assert video.shape[2] == 4 * (latent_frames - 1) + 1


def test_orv_eval_runs_the_official_weights_in_their_action_convention(tmp_path, tiny_bridge, capsys):
    from benchmarks.metrics.generation_eval import frame_actions, held_out_clips, main

    from orv_engine.data.action_conventions import eef_frame_actions
    from orv_engine.preprocessing import upstream_preprocessing

    base = _cogvideox_folder(tmp_path / "CogVideoX-2b")
    official = write_upstream_folder(tmp_path / "official", "stage1", seed=14)
    clip = next(held_out_clips(tiny_bridge, "bridge-tiny", max_clips=1, preprocessing=upstream_preprocessing(8, 8, 9)))
    with_next = np.concatenate([clip.states, clip.states[-1:]])  # the last action of the episode's end: no motion
    assert np.allclose(frame_actions(clip)[:-1], eef_frame_actions(with_next)[:-1], atol=1e-6)
    assert not np.allclose(frame_actions(clip), next(held_out_clips(tiny_bridge, "bridge-tiny", max_clips=1)).actions[4:])
    out = tmp_path / "run"
    code = main([str(base), str(tiny_bridge), "--transformer", str(official), "--preset", "bridge-tiny", "--max-clips",
                 "1", "--steps", "2", "--device", "cpu", "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    generation = json.loads((out / "metrics" / "generation.json").read_text())
    assert generation["transformer"] == str(official) and generation["clips"] == 1


def test_orv_augment_rolls_out_with_the_official_weights(tmp_path):
    """``rollout.model`` a CogVideoX-2B folder, ``rollout.transformer`` the official stage-2
    folder: the loop reads its condition kinds from upstream's config, rolls out with the
    eef-frame actions and the official condition encoding, and records both models."""
    import augment  # noqa: F401  (import order)
    from augment.config import config_from_dict
    from augment.demo import write_demo_models
    from augment.runner import AugmentRun
    from test_augment_loop import rollout_frames, small_config

    models = write_demo_models(tmp_path / "models")
    base = _cogvideox_folder(tmp_path / "CogVideoX-2b")
    official = write_upstream_folder(tmp_path / "official", "stage2", seed=15)
    values = small_config(models, max_episodes=1)
    values["rollout"].update(model=str(base), transformer=str(official))
    values["first_frames"]["variants_per_episode"] = 1
    run_dir = tmp_path / "run"
    summary = AugmentRun(config_from_dict(values), run_dir, progress=False).run()
    frames = rollout_frames(run_dir)
    assert summary["units"] == {"scored": 1} and len(frames) == 1
    (unit,) = frames
    assert frames[unit].shape == (8, 64, 64, 3)
    record = json.loads((run_dir / "rollouts" / unit / "rollout.json").read_text())
    assert str(official) in json.dumps(record["models"])


def test_official_stage1_gains_a_zero_fusion_and_starts_stage2_at_its_function(tmp_path):
    folder = write_upstream_folder(tmp_path / "s1", "stage1", seed=16)
    stage2 = ORVTransformer3DModel.from_pretrained(folder, condition_kinds=["depth", "semantics"])
    assert not stage2.condition_fusion.proj.weight.any()
    _, config = load_upstream_folder(folder)
    inputs = upstream_inputs(config, seed=17)
    conditions = torch.cat([inputs["depth_latents"], inputs["label_latents"]], dim=2)
    with torch.no_grad():
        out = stage2(inputs["hidden_states"], inputs["encoder_hidden_states"], inputs["timestep"],
                     actions=chunk_aligned(inputs["actions"]), condition_latents=conditions).sample
    torch.testing.assert_close(out, reference(folder, inputs, with_conditions=False), atol=ATOL, rtol=0)
    with pytest.raises(CheckpointError, match="fuses 2 conditions"):
        ORVTransformer3DModel.from_pretrained(write_upstream_folder(tmp_path / "s2", "stage2", seed=18),
                                              condition_kinds=["depth"])
