"""Test twin of the official ORV transformer (GitHub OrangeSodahub/ORV, ``orv/models``).

Nothing here imports the project's own package.  Only ``upstream_key_shapes`` builds a (stock)
diffusers model, to read the stock key shapes; ``reference_forward`` uses no diffusers module, just
the pure table helpers (timestep / sin-cos / RoPE embeddings, ``apply_rotary_emb``):

* ``UPSTREAM_TINY_BASE`` / ``upstream_config`` -- tiny configs in upstream's ``config.json`` format,
* ``upstream_state_dict`` / ``write_upstream_folder`` -- random checkpoints with exactly the keys and
  shapes upstream's ``CogVideoXTransformer3DModelTraj`` has (single file or 3 shards + index),
* ``load_upstream_folder`` -- read such a folder back as ``(state_dict, config)``,
* ``reference_forward`` -- upstream's eval-mode forward rewritten with plain torch ops on the raw
  tensors (no random action masking),
* ``upstream_inputs`` -- random inputs in upstream's layout.

Line references ("cc.py:N") are to ``orv/models/cogvideox_control.py`` and ("comp.py:N") to
``orv/models/components.py`` at the mirrored HEAD (83dc9dd); "utils.py:N" to ``orv/utils.py``.

Conventions of upstream a converter has to respect (all mirrored below):

* the action MLP is ``action_embed.mlp.0`` / ``action_embed.mlp.3`` (GELU at index 1, dropout at 2),
  its input is 4 consecutive 7-D actions (28 features); actions are padded with zeros IN FRONT until
  ``(n + 1) % 4 == 0`` and then one more zero row is prepended (cc.py:805-812, comp.py:53-59);
* the action embedding is added to ``temb`` per latent frame inside every AdaLN (norm1/norm2 of
  each block and norm_out), never to the text modulation; with ``modulate_encoder_hidden_states``
  the image half is the FIRST ``3*dim`` rows of ``norm.linear`` (cc.py:101-145);
* ``modulate_encoder_hidden_states=False`` (1.4B models): ``norm{1,2}.linear`` has ``3*dim`` rows,
  the attention never sees the text and the FF runs on image tokens only, i.e. the prompt has no
  effect on the output at all (cc.py:55-99, 404-438);
* depth/label conditions go through the SAME ``patch_embed`` as the video (with its sin-cos
  positional embedding), their text part is discarded, and
  ``hidden + initial_combine_linear(hidden.repeat(1, 1, k) + cat(conds))`` (cc.py:827-858);
* multiview: a sin-cos "view" embedding computed at the config's sample size is added once,
  an ``MVBlock`` (AdaLN from temb only, attention across views, ``proj_out``, gate) runs before
  EVERY transformer block -- even with ``num_views == 1`` -- and ``cam_encoder`` is never used in
  the forward (cc.py:273-348, 796-800, 861-888);
* ``ActionEmbed`` is built with ``mask=self.training`` evaluated in ``__init__`` (always True), so
  upstream randomly (p=0.1 per sample) swaps the action embedding for ``mask_embed`` even in eval
  mode; ``reference_forward`` never does (deterministic, "intended" behaviour).
"""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import torch

__all__ = [
    "UPSTREAM_TINY_BASE",
    "UPSTREAM_KINDS",
    "upstream_config",
    "stock_part",
    "upstream_key_shapes",
    "upstream_state_dict",
    "write_upstream_folder",
    "load_upstream_folder",
    "upstream_rotary_emb",
    "reference_forward",
    "upstream_inputs",
]

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
WEIGHTS_INDEX_NAME = "diffusion_pytorch_model.safetensors.index.json"

# Every ``__init__`` argument of ``CogVideoXTransformer3DModelTraj`` (cc.py:452-494), tiny values,
# plus the two hidden keys diffusers' ``save_pretrained`` writes.  Upstream's own ``save_pretrained``
# (cc.py:1056-1087) rewrites config.json as ``dict(self.config)`` minus ``_name_or_path`` /
# ``_use_default_values`` with ``_class_name`` forced to "CogVideoXTransformer3DModelTraj".
UPSTREAM_TINY_BASE: Dict[str, Any] = {
    "_class_name": "CogVideoXTransformer3DModelTraj",
    "_diffusers_version": "0.32.1",
    # --- the stock CogVideoXTransformer3DModel arguments ---
    "num_attention_heads": 2,
    "attention_head_dim": 8,
    "in_channels": 32,
    "out_channels": 16,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "time_embed_dim": 16,
    "ofs_embed_dim": None,
    "text_embed_dim": 32,
    "num_layers": 2,
    "dropout": 0.0,
    "attention_bias": True,
    "sample_width": 8,
    "sample_height": 8,
    "sample_frames": 9,
    "patch_size": 2,
    "patch_size_t": None,
    "temporal_compression_ratio": 4,
    "max_text_seq_length": 8,
    "activation_fn": "gelu-approximate",
    "timestep_activation_fn": "silu",
    "norm_elementwise_affine": True,
    "norm_eps": 1e-5,
    "spatial_interpolation_scale": 1.875,
    "temporal_interpolation_scale": 1.0,
    "use_rotary_positional_embeddings": False,
    "use_learned_positional_embeddings": False,
    "patch_bias": True,
    # --- upstream's additional arguments (defaults of config/base_train.yaml) ---
    "loaded_pretrained_model_name_or_path": None,
    "modulate_encoder_hidden_states": True,
    "num_control_blocks": 12,
    "recon_action": False,
    "visual_guidance": False,
    "num_control_keys": 2,
    "multiview": False,
    "max_n_view": 3,
    "from_t2v": False,
}

