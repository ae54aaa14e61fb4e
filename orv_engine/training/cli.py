"""``orv-train`` and ``orv-mv-train``: train ORV (or ORV-MV, multi-view) from a YAML config.

    orv-train configs/bridge/stage1.yaml
    orv-train configs/bridge/stage1.yaml --resume latest
    orv-train configs/tiny.yaml --set train.max_steps=50 --set optim.learning_rate=3e-4
    accelerate launch --config_file configs/accelerate/8gpu.yaml -m orv_engine.training.cli configs/bridge/stage1.yaml
    orv-mv-train configs/droid/mv.yaml
    accelerate launch --config_file configs/accelerate/8gpu.yaml -m orv_engine.training.trainer_mv configs/droid/mv.yaml

The config is read and checked (unknown keys, wrong types, missing paths) before anything
is loaded; ``--check`` stops there. ``--pre-encode`` (single view) only fills ``data.latents_dir``.
"""

from __future__ import annotations

import argparse
import sys


def build_parser(prog: str = "orv-train", description: str = "Train ORV (two-stage SFT of CogVideoX-2B).",
                 pre_encode: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("config", help="YAML training config (see configs/)")
    parser.add_argument("--resume", default=None,
                        help="'latest' (the newest checkpoint under output_dir, or a fresh start if none) "
                             "or a checkpoint folder")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, dotted key, YAML value (repeatable)")
    parser.add_argument("--check", action="store_true", help="check the config, print it and exit")
    if pre_encode:
        parser.add_argument("--pre-encode", action="store_true", help="only pre-encode data.latents_dir, then exit")
    return parser


def _load_checked(prog: str, load, args):
    """The config, or None after printing the error (exit status 2)."""
    from orv_engine.config_validation import ConfigError

    try:
        return load(args.config, args.overrides)
    except ConfigError as e:
        print(f"{prog}: config error: {e}", file=sys.stderr)
        return None


def _print_config(config) -> int:
    import yaml

    print(yaml.safe_dump(config.to_dict(), sort_keys=False))
    return 0


def _train(trainer, resume) -> int:
    summary = trainer.train(resume=resume)
    trainer.log(f"done: step {summary['step']}, peak memory {summary['peak_memory_mb']:.0f} MB")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from orv_engine.training.config import load_config

    config = _load_checked("orv-train", load_config, args)
    if config is None:
        return 2
    if args.check:
        return _print_config(config)
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
    return _train(trainer, args.resume)


def main_multiview(argv=None) -> int:
    args = build_parser("orv-mv-train", "Train ORV-MV (multi-view generation) from a YAML config.",
                        pre_encode=False).parse_args(argv)
    from orv_engine.training.config_mv import load_multiview_config

    config = _load_checked("orv-mv-train", load_multiview_config, args)
    if config is None:
        return 2
    if args.check:
        return _print_config(config)

    import orv_engine  # noqa: F401  (torch/triton before TensorFlow)
    from orv_engine.training.trainer_mv import MultiViewTrainer

    return _train(MultiViewTrainer(config), args.resume)


if __name__ == "__main__":
    sys.exit(main())
