"""ORV pipeline end to end on CPU: tiny T5/VAE/transformer, saved to disk and loaded back."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from tiny_orv import (  # noqa: E402
    NUM_FRAMES,
    condition_maps,
    first_frame,
    frame_actions,
    tiny_pipeline,
    tiny_stock_transformer,
    tiny_text_encoder,
    tiny_tokenizer,
    tiny_vae,
)

from orv_engine.models import ORVTransformer3DModel  # noqa: E402
from orv_engine.pipelines import ORVPipeline, save_mp4  # noqa: E402

PROMPT = "put the spoon on the towel"


def gen(seed):
    return torch.Generator().manual_seed(seed)


def count_transformer_batches(pipe):
    seen = []

    def hook(module, args, kwargs):
        seen.append(kwargs["hidden_states"].shape[0])

    return seen, pipe.transformer.register_forward_pre_hook(hook, with_kwargs=True)


def test_end_to_end_save_load_outputs(tmp_path):
    pipe = tiny_pipeline("dpm")
    kw = dict(conditions=condition_maps(), prompt=PROMPT, num_inference_steps=2, action_guidance_scale=2.0)
    out = pipe(first_frame(), frame_actions(), generator=gen(0), **kw).frames
    assert out.shape == (1, NUM_FRAMES, 64, 64, 3)  # the placeholder frame is dropped
    assert out.dtype == np.float32 and 0.0 <= out.min() and out.max() <= 1.0

    pipe.save_pretrained(tmp_path / "orv-tiny")
    assert (tmp_path / "orv-tiny" / "transformer" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = ORVPipeline.from_pretrained(tmp_path / "orv-tiny")
    assert isinstance(loaded.transformer, ORVTransformer3DModel)
    again = loaded(first_frame(), frame_actions(), generator=gen(0), **kw).frames
    np.testing.assert_allclose(again, out, atol=1e-5)

    path = save_mp4(out[0], tmp_path / "video.mp4", fps=4)
    import imageio.v2 as imageio

    frames = imageio.mimread(str(path))
    assert len(frames) == NUM_FRAMES and frames[0].shape == (64, 64, 3)


def test_actions_and_conditions_change_the_video_and_pil_output():
    pipe = tiny_pipeline("ddim")
    image = first_frame()[:32, :32]
    conds = {k: v[:, :32, :32] for k, v in condition_maps().items()}
    other_conds = {k: v[:, :32, :32] for k, v in condition_maps(seed=7).items()}
    kw = dict(prompt=PROMPT, num_inference_steps=2, output_type="latent")
    ref = pipe(image, frame_actions(), conditions=conds, generator=gen(0), **kw).frames
    other_actions = pipe(image, frame_actions(seed=5), conditions=conds, generator=gen(0), **kw).frames
    other = pipe(image, frame_actions(), conditions=other_conds, generator=gen(0), **kw).frames
    assert (other_actions - ref).abs().max() > 1e-3
    assert (other - ref).abs().max() > 1e-3
    pil = pipe(image, frame_actions(), conditions=conds, generator=gen(0), num_inference_steps=1,
               output_type="pil").frames
    assert len(pil) == 1 and len(pil[0]) == NUM_FRAMES and pil[0][0].size == (32, 32)


def test_one_generator_per_sample_and_batches():
    pipe = tiny_pipeline("ddim")
    images = [first_frame(0)[:32, :32], first_frame(1)[:32, :32]]
    acts = np.stack([frame_actions(seed=0), frame_actions(seed=1)])
    kw = dict(num_inference_steps=2, output_type="latent")
    batch = pipe(images, acts, generator=[gen(10), gen(11)], **kw).frames
    single0 = pipe(images[0], acts[0], generator=gen(10), **kw).frames
    single1 = pipe(images[1], acts[1], generator=gen(11), **kw).frames
    torch.testing.assert_close(batch[0], single0[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(batch[1], single1[0], atol=1e-4, rtol=1e-4)
    assert batch.shape == (2, NUM_FRAMES // 4 + 1, 16, 4, 4)
    with pytest.raises(ValueError, match="one per sample"):
        pipe(images, acts, generator=[gen(1)], **kw)


def test_action_guidance_scale_one_is_off_and_null_token_matters():
    pipe = tiny_pipeline("dpm")
    image, acts = first_frame()[:32, :32], frame_actions()
    kw = dict(num_inference_steps=2, output_type="latent", prompt=PROMPT)
    seen, handle = count_transformer_batches(pipe)
    off = pipe(image, acts, generator=gen(3), **kw).frames
    assert set(seen) == {1}  # no extra branch at scale 1.0
    seen.clear()
    on = pipe(image, acts, generator=gen(3), action_guidance_scale=3.0, **kw).frames
    assert set(seen) == {2}
    seen.clear()
    both = pipe(image, acts, generator=gen(3), action_guidance_scale=3.0, guidance_scale=2.0, **kw).frames
    assert set(seen) == {3}
    handle.remove()
    assert (on - off).abs().max() > 1e-4 and (both - on).abs().max() > 1e-4

    fresh = tiny_pipeline("dpm", trained=False)  # zero action encoder + zero null token: no action effect
    a = fresh(image, acts, generator=gen(3), **kw).frames
    b = fresh(image, acts, generator=gen(3), action_guidance_scale=3.0, **kw).frames
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_rollout_chains_chunks_for_any_length():
    pipe = tiny_pipeline("ddim")
    total = 20
    acts = frame_actions(total, seed=3)
    conds = {k: v[:, :32, :32] for k, v in condition_maps(total).items()}
    calls = []
    original = ORVPipeline.__call__

    def spy(self, image, actions, conditions=None, **kw):
        calls.append((np.asarray(image[0] if isinstance(image, list) else image).copy(), np.asarray(actions).copy(),
                      {k: np.asarray(v).copy() for k, v in (conditions or {}).items()}))
        out = original(self, image, actions, conditions, **kw)
        calls[-1] = calls[-1] + (out.frames,)
        return out

    ORVPipeline.__call__ = spy
    try:
        video = pipe.rollout(first_frame()[:32, :32], acts, conds, chunk_frames=8, num_inference_steps=1,
                             generator=gen(0))
    finally:
        ORVPipeline.__call__ = original
    assert video.shape == (1, total, 32, 32, 3)
    starts = [0, 7, 14]
    assert len(calls) == len(starts)
    for (image, chunk_acts, chunk_conds, _), start in zip(calls, starts):
        expected = acts[start : start + 8]
        np.testing.assert_array_equal(chunk_acts[0, : len(expected)], expected)
        assert not chunk_acts[0, len(expected) :].any()  # the last chunk is padded with zeros
        assert chunk_conds["depth"].shape[1] == 8
    # each chunk after the first starts from the last frame of the previous one
    for prev, nxt in zip(calls, calls[1:]):
        np.testing.assert_allclose(nxt[0], prev[3][0, -1])
    np.testing.assert_allclose(video[0, 7], calls[0][3][0, 7])
    np.testing.assert_allclose(video[0, 8], calls[1][3][0, 1])


def test_real_checkpoint_recipe_from_a_stock_cogvideox_folder(tmp_path):
    """The GPU recipe at tiny scale: a CogVideoX text-to-video pipeline folder -> ORV."""
    from diffusers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler, CogVideoXPipeline

    tok = tiny_tokenizer()
    stock = CogVideoXPipeline(
        tokenizer=tok, text_encoder=tiny_text_encoder(len(tok)), vae=tiny_vae(),
        transformer=tiny_stock_transformer(in_channels=16), scheduler=CogVideoXDDIMScheduler(),
    )
    stock.save_pretrained(tmp_path / "CogVideoX-tiny")
    transformer = ORVTransformer3DModel.from_pretrained(
        tmp_path / "CogVideoX-tiny", subfolder="transformer", condition_kinds=["depth"]
    )
    pipe = ORVPipeline.from_pretrained(tmp_path / "CogVideoX-tiny", transformer=transformer)
    pipe.scheduler = CogVideoXDPMScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing")
    depth = np.random.default_rng(0).random((NUM_FRAMES, 32, 32), dtype=np.float32)
    out = pipe(first_frame()[:32, :32], frame_actions(), conditions={"depth": depth}, num_inference_steps=1,
               generator=gen(0), output_type="pt").frames
    assert out.shape == (1, NUM_FRAMES, 3, 32, 32) and torch.isfinite(out).all()


def test_bad_inputs_raise_clear_errors():
    pipe = tiny_pipeline("ddim")
    image = first_frame()
    with pytest.raises(ValueError, match="action_dim=7"):
        pipe(image, np.zeros((NUM_FRAMES, 6), np.float32), num_inference_steps=1)
    chunked = np.concatenate([np.zeros((4, 7), np.float32), frame_actions()])
    with pytest.raises(ValueError, match="look chunk-aligned"):
        pipe(image, chunked, num_inference_steps=1)
    with pytest.raises(ValueError, match="4k\\+1"):
        pipe(image, np.zeros((10, 7), np.float32), num_inference_steps=1)
    bad = condition_maps()
    bad["depth"] = bad["depth"][:, :32, :32]
    with pytest.raises(ValueError, match="condition 'depth' has size 32x32, the video is 64x64"):
        pipe(image, frame_actions(), conditions=bad, num_inference_steps=1)
    with pytest.raises(ValueError, match=r"missing \['semantics'\]"):
        pipe(image, frame_actions(), conditions={"depth": condition_maps()["depth"]}, num_inference_steps=1)
    short = {k: v[:5] for k, v in condition_maps().items()}
    with pytest.raises(ValueError, match="has 5 frames"):
        pipe(image, frame_actions(), conditions=short, num_inference_steps=1)
    with pytest.raises(ValueError, match="multiples of 16"):
        pipe(first_frame()[:40, :40], frame_actions(), num_inference_steps=1)
    with pytest.raises(TypeError, match="ORVTransformer3DModel"):
        ORVPipeline(pipe.tokenizer, pipe.text_encoder, pipe.vae, tiny_stock_transformer(), pipe.scheduler)


def test_real_bridge_clip_drives_the_pipeline(bridge_debug):
    """A clip cut by the data side (real Bridge episode, bridge-tiny preset) goes straight in."""
    from orv_engine.data import PRESETS, RLDSReader, cut_clips
    from orv_engine.pipelines.inputs import chunk_actions

    episode = next(iter(RLDSReader(bridge_debug)))
    clip = cut_clips(episode, PRESETS["bridge-tiny"])[0]
    r, num_latent = 4, clip.actions.shape[0] // 4
    per_frame = clip.actions[r:]  # the pipeline takes per-frame actions ...
    assert per_frame.shape == (clip.num_real_frames, 7)
    # ... and lines them up exactly as the data side stores them for training
    np.testing.assert_array_equal(chunk_actions(torch.from_numpy(per_frame)[None], num_latent, r)[0].numpy(),
                                  clip.actions)
    pipe = tiny_pipeline("dpm")
    latents = pipe(clip.first_frame, per_frame, prompt=clip.instruction, num_inference_steps=1,
                   generator=gen(0), output_type="latent").frames
    assert latents.shape == (1, num_latent, 16, 8, 8) and torch.isfinite(latents).all()
    # the transformer takes the stored chunk-aligned layout directly (training uses it so)
    out = pipe.transformer(
        hidden_states=torch.zeros(1, num_latent, 32, 8, 8),
        encoder_hidden_states=torch.zeros(1, 8, 32),
        timestep=torch.tensor([10]),
        actions=torch.from_numpy(clip.actions)[None],
    ).sample
    assert out.shape == (1, num_latent, 16, 8, 8)