_UPSTREAM_EXTRA_KEYS = (
    "loaded_pretrained_model_name_or_path", "modulate_encoder_hidden_states", "num_control_blocks",
    "recon_action", "visual_guidance", "num_control_keys", "multiview", "max_n_view", "from_t2v",
)

# Per-kind settings on top of UPSTREAM_TINY_BASE.
UPSTREAM_KINDS: Dict[str, Dict[str, Any]] = {
    # stage 1: CogVideoX-2B fine-tuned with actions only (config/traj_image_2b_finetune.yaml); the
    # from_pretrained path for "THUDM*CogVideoX*-2b*" sets in_channels=32 and from_t2v=True (cc.py:1014-1028).
    "stage1": dict(
        visual_guidance=False, multiview=False, modulate_encoder_hidden_states=True,
        loaded_pretrained_model_name_or_path="THUDM/CogVideoX-2b", from_t2v=True,
    ),
    # stage 2: + depth & label conditions (config/traj_image_condfull_2b_finetune.yaml).
    # NB upstream raises ValueError when num_control_blocks > num_layers (cc.py:590-592), so the tiny
    # 2-layer model must use num_control_blocks <= 2 (the value itself is otherwise unused).
    "stage2": dict(
        visual_guidance=True, num_control_keys=2, multiview=False, modulate_encoder_hidden_states=True,
        loaded_pretrained_model_name_or_path=None, from_t2v=True, num_control_blocks=2,
    ),
    # multiview: stage 2 + MV blocks (config/traj_image_condfull_2b_multiview.yaml).
    "multiview": dict(
        visual_guidance=True, num_control_keys=2, multiview=True, max_n_view=3,
        modulate_encoder_hidden_states=True, loaded_pretrained_model_name_or_path=None, from_t2v=True,
        num_control_blocks=2,
    ),
    # 1.4B from scratch (config/traj_image_1.4b_scratch.yaml + config/transformer/base_1.4b_480_320_rope.json):
    # no text modulation, RoPE instead of sin-cos.  attention_head_dim 16: diffusers' 3-D RoPE splits
    # the head dim into t/h/w parts of d/4, 3d/8, 3d/8 which must all be even (8 would give 3).
    "1.4b": dict(
        visual_guidance=False, multiview=False, modulate_encoder_hidden_states=False,
        use_rotary_positional_embeddings=True, loaded_pretrained_model_name_or_path=None, from_t2v=False,
        attention_head_dim=16,
    ),
}


def upstream_config(kind: str = "stage1", recon_action: bool = False, **overrides) -> Dict[str, Any]:
    """Full upstream config dict (as in config.json) for one of ``UPSTREAM_KINDS``."""
    if kind not in UPSTREAM_KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose from {sorted(UPSTREAM_KINDS)}")
    config = dict(UPSTREAM_TINY_BASE)
    config.update(UPSTREAM_KINDS[kind])
    config["recon_action"] = bool(recon_action)
    unknown = set(overrides) - set(UPSTREAM_TINY_BASE)
    if unknown:
        raise TypeError(f"unknown config keys: {sorted(unknown)}")
    config.update(overrides)
    if config["visual_guidance"] and config["num_control_blocks"] > config["num_layers"]:
        # upstream cc.py:590-592 refuses to build such a model
        raise ValueError("upstream requires num_control_blocks <= num_layers when visual_guidance=True")
    return config


def stock_part(config: Mapping[str, Any]) -> Dict[str, Any]:
    """The arguments of diffusers' stock ``CogVideoXTransformer3DModel.__init__`` found in ``config``."""
    from diffusers import CogVideoXTransformer3DModel

    params = inspect.signature(CogVideoXTransformer3DModel.__init__).parameters
    return {k: v for k, v in config.items() if k in params and k != "self"}


# ----------------------------------------------------------------------------------------------
# keys and shapes
# ----------------------------------------------------------------------------------------------


