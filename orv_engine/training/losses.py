"""The training objective: CogVideoX image-to-video fine-tuning, with ORV's actions.

What one step computes (the recipe of diffusers' CogVideoX I2V fine-tuning scripts):

1. the first frame gets pixel noise ``sigma = exp(N(-3, 0.5))`` before the VAE encodes it
   (:func:`noisy_first_frames`; the VAE call itself is in :mod:`.latents`);
2. with probability ``image_dropout`` a sample's first-frame latents are zeroed, so the
   model also learns to continue without them;
3. a timestep ``t ~ U{0..T-1}`` per sample, ``x_t = scheduler.add_noise(x_0, eps, t)``;
4. the transformer sees ``[x_t, first-frame latents padded with zeros]`` (32 channels),
   the chunk-aligned actions (with probability ``null_action_prob`` the null-action token
   instead: what makes action guidance possible) and the condition latents;
5. its v-prediction goes back through the scheduler (``get_velocity(v, x_t, t)`` =
   ``sqrt(a_t) x_t - sqrt(1 - a_t) v``, the predicted ``x_0``) and the loss is
   ``mean(w_t (x0_hat - x_0)^2)`` with ``w_t = 1 / (1 - a_t)``; that is exactly the MSE of
   the v-prediction, the weighting CogVideoX was trained with.

Multi-view samples (ORV-MV) go through the same function with a views axis: one timestep,
one action sequence and one null-action draw per sample, shared by its views; noise and
first-frame dropout per view.

Every random draw comes from the ``generator`` passed in, so a step is a pure function of
(weights, batch, generator seed): the trainer seeds it from (seed, step, rank) and a resumed
run replays the same noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class LossInputs:
    """One batch; ORV-MV's has a views axis ``V`` after the batch in the per-view fields."""

    video_latents: torch.Tensor  # (B, [V,] L, C, h, w) scaled VAE latents of the clip (x_0)
    image_latents: torch.Tensor  # (B, [V,] 1, C, h, w) scaled latents of the noise-augmented first frame
    actions: torch.Tensor  # (B, r*L, 7) chunk-aligned, shared by a sample's views
    prompt_embeds: torch.Tensor | None  # (B, S, D) T5 embeddings
    condition_latents: torch.Tensor | None = None  # (B, [V,] L, k*C, h, w) or None
    view_ids: torch.Tensor | None = None  # (B, V) view positions (ORV-MV only)


def _rand(shape, generator: torch.Generator, device) -> torch.Tensor:
    return torch.rand(shape, generator=generator).to(device)


def _randn(shape, generator: torch.Generator, device, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(shape, generator=generator).to(device=device, dtype=dtype)


def noisy_first_frames(frames: torch.Tensor, generator: torch.Generator, mean: float = -3.0, std: float = 0.5) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> the same plus Gaussian noise of a per-sample ``exp(N(mean, std))`` sigma."""
    b = frames.shape[0]
    sigma = torch.exp(mean + std * torch.randn(b, generator=generator)).to(frames.device, frames.dtype)
    noise = _randn(frames.shape, generator, frames.device, frames.dtype)
    return frames + sigma.view(b, 1, 1, 1) * noise


def diffusion_loss(
    transformer,
    scheduler,
    inputs: LossInputs,
    generator: torch.Generator,
    *,
    image_dropout: float = 0.05,
    null_action_prob: float = 0.1,
) -> tuple[torch.Tensor, dict]:
    """The weighted v-prediction loss of one batch and what was drawn (for logging/tests)."""
    x0 = inputs.video_latents
    views = x0.ndim == 6
    b = x0.shape[0]
    lead = tuple(x0.shape[:-4])  # (B,) or (B, V)
    num_latent_frames = x0.shape[-4]
    device, dtype = x0.device, x0.dtype

    # Draws, in a fixed order, all from ``generator`` (on CPU, moved to the device).
    t = torch.randint(0, scheduler.config.num_train_timesteps, (b,), generator=generator).to(device)
    noise = _randn(x0.shape, generator, device, dtype)
    drop_image = _rand(lead, generator, device) < image_dropout
    null_action = _rand((b,), generator, device) < null_action_prob

    image = inputs.image_latents.to(dtype) * (~drop_image).to(dtype).view(*lead, 1, 1, 1, 1)
    padding = image.new_zeros(*lead, num_latent_frames - 1, *image.shape[-3:])
    image = torch.cat([image, padding], dim=-4)

    # Per video (B*V of them): the shared timestep repeated over a sample's views.
    t_video = t.repeat_interleave(x0.shape[1]) if views else t
    flat_x0, flat_noise = x0.reshape(-1, *x0.shape[-4:]), noise.reshape(-1, *x0.shape[-4:])
    noisy = scheduler.add_noise(flat_x0, flat_noise, t_video).reshape(x0.shape)
    extra = {"view_ids": inputs.view_ids} if views else {}
    v_pred = transformer(
        hidden_states=torch.cat([noisy, image], dim=-3),
        encoder_hidden_states=inputs.prompt_embeds,
        timestep=t,
        actions=inputs.actions,
        condition_latents=inputs.condition_latents,
        null_action_mask=null_action,
        return_dict=False,
        **extra,
    )[0]
    x0_pred = scheduler.get_velocity(v_pred.reshape(flat_x0.shape).float(), noisy.reshape(flat_x0.shape).float(),
                                     t_video)
    alphas_cumprod = scheduler.alphas_cumprod.to(device)[t_video].float()
    weights = (1.0 / (1.0 - alphas_cumprod)).view(-1, 1, 1, 1, 1)
    per_video = (weights * (x0_pred - flat_x0.float()) ** 2).reshape(flat_x0.shape[0], -1).mean(dim=1)
    return per_video.mean(), {"timesteps": t, "null_action": null_action, "drop_image": drop_image}
