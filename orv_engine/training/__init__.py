"""Training ORV: two-stage SFT of CogVideoX-2B on accelerate (``orv-train``).

    config.py       the YAML config (dataclasses, checked before any work)
    losses.py       CogVideoX I2V v-prediction loss with ORV's actions and conditions
    data.py         clip samples + condition images (stage 2)
    latents.py      VAE encoding, online or pre-encoded to disk
    stream.py       the endless batch stream with a resumable position
    components.py   loading VAE/T5/tokenizer/scheduler/transformer (stage 1 -> stage 2)
    validation.py   held-out rollouts with ORVPipeline, PSNR/SSIM, videos
    trainer.py      the accelerate loop, checkpoints, EMA, logs
    cli.py          ``orv-train CONFIG [--resume latest] [--set key=value]``

See docs/training.md.
"""

from orv_engine.training.config import Config, ConfigError, config_from_dict, load_config

__all__ = ["Config", "ConfigError", "config_from_dict", "load_config"]