def upstream_key_shapes(config: Mapping[str, Any]) -> Dict[str, Tuple[int, ...]]:
    """name -> shape of every tensor in upstream's state dict for ``config`` (module order)."""
    from diffusers import CogVideoXTransformer3DModel

    # Stock keys from a real (tiny) stock model: patch_embed, time_embedding, transformer_blocks,
    # norm_final, norm_out, proj_out.  Upstream re-creates patch_embed / blocks / norm_out with the
    # same names (cc.py:531-578); the sin-cos ``pos_embedding`` buffer is non-persistent.
    torch_state = torch.random.get_rng_state()
    try:
        stock = CogVideoXTransformer3DModel(**stock_part(config))
    finally:
        torch.random.set_rng_state(torch_state)
    shapes = {k: tuple(v.shape) for k, v in stock.state_dict().items()}
    del stock

    dim = config["num_attention_heads"] * config["attention_head_dim"]
    ted = config["time_embed_dim"]
    modulate = bool(config["modulate_encoder_hidden_states"])

    # CogVideoXLayerNormZero without text modulation: Linear(ted, 3*dim) replaces the 6*dim one (cc.py:55-58).
    if not modulate:
        for i in range(config["num_layers"]):
            for norm in ("norm1", "norm2"):
                shapes[f"transformer_blocks.{i}.{norm}.linear.weight"] = (3 * dim, ted)
                shapes[f"transformer_blocks.{i}.{norm}.linear.bias"] = (3 * dim,)

    # ActionEmbed(state_dim=7, hidden_size=ted, compress_ratio=4, patch_size_t) (cc.py:580-582, comp.py:22-45)
    p_t = config["patch_size_t"] or 1
    shapes["action_embed.mlp.0.weight"] = (4 * ted, 7 * 4 * p_t)
    shapes["action_embed.mlp.0.bias"] = (4 * ted,)
    shapes["action_embed.mlp.3.weight"] = (ted, 4 * ted)
    shapes["action_embed.mlp.3.bias"] = (ted,)
    shapes["action_embed.mask_embed.weight"] = (1, ted)

    # ActionRecon(state_dim=7, hidden_size=ted, compress_ratio=4) (cc.py:583-585, comp.py:74-90)
    if config["recon_action"]:
        shapes["action_recon.mlp.0.weight"] = (4 * ted, ted)
        shapes["action_recon.mlp.0.bias"] = (4 * ted,)
        shapes["action_recon.mlp.2.weight"] = (7 * 4, 4 * ted)
        shapes["action_recon.mlp.2.bias"] = (7 * 4,)

    # initial_combine_linear = Linear(dim * num_control_keys, dim) (cc.py:587-597)
    if config["visual_guidance"]:
        shapes["initial_combine_linear.weight"] = (dim, dim * config["num_control_keys"])
        shapes["initial_combine_linear.bias"] = (dim,)

    # MVBlock: norm1 + attn1 defined exactly like the (upstream) transformer block's, then
    # cam_encoder = Linear(12, dim) and proj_out = Linear(dim, dim) (cc.py:275-311, 599-620)
    if config["multiview"]:
        for i in range(config["num_layers"]):
            src = f"transformer_blocks.{i}."
            for name, shape in list(shapes.items()):
                if name.startswith(src + "norm1.") or name.startswith(src + "attn1."):
                    shapes[f"mv_blocks.{i}." + name[len(src):]] = shape
            shapes[f"mv_blocks.{i}.cam_encoder.weight"] = (dim, 12)
            shapes[f"mv_blocks.{i}.cam_encoder.bias"] = (dim,)
            shapes[f"mv_blocks.{i}.proj_out.weight"] = (dim, dim)
            shapes[f"mv_blocks.{i}.proj_out.bias"] = (dim,)
    return shapes


_LAYERNORM_WEIGHT_SUFFIXES = ("norm.weight", "norm_q.weight", "norm_k.weight", "norm_final.weight")


def upstream_state_dict(config: Mapping[str, Any], seed: int = 0, scale: float = 0.2) -> Dict[str, torch.Tensor]:
    """Random float32 state dict with upstream's keys/shapes; every entry non-zero.

    LayerNorm weights are ``1 + 0.1 * N(0, 1)``, everything else ``scale * N(0, 1)`` -- including the
    tensors upstream zero-initialises (initial_combine_linear, mv proj_out / cam_encoder, the second
    half of patch_embed.proj for from_t2v), so a forward that skips a module cannot pass a comparison.
    """
    gen = torch.Generator().manual_seed(seed)
    out: Dict[str, torch.Tensor] = {}
    for name, shape in upstream_key_shapes(config).items():
        noise = torch.randn(shape, generator=gen, dtype=torch.float32)
        if name.endswith(_LAYERNORM_WEIGHT_SUFFIXES):
            out[name] = 1.0 + 0.1 * noise
        else:
            out[name] = scale * noise
    return out


# ----------------------------------------------------------------------------------------------
# folders
# ----------------------------------------------------------------------------------------------


