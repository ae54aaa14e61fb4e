"""The training objective and the stage-1 -> stage-2 hand-over, on tiny random models."""

from __future__ import annotations

import torch

from orv_engine.training.components import load_transformer
from orv_engine.training.losses import LossInputs, diffusion_loss, noisy_first_frames
from orv_engine.testing.tiny_orv import build_tiny_components
from orv_engine.models import ORVTransformer3DModel, transformer_config


def _inputs(batch=6, seed=0, kinds=0):
    g = torch.Generator().manual_seed(seed)
    return LossInputs(
        video_latents=torch.randn(batch, 3, 16, 8, 8, generator=g),
        image_latents=torch.randn(batch, 1, 16, 8, 8, generator=g),
        actions=torch.randn(batch, 12, 7, generator=g),
        prompt_embeds=torch.randn(batch, 8, 32, generator=g),
        condition_latents=torch.randn(batch, 3, 16 * kinds, 8, 8, generator=g) if kinds else None,
    )


class Recorder(torch.nn.Module):
    """Returns a fixed v-prediction and records what the transformer was given."""

    def __init__(self, v):
        super().__init__()
        self.v, self.calls = v, []

    def forward(self, **kwargs):
        self.calls.append(kwargs)
        return (self.v,)


def test_loss_is_the_v_prediction_mse_through_the_scheduler():
    scheduler = build_tiny_components()[3]
    inputs = _inputs()
    v = torch.randn_like(inputs.video_latents)
    model = Recorder(v)
    loss, drawn = diffusion_loss(model, scheduler, inputs, torch.Generator().manual_seed(3),
                                 image_dropout=0.0, null_action_prob=0.0)
    # replay the draws: the weighted x0 loss with w = 1/(1 - a_t) equals the MSE of v
    g = torch.Generator().manual_seed(3)
    t = torch.randint(0, 1000, (6,), generator=g)
    noise = torch.randn(inputs.video_latents.shape, generator=g)
    assert torch.equal(t, drawn["timesteps"])
    a = scheduler.alphas_cumprod[t].float().view(-1, 1, 1, 1, 1)
    v_true = a.sqrt() * noise - (1 - a).sqrt() * inputs.video_latents
    torch.testing.assert_close(loss, ((v - v_true) ** 2).mean(), rtol=1e-4, atol=1e-6)
    # the model saw [x_t, first-frame latents zero-padded to every latent frame]
    call = model.calls[0]
    x_t = scheduler.add_noise(inputs.video_latents, noise, t)
    torch.testing.assert_close(call["hidden_states"][:, :, :16], x_t)
    torch.testing.assert_close(call["hidden_states"][:, :1, 16:], inputs.image_latents)
    assert not call["hidden_states"][:, 1:, 16:].any()
    assert not call["null_action_mask"].any()


def test_null_actions_and_image_dropout_are_drawn_per_sample():
    scheduler = build_tiny_components()[3]
    inputs = _inputs(batch=400)
    model = Recorder(torch.zeros_like(inputs.video_latents))
    _, drawn = diffusion_loss(model, scheduler, inputs, torch.Generator().manual_seed(0),
                              image_dropout=0.05, null_action_prob=0.1)
    assert 0.06 < drawn["null_action"].float().mean() < 0.14
    assert 0.02 < drawn["drop_image"].float().mean() < 0.09
    image = model.calls[0]["hidden_states"][:, 0, 16:]
    assert (image.flatten(1).abs().sum(1) == 0).tolist() == drawn["drop_image"].tolist()
    assert torch.equal(model.calls[0]["null_action_mask"], drawn["null_action"])


def test_a_real_transformer_step_is_a_function_of_the_generator_seed():
    scheduler = build_tiny_components()[3]
    torch.manual_seed(0)
    model = ORVTransformer3DModel.from_config(transformer_config("tiny", condition_kinds=["depth", "semantics"]))
    inputs = _inputs(kinds=2)
    a = diffusion_loss(model, scheduler, inputs, torch.Generator().manual_seed(5))[0]
    b = diffusion_loss(model, scheduler, inputs, torch.Generator().manual_seed(5))[0]
    c = diffusion_loss(model, scheduler, inputs, torch.Generator().manual_seed(6))[0]
    assert a.item() == b.item() != c.item()
    a.backward()
    assert model.action_encoder.proj_out.weight.grad.abs().sum() > 0  # actions reach the loss
    assert model.condition_fusion.proj.weight.grad.abs().sum() > 0  # so do the conditions


def test_first_frame_noise_has_the_cogvideox_scale():
    frames = torch.zeros(2000, 3, 4, 4)
    noisy = noisy_first_frames(frames, torch.Generator().manual_seed(0))
    sigma = noisy.flatten(1).std(1)
    assert abs(sigma.log().mean().item() - (-3.0)) < 0.05 and abs(sigma.log().std().item() - 0.5) < 0.05


def test_stage2_starts_from_stage1_with_a_zero_fusion(tmp_path):
    stage1 = load_transformer(_save_stock(tmp_path), [])  # CogVideoX -> ORV conversion
    assert stage1.condition_fusion is None
    with torch.no_grad():
        for p in stage1.action_encoder.parameters():
            p.add_(0.1)  # as if trained
    stage1.save_pretrained(tmp_path / "stage1")
    stage2 = load_transformer(tmp_path / "stage1", ["depth", "semantics"])
    assert stage2.condition_kinds == ["depth", "semantics"]
    inputs = _inputs(batch=2, kinds=2)
    x = torch.cat([inputs.video_latents, inputs.video_latents], dim=2)
    t = torch.tensor([10, 900])
    with torch.no_grad():
        out1 = stage1(x, inputs.prompt_embeds, t, actions=inputs.actions, return_dict=False)[0]
        out2 = stage2(x, inputs.prompt_embeds, t, actions=inputs.actions,
                      condition_latents=inputs.condition_latents, return_dict=False)[0]
    torch.testing.assert_close(out1, out2)  # the new module starts at zero


def _save_stock(tmp_path):
    transformer = build_tiny_components()[4]
    transformer.save_pretrained(tmp_path / "stock")
    return tmp_path / "stock"


def test_gradient_checkpointing_gives_the_same_loss_and_gradients():
    scheduler = build_tiny_components()[3]
    torch.manual_seed(0)
    model = ORVTransformer3DModel.from_config(transformer_config("tiny", condition_kinds=[])).train()
    inputs = _inputs()
    grads = []
    for checkpointing in (False, True):
        if checkpointing:
            model.enable_gradient_checkpointing()
        model.zero_grad()
        loss = diffusion_loss(model, scheduler, inputs, torch.Generator().manual_seed(1))[0]
        loss.backward()
        grads.append((loss.item(), model.transformer_blocks[0].attn1.to_q.weight.grad.clone()))
    assert model.gradient_checkpointing
    assert grads[0][0] == grads[1][0]
    torch.testing.assert_close(grads[0][1], grads[1][1])
