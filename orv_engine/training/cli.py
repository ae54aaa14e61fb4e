"""``orv-train``: train ORV from a YAML config.

    orv-train configs/bridge/stage1.yaml
    orv-train configs/bridge/stage1.yaml --resume latest
    orv-train configs/tiny.yaml --set train.max_steps=50 --set optim.learning_rate=3e-4
    accelerate launch --config_file configs/accelerate/8gpu.yaml -m orv_engine.training.cli configs/bridge/stage1.yaml

The config is read and checked (unknown keys, wrong types, missing paths) before anything
is loaded; ``--check`` stops there. ``--pre-encode`` only fills ``data.latents_dir``.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orv-train", description="Train ORV (two-stage SFT of CogVideoX-2B).")
    parser.add_argument("config", help="YAML training config (see configs/)")
    parser.add_argument("--resume", default=None,
                        help="'latest' (the newest checkpoint under output_dir, or a fresh start if none) "
                             "or a checkpoint folder")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, dotted key, YAML value (repeatable)")
    parser.add_argument("--check", action="store_true", help="check the config, print it and exit")
    parser.add_argument("--pre-encode", action="store_true", help="only pre-encode data.latents_dir, then exit")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from orv_engine.training.config import ConfigError, load_config

    try:
        config = load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"orv-train: config error: {e}", file=sys.stderr)
        return 2
    if args.check:
        import yaml

        print(yaml.safe_dump(config.to_dict(), sort_keys=False))
        return 0
    if args.pre_encode and not config.data.latents_dir:
        print("orv-train: config error: data.latents_dir: required for --pre-encode", file=sys.stderr)
        return 2

    import orv_engine  # noqa: F401  (torch/triton before TensorFlow)
    from orv_engine.training.trainer import Trainer

    trainer = Trainer(config)
    if args.pre_encode:
        trainer._setup_models()
        trainer._setup_data()
        return 0
    summary = trainer.train(resume=args.resume)
    trainer.log(f"done: step {summary['step']}, peak memory {summary['peak_memory_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
