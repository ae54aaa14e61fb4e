"""``orv-convert``: write a checkpoint in this project's layout once, instead of converting
it in memory at every load.

    orv-convert orv-official SRC DST      # an official ORV transformer folder (OrangeSodahub/ORV)
    orv-convert xlabs-controlnet FILE DST # an XLabs FLUX ControlNet .safetensors (XLabs-AI/x-flux)
    orv-convert robovlms|spatialvla ...   # the released policies: vla_finetune.convert_cli

``SRC`` is a transformer folder written by upstream's ``CogVideoXTransformer3DModelTraj``
(``config.json`` + one or several safetensors files); ``DST`` becomes an
``ORVTransformer3DModel`` (or, for upstream's multi-view models,
``ORVMultiViewTransformer3DModel``) folder whose config records the preprocessing upstream
trained with. ``FILE`` is one of XLabs' released single-file ControlNets
(``flux-controlnet-depth-v3.safetensors``, ...); ``DST`` becomes a diffusers
``FluxControlNetModel`` folder (:mod:`orv_engine.models.xlabs_controlnet`). The weights keep their stored
precision unless ``--dtype`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

from orv_engine.console import add_verbose_argument, quiet
from orv_engine.models.checkpoint_files import CheckpointError, checkpoint_files, read_header
from orv_engine.models.transformer_orv import ORVTransformer3DModel
from orv_engine.models.transformer_orv_mv import ORVMultiViewTransformer3DModel
from orv_engine.models.upstream_orv import is_upstream_config
from orv_engine.models.xlabs_controlnet import FLUX1_AXES_DIMS_ROPE, convert_xlabs_controlnet

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
SAFETENSORS_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


def stored_dtype(folder: Path) -> torch.dtype:
    """The precision of the first tensor of the folder (upstream saves one precision)."""
    header = read_header(checkpoint_files(folder)[0])
    for key, entry in header.items():
        if key != "__metadata__":
            return SAFETENSORS_DTYPES.get(entry["dtype"], torch.float32)
    return torch.float32


def convert_official(src: Path, dst: Path, dtype: str = "keep", condition_kinds: list[str] | None = None) -> Path:
    config_file = src / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{src} has no config.json; is it a transformer folder?")
    saved = json.loads(config_file.read_text())
    if not is_upstream_config(saved):
        raise CheckpointError(
            f"{src} is not an official ORV folder: its config.json names {saved.get('_class_name')!r}, "
            "not 'CogVideoXTransformer3DModelTraj'"
        )
    if dst.exists() and any(dst.iterdir()):
        raise CheckpointError(f"{dst} exists and is not empty; choose a new folder")
    cls = ORVMultiViewTransformer3DModel if saved.get("multiview") else ORVTransformer3DModel
    kwargs = {} if condition_kinds is None else {"condition_kinds": condition_kinds}
    model = cls.from_pretrained(src, **kwargs)
    target = stored_dtype(src) if dtype == "keep" else DTYPES[dtype]
    model = torch.nn.Module.to(model, dtype=target)
    model.save_pretrained(dst)
    return dst


def build_parser(add_subcommands=None, description: str | None = None) -> argparse.ArgumentParser:
    """``orv-convert``'s parser with the world-model subcommands; ``add_subcommands(sub)`` adds
    more (``vla_finetune.convert_cli`` adds the policies': ``orv_engine`` imports no other
    package of the project). Each subcommand sets ``convert(args) -> Path``."""
    parser = argparse.ArgumentParser(prog="orv-convert", description=description or __doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="source", required=True)
    official = sub.add_parser("orv-official", help="an official ORV transformer folder -> ORVTransformer3DModel")
    official.add_argument("src", type=Path, help="upstream transformer folder (config.json + safetensors)")
    official.add_argument("dst", type=Path, help="new folder to write")
    official.add_argument("--dtype", choices=["keep", *DTYPES], default="keep")
    official.add_argument("--condition-kinds", nargs="+", default=None,
                          help="for an upstream model with one condition: depth or semantics")
    official.set_defaults(convert=lambda a: convert_official(a.src, a.dst, a.dtype, a.condition_kinds))
    xlabs = sub.add_parser("xlabs-controlnet", help="an XLabs FLUX ControlNet .safetensors -> FluxControlNetModel")
    xlabs.add_argument("src", type=Path,
                       help="XLabs' single-file ControlNet (e.g. flux-controlnet-depth-v3.safetensors)")
    xlabs.add_argument("dst", type=Path, help="new folder to write")
    xlabs.add_argument("--dtype", choices=["keep", *DTYPES], default="keep")
    xlabs.add_argument("--axes-dims-rope", type=int, nargs=3, default=list(FLUX1_AXES_DIMS_ROPE),
                       help="the base FLUX model's rotary axes (the file does not record them); default FLUX.1's")
    xlabs.set_defaults(convert=lambda a: convert_xlabs_controlnet(a.src, a.dst, a.dtype, a.axes_dims_rope))
    if add_subcommands is not None:
        add_subcommands(sub)
    add_verbose_argument(parser)
    return parser


def run(parser: argparse.ArgumentParser, argv: list[str] | None = None,
        errors: tuple[type[Exception], ...] = (CheckpointError, ValueError)) -> int:
    """Parse, run the chosen subcommand's ``convert(args) -> Path``; a named error is exit 2."""
    args = parser.parse_args(argv)
    quiet(args.verbose)  # before any model is loaded
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        dst = args.convert(args)
    except errors as error:
        print(f"orv-convert: {error}", file=sys.stderr)
        return 2
    print(f"wrote {dst}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The world-model conversions alone (the ``orv-convert`` command is ``vla_finetune.convert_cli``)."""
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