def write_upstream_folder(
    path,
    kind: str,
    seed: int = 0,
    sharded: bool = False,
    recon_action: bool = False,
    **config_overrides,
) -> Path:
    """Write a tiny upstream checkpoint folder (config.json + safetensors) and return its path.

    ``sharded=True`` splits the keys (in module order) over
    ``diffusion_pytorch_model-0000{1,2,3}-of-00003.safetensors`` with
    ``diffusion_pytorch_model.safetensors.index.json`` = {"metadata": {"total_size"}, "weight_map"}.
    """
    from safetensors.torch import save_file

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    config = upstream_config(kind, recon_action=recon_action, **config_overrides)
    state = upstream_state_dict(config, seed=seed)

    if not sharded:
        save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
    else:
        names = list(state)
        n_shards = 3
        bounds = [round(i * len(names) / n_shards) for i in range(n_shards + 1)]
        weight_map: Dict[str, str] = {}
        for s in range(n_shards):
            fname = f"diffusion_pytorch_model-{s + 1:05d}-of-{n_shards:05d}.safetensors"
            part = {k: state[k] for k in names[bounds[s]:bounds[s + 1]]}
            save_file(part, str(folder / fname), metadata={"format": "pt"})
            weight_map.update({k: fname for k in part})
        total = sum(t.numel() * t.element_size() for t in state.values())
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (folder / WEIGHTS_INDEX_NAME).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")

    # upstream's save_pretrained writes json.dump(config_dict, f, indent=2) (cc.py:1077-1087)
    with open(folder / "config.json", "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
    return folder


def load_upstream_folder(path) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """Read a folder written by ``write_upstream_folder`` (or upstream) -> (state_dict, config)."""
    from safetensors.torch import load_file

    folder = Path(path)
    config = json.loads((folder / "config.json").read_text())
    if (folder / WEIGHTS_NAME).is_file():
        return load_file(str(folder / WEIGHTS_NAME)), config
    index = json.loads((folder / WEIGHTS_INDEX_NAME).read_text())
    state: Dict[str, torch.Tensor] = {}
    for fname in sorted(set(index["weight_map"].values())):
        state.update(load_file(str(folder / fname)))
    return state, config


# ----------------------------------------------------------------------------------------------
# RoPE table
# ----------------------------------------------------------------------------------------------


def _resize_crop_region_for_grid(src, tgt_width, tgt_height):
    # same arithmetic as utils.py:177-193 (itself diffusers' get_resize_crop_region_for_grid)
    h, w = src
    if h / w > tgt_height / tgt_width:
        rh, rw = tgt_height, int(round(tgt_height / h * w))
    else:
        rw, rh = tgt_width, int(round(tgt_width / w * h))
    top = int(round((tgt_height - rh) / 2.0))
    left = int(round((tgt_width - rw) / 2.0))
    return (top, left), (top + rh, left + rw)


def upstream_rotary_emb(
    config: Mapping[str, Any],
    latent_height: int,
    latent_width: int,
    num_frames: int,
    base: str = "train",
) -> Tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) RoPE table for ``num_frames`` latent frames of ``latent_height x latent_width``.

    ``base="train"`` mirrors ``orv/utils.py::prepare_rotary_positional_embeddings`` as the training
    script calls it (utils.py:196-239, default base 480x720 pixels -> base grid 30x45 patches).
    ``base="pipeline"`` mirrors diffusers' ``CogVideoXImageToVideoPipeline._prepare_rotary_positional_embeddings``
    that upstream's inference pipeline inherits (base grid = config sample size // patch_size).
    The two differ whenever the sample size is not 60x90 latents (e.g. the 1.4B 40x60 models).
    """
    from diffusers.models.embeddings import get_3d_rotary_pos_embed

    if config["patch_size_t"] is not None:
        raise NotImplementedError("patch_size_t (CogVideoX 1.5) is not supported by this twin")
    p = config["patch_size"]
    grid_h, grid_w = latent_height // p, latent_width // p
    if base == "train":
        base_h, base_w = 480 // (8 * p), 720 // (8 * p)
    elif base == "pipeline":
        base_h, base_w = config["sample_height"] // p, config["sample_width"] // p
    else:
        raise ValueError(f"base must be 'train' or 'pipeline', got {base!r}")
    crops = _resize_crop_region_for_grid((grid_h, grid_w), base_w, base_h)
    cos, sin = get_3d_rotary_pos_embed(
        embed_dim=config["attention_head_dim"], crops_coords=crops, grid_size=(grid_h, grid_w),
        temporal_size=num_frames,
    )
    return cos, sin


# ----------------------------------------------------------------------------------------------
# the reference forward
# ----------------------------------------------------------------------------------------------


def _linear(x, sd, prefix):
    w = sd[prefix + ".weight"]
    b = sd.get(prefix + ".bias")
    y = x @ w.t()
    return y if b is None else y + b


def _layer_norm(x, weight=None, bias=None, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    var = (x - mean).pow(2).mean(-1, keepdim=True)
    y = (x - mean) / torch.sqrt(var + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def _silu(x):
    return x * torch.sigmoid(x)


class _Twin:
    """Holds weights + config; one method per upstream module."""

    def __init__(self, sd: Mapping[str, torch.Tensor], cfg: Mapping[str, Any], dtype: torch.dtype):
        self.sd = {k: v.to(dtype) for k, v in sd.items()}
        self.cfg = cfg
        self.heads = cfg["num_attention_heads"]
        self.head_dim = cfg["attention_head_dim"]
        self.dim = self.heads * self.head_dim
        self.p = cfg["patch_size"]
        self.eps = cfg["norm_eps"]
        self.affine = cfg["norm_elementwise_affine"]
        self.modulate = bool(cfg["modulate_encoder_hidden_states"])
        self.rope = bool(cfg["use_rotary_positional_embeddings"])

    # LayerNorm(dim, norm_eps, elementwise_affine)
    def ln(self, prefix, x):
        if self.affine:
            return _layer_norm(x, self.sd[prefix + ".weight"], self.sd.get(prefix + ".bias"), self.eps)
        return _layer_norm(x, eps=self.eps)

    # CogVideoXPatchEmbed (diffusers embeddings.py; upstream cc.py:530-547) for the image part only:
    # Conv2d(k=p, stride=p) written as patchify + matmul, tokens ordered (frame, row, col), then the
    # sin-cos embedding (when not RoPE).  (N, F, C, h, w) -> (N, F*(h/p)*(w/p), dim)
    def patch_embed_image(self, x, text_len):
        from diffusers.models.embeddings import get_3d_sincos_pos_embed

        n, f, c, h, w = x.shape
        p = self.p
        patches = x.reshape(n, f, c, h // p, p, w // p, p).permute(0, 1, 3, 5, 2, 4, 6)
        patches = patches.reshape(n, f * (h // p) * (w // p), c * p * p)
        weight = self.sd["patch_embed.proj.weight"].reshape(self.dim, c * p * p)
        tokens = patches @ weight.t()
        if "patch_embed.proj.bias" in self.sd:
            tokens = tokens + self.sd["patch_embed.proj.bias"]
        if not self.rope:
            # The joint [text; image] table has max_text_seq_length zero rows for the text, so the
            # text length must equal max_text_seq_length or diffusers' add fails.
            if text_len != self.cfg["max_text_seq_length"]:
                raise ValueError(
                    f"sin-cos positional embeddings need text length == max_text_seq_length "
                    f"({self.cfg['max_text_seq_length']}), got {text_len} (diffusers would fail too)"
                )
            pos = get_3d_sincos_pos_embed(
                self.dim, (w // p, h // p), f, self.cfg["spatial_interpolation_scale"],
                self.cfg["temporal_interpolation_scale"], output_type="pt",
            )  # (F, S, dim)
            tokens = tokens + pos.reshape(1, -1, self.dim).to(tokens.dtype)
        return tokens

    # upstream CogVideoXLayerNormZero.forward (cc.py:60-150), both modulation branches.
    # Returns normed image, normed text, image gate (N, 1 | F*S, dim), text gate (or None).
    def norm_zero(self, prefix, hidden, text, temb, action_emb):
        d = self.dim
        w = self.sd[prefix + ".linear.weight"]
        b = self.sd[prefix + ".linear.bias"]
        if action_emb is None:
            img = (_silu(temb) @ w[: 3 * d].t() + b[: 3 * d])[:, None, :]  # (N, 1, 3d)
        else:
            # temb[:, None] + action_emb, then one row of modulation per latent frame, repeated
            # over that frame's patches (repeat_interleave, cc.py:84-97 / 117-140)
            img = _silu(temb[:, None, :] + action_emb) @ w[: 3 * d].t() + b[: 3 * d]  # (N, F, 3d)
            img = img.repeat_interleave(hidden.shape[1] // action_emb.shape[1], dim=1)
        shift, scale, gate = img.chunk(3, dim=-1)
        hidden = self.ln(prefix + ".norm", hidden) * (1 + scale) + shift
        enc_gate = None
        if self.modulate:
            # text rows [3d:] always from temb alone (cc.py:104-112, 126-130, 142-145)
            enc = (_silu(temb) @ w[3 * d:].t() + b[3 * d:])[:, None, :]
            enc_shift, enc_scale, enc_gate = enc.chunk(3, dim=-1)
            text = self.ln(prefix + ".norm", text) * (1 + enc_scale) + enc_shift
        else:
            text = self.ln(prefix + ".norm", text)  # normalised but never used afterwards
        return hidden, text, gate, enc_gate

    # Attention + upstream CogVideoXAttnProcessor2_0 (cc.py:200-270): joint [text; image] sequence,
    # per-head LayerNorm(head_dim, eps=1e-6) on q and k, RoPE on the image part of q and k,
    # softmax(q k^T / sqrt(d)) v, to_out.0.  text=None -> image tokens only.
    def attention(self, prefix, hidden, text, rotary):
        t_len = 0 if text is None else text.shape[1]
        x = hidden if text is None else torch.cat([text, hidden], dim=1)
        n, length, _ = x.shape

        def heads(y):
            return y.reshape(n, length, self.heads, self.head_dim).transpose(1, 2)

        q = heads(_linear(x, self.sd, prefix + ".to_q"))
        k = heads(_linear(x, self.sd, prefix + ".to_k"))
        v = heads(_linear(x, self.sd, prefix + ".to_v"))
        q = _layer_norm(q, self.sd.get(prefix + ".norm_q.weight"), self.sd.get(prefix + ".norm_q.bias"), 1e-6)
        k = _layer_norm(k, self.sd.get(prefix + ".norm_k.weight"), self.sd.get(prefix + ".norm_k.bias"), 1e-6)
        if rotary is not None:
            from diffusers.models.embeddings import apply_rotary_emb

            q = torch.cat([q[:, :, :t_len], apply_rotary_emb(q[:, :, t_len:], rotary)], dim=2)
            k = torch.cat([k[:, :, :t_len], apply_rotary_emb(k[:, :, t_len:], rotary)], dim=2)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        out = scores.softmax(dim=-1) @ v
        out = out.transpose(1, 2).reshape(n, length, self.dim)
        out = _linear(out, self.sd, prefix + ".to_out.0")
        return out[:, t_len:], out[:, :t_len]

    # FeedForward(dim, activation_fn="gelu-approximate"): net.0.proj -> GELU(tanh) -> net.2
    def ff(self, prefix, x):
        return _linear(_gelu_tanh(_linear(x, self.sd, prefix + ".net.0.proj")), self.sd, prefix + ".net.2")

    # upstream CogVideoXBlock.forward (cc.py:394-445)
    def block(self, i, hidden, text, temb, rotary, action_emb):
        pre = f"transformer_blocks.{i}"
        nh, nt, gate, enc_gate = self.norm_zero(pre + ".norm1", hidden, text, temb, action_emb)
        ah, at = self.attention(pre + ".attn1", nh, nt if self.modulate else None, rotary)
        hidden = hidden + gate * ah
        if self.modulate:
            text = text + enc_gate * at
        nh, nt, gate, enc_gate = self.norm_zero(pre + ".norm2", hidden, text, temb, action_emb)
        if not self.modulate:
            hidden = hidden + gate * self.ff(pre + ".ff", nh)
        else:
            t_len = text.shape[1]
            out = self.ff(pre + ".ff", torch.cat([nt, nh], dim=1))
            hidden = hidden + gate * out[:, t_len:]
            text = text + enc_gate * out[:, :t_len]
        return hidden, text

    # upstream MVBlock.forward (cc.py:313-348): AdaLN from temb only, attention over the tokens of
    # all views of one frame ('(b v) (f s) d -> (b f) (v s) d') plus, when the text is modulated,
    # the text tokens of all views; proj_out; gated residual.  No RoPE (image_rotary_emb_view is
    # never passed by upstream's pipeline or training script).  cam_encoder is unused.
    def mv_block(self, i, hidden, text, temb, n_view, n_frame):
        pre = f"mv_blocks.{i}"
        nh, nt, gate, _ = self.norm_zero(pre + ".norm1", hidden, text, temb, None)
        bv, fs, d = nh.shape
        b, s = bv // n_view, fs // n_frame
        nh = nh.reshape(b, n_view, n_frame, s, d).permute(0, 2, 1, 3, 4).reshape(b * n_frame, n_view * s, d)
        ctx = None
        if self.modulate:
            t_len = nt.shape[1]
            ctx = nt.reshape(b, n_view * t_len, d).repeat_interleave(n_frame, dim=0)  # 'b n d -> (b f) n d'
        ah, _ = self.attention(pre + ".attn1", nh, ctx, None)
        ah = _linear(ah, self.sd, pre + ".proj_out")
        ah = ah.reshape(b, n_frame, n_view, s, d).permute(0, 2, 1, 3, 4).reshape(bv, fs, d)
        return hidden + gate * ah


def _action_embedding(tw: _Twin, actions: torch.Tensor) -> torch.Tensor:
    """(B, n, 7) upstream actions -> (B, latent_frames, time_embed_dim).

    cc.py:805-812: zeros prepended until (n + 1) % 4 == 0; comp.py:47-65: ActionEmbed prepends one
    more zero row and groups 4 consecutive actions (28 features); mlp.0 -> GELU(tanh) -> mlp.3.
    No mask_embed substitution: upstream builds ActionEmbed with ``mask=self.training`` at
    construction time (cc.py:581-582), i.e. mask=True for every model, so upstream replaces a
    sample's action embedding by ``mask_embed`` with probability 0.1 even in eval mode / inference
    (comp.py:67-69).  This twin models the intended deterministic behaviour.
    """
    b, n, sdim = actions.shape
    if sdim != 7:
        raise ValueError(f"upstream actions are 7-D, got {tuple(actions.shape)}")
    res = (n + 1) % 4
    if res > 0:
        actions = torch.cat([actions.new_zeros(b, 4 - res, sdim), actions], dim=1)
    actions = torch.cat([torch.zeros_like(actions[:, :1]), actions], dim=1)
    grouped = actions.reshape(b, actions.shape[1] // 4, 4 * sdim)
    hidden = _gelu_tanh(_linear(grouped, tw.sd, "action_embed.mlp.0"))
    return _linear(hidden, tw.sd, "action_embed.mlp.3")


_REFERENCE_INPUT_EXTRAS = ("depth_latents", "label_latents")


@torch.no_grad()
def reference_forward(
    state_dict: Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    hidden_states: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    timestep: torch.Tensor,
    actions: Optional[torch.Tensor] = None,
    depths: Optional[torch.Tensor] = None,
    labels: Optional[torch.Tensor] = None,
    num_views: int = 1,
    image_rotary_emb: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
    rope_base: str = "train",
    **extras,
) -> torch.Tensor:
    """Upstream ``CogVideoXTransformer3DModelTraj.forward`` (cc.py:715-948) in eval mode.

    Layout as upstream: ``hidden_states`` (B, V*F, in_channels, h, w) = noisy ++ image latents on
    channels, ``encoder_hidden_states`` (B, T, text_embed_dim), ``timestep`` (B,), ``actions``
    (B, n, 7), ``depths`` / ``labels`` (B, V*F, in_channels, h, w) (condition latents already
    duplicated on channels).  Returns (B, V*F, out_channels, h, w).

    With RoPE configs, ``image_rotary_emb`` defaults to ``upstream_rotary_emb(config, h, w, F, rope_base)``.
    ``extras`` may only hold the ``depth_latents`` / ``label_latents`` entries of ``upstream_inputs``.
    """
    unknown = set(extras) - set(_REFERENCE_INPUT_EXTRAS)
    if unknown:
        raise TypeError(f"unexpected arguments: {sorted(unknown)}")
    cfg = dict(config)
    if cfg.get("patch_size_t") is not None:
        raise NotImplementedError("patch_size_t (CogVideoX 1.5) is not supported by this twin")
    if cfg.get("ofs_embed_dim"):
        raise NotImplementedError("ofs embeddings are not supported by this twin")
    if cfg.get("use_learned_positional_embeddings"):
        raise NotImplementedError("learned positional embeddings are not supported by this twin")
    if cfg.get("timestep_activation_fn", "silu") != "silu" or cfg.get("activation_fn") != "gelu-approximate":
        raise NotImplementedError("only silu timestep activation and gelu-approximate FF are supported")
    if num_views > 1 and not cfg.get("multiview"):
        # upstream would fail on the missing pos_embedding_v buffer (cc.py:797-800)
        raise ValueError("num_views > 1 needs a multiview config")

    from diffusers.models.embeddings import get_3d_sincos_pos_embed, get_timestep_embedding

    dtype = hidden_states.dtype
    tw = _Twin(state_dict, cfg, dtype)
    d, p = tw.dim, tw.p
    v = int(num_views)

    # cc.py:756-759: '(b (v f) c h w -> (b v) f c h w', text repeated per view
    b, vf, c, h, w = hidden_states.shape
    f = vf // v
    x = hidden_states.reshape(b * v, f, c, h, w)
    text_in = encoder_hidden_states.to(dtype).repeat_interleave(v, dim=0)
    text_len = text_in.shape[1]

    # 1. time embedding (cc.py:761-779): Timesteps(dim, flip_sin_to_cos, freq_shift) ->
    #    linear_1 -> SiLU -> linear_2; shared by all views
    t_emb = get_timestep_embedding(
        timestep, d, flip_sin_to_cos=cfg["flip_sin_to_cos"], downscale_freq_shift=cfg["freq_shift"]
    ).to(dtype)
    temb = _linear(_silu(_linear(t_emb, tw.sd, "time_embedding.linear_1")), tw.sd, "time_embedding.linear_2")
    temb = temb.repeat_interleave(v, dim=0)

    # 2. patch embedding (cc.py:781-794): text_proj for the text, conv (+ sin-cos) for the video
    text = _linear(text_in, tw.sd, "patch_embed.text_proj")
    hidden = tw.patch_embed_image(x, text_len)
    s = (h // p) * (w // p)

    # 2.1 multiview positional embedding (cc.py:796-800, 659-688): sin-cos over (views, rows, cols)
    #     computed at the CONFIG sample size, first num_views views, added to every frame
    if v > 1:
        sh, sw = cfg["sample_height"] // p, cfg["sample_width"] // p
        pos_v = get_3d_sincos_pos_embed(
            d, (sw, sh), cfg["max_n_view"], cfg["spatial_interpolation_scale"], 1.0, output_type="pt"
        ).to(dtype)  # (max_n_view, sh*sw, d)
        if sh * sw != s:
            raise ValueError("upstream's view embedding only matches inputs at the config sample size")
        hidden = (hidden.reshape(b, v, f, s, d) + pos_v[:v][None, :, None]).reshape(b * v, f * s, d)

    # actions (cc.py:802-820): shared by all views
    action_emb = None
    if actions is not None:
        action_emb = _action_embedding(tw, actions.to(dtype))
        if action_emb.shape[1] != f:
            raise ValueError(f"{actions.shape[1]} actions give {action_emb.shape[1]} latent frames, video has {f}")
        action_emb = action_emb.repeat_interleave(v, dim=0)

    # visual conditions (cc.py:827-858): same patch embedding, concatenated on features
    conds = []
    for cond in (depths, labels):
        if cond is not None and cfg["visual_guidance"]:
            conds.append(tw.patch_embed_image(cond.to(dtype).reshape(b * v, f, *cond.shape[2:]), text_len))
    if conds:
        k = cfg["num_control_keys"]
        if len(conds) != k:
            raise ValueError(f"upstream asserts {k} controls, got {len(conds)}")
        fused = _linear(hidden.repeat(1, 1, k) + torch.cat(conds, dim=-1), tw.sd, "initial_combine_linear")
        hidden = hidden + fused

    # RoPE table (pipeline/training pass it in; cc.py:1388-1393, train script 1021-1035)
    rotary = None
    if tw.rope:
        rotary = image_rotary_emb if image_rotary_emb is not None else upstream_rotary_emb(cfg, h, w, f, rope_base)
        rotary = tuple(t.to(dtype) for t in rotary)

    # 3. blocks (cc.py:861-907): [MVBlock] then transformer block, for every layer
    for i in range(cfg["num_layers"]):
        if cfg["multiview"]:
            hidden = tw.mv_block(i, hidden, text, temb, v, f)
        hidden, text = tw.block(i, hidden, text, temb, rotary, action_emb)

    # norm_final (the "*CogVideoX*-5b*" branch normalises [text; image] jointly, which is the same
    # per-token LayerNorm for the image tokens) (cc.py:909-916)
    hidden = tw.ln("norm_final", hidden)

    # 4. norm_out = upstream AdaLayerNorm(chunk_dim=1): (shift, scale) from SiLU(temb [+ action])
    #    (cc.py:153-197, 918-920)
    emb = temb if action_emb is None else temb[:, None, :] + action_emb
    mod = _linear(_silu(emb), tw.sd, "norm_out.linear")
    if action_emb is None:
        mod = mod[:, None, :]
    else:
        mod = mod.repeat_interleave(s, dim=1)
    shift, scale = mod.chunk(2, dim=-1)
    hidden = tw.ln("norm_out.norm", hidden) * (1 + scale) + shift
    hidden = _linear(hidden, tw.sd, "proj_out")

    # 5. unpatchify (cc.py:922-942): features ordered (channel, row-in-patch, col-in-patch)
    out = hidden.reshape(b * v, f, h // p, w // p, -1, p, p).permute(0, 1, 4, 2, 5, 3, 6)
    out = out.reshape(b * v, f, -1, h, w)
    return out.reshape(b, v * f, out.shape[2], h, w)  # '(b v) f c h w -> b (v f) c h w'


# ----------------------------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------------------------


def upstream_inputs(
    config: Mapping[str, Any],
    batch: int = 2,
    latent_frames: int = 3,
    num_views: int = 1,
    seed: int = 0,
) -> Dict[str, Any]:
    """Random inputs for ``reference_forward(state_dict, config, **inputs)``.

    Keys: hidden_states (B, V*F, in_channels, h, w), encoder_hidden_states (B, max_text_seq_length,
    text_embed_dim), timestep (B,) long, actions (B, 4*(F-1), 7), depths / labels
    (B, V*F, in_channels, h, w) = cat([x, x], dim=2), depth_latents / label_latents (the
    un-duplicated x, B, V*F, in_channels//2, h, w), num_views.  h, w = config sample size.
    """
    gen = torch.Generator().manual_seed(seed)
    h, w = config["sample_height"], config["sample_width"]
    vf = num_views * latent_frames
    c = config["in_channels"]
    cond_c = c // 2

    def randn(*shape):
        return torch.randn(shape, generator=gen, dtype=torch.float32)

    depth_latents = randn(batch, vf, cond_c, h, w)
    label_latents = randn(batch, vf, cond_c, h, w)
    return {
        "hidden_states": randn(batch, vf, c, h, w),
        "encoder_hidden_states": randn(batch, config["max_text_seq_length"], config["text_embed_dim"]),
        "timestep": torch.randint(0, 1000, (batch,), generator=gen, dtype=torch.long),
        "actions": 0.5 * randn(batch, 4 * (latent_frames - 1), 7),
        "depths": torch.cat([depth_latents, depth_latents], dim=2),
        "labels": torch.cat([label_latents, label_latents], dim=2),
        "depth_latents": depth_latents,
        "label_latents": label_latents,
        "num_views": num_views,
    }
