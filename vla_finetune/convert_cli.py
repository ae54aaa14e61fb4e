"""``orv-convert``: every upstream checkpoint this project reads, written once in its layout.

The world-model subcommands (``orv-official``, ``xlabs-controlnet``) live with the models
(:mod:`orv_engine.models.convert`); this module adds the released policies and is the
console script, since ``orv_engine`` imports no other package of the project:

    orv-convert robovlms CKPT DST --statistics FILE --backbone KOSMOS2_DIR   # RoboVLMs' Kosmos policy
    orv-convert spatialvla SRC DST [--dataset bridge_orig/1.0.0]            # SpatialVLA's released folder

``CKPT``: RoboVLMs' released checkpoint (``kosmos_ph_oxe-pretrain.pt``, a Lightning/torch
``.ckpt``/``.pt``) -> a RoboVLM policy folder
(:mod:`vla_finetune.policies.robovlm.convert_robovlms`). ``SRC``: SpatialVLA's released Hub
folder (``IPEC-COMMUNITY/spatialvla-4b-224-pt``), read without ``trust_remote_code`` -> a
SpatialVLA policy folder (:mod:`vla_finetune.policies.spatialvla.convert_spatialvla`). Both
open with ``vla_finetune.policies.interface.load_policy`` and post-finetune with ``orv-vla-train``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from orv_engine.models.checkpoint_files import CheckpointError
from orv_engine.models.convert import DTYPES, build_parser, run
from vla_finetune.policies.robovlm.convert_robovlms import convert_robovlms
from vla_finetune.policies.spatialvla.convert_spatialvla import convert_spatialvla
from vla_finetune.policy_data.normalization import StatisticsError


def add_policy_subcommands(sub) -> None:
    robovlms = sub.add_parser("robovlms", help="RoboVLMs' released Kosmos checkpoint -> RoboVLM policy folder")
    robovlms.add_argument("src", type=Path, help="the released checkpoint (.pt/.ckpt with state_dict or "
                                                 "model_state_dict), e.g. kosmos_ph_oxe-pretrain.pt")
    robovlms.add_argument("dst", type=Path, help="new policy folder to write")
    robovlms.add_argument("--statistics", type=Path, required=True,
                          help="RoboVLMs' action statistics, e.g. configs/data/oxe_dataset_stats/"
                               "dataset_statistics_bridge.json (q01/q99 become the folder's statistics)")
    robovlms.add_argument("--backbone", type=Path, default=None,
                          help="a Kosmos-2 folder (microsoft/kosmos-2-patch14-224) for the config, tokenizer and "
                               "image processor (the checkpoint holds weights only)")
    robovlms.add_argument("--config", type=Path, default=None,
                          help="the release's config JSON (default: <stem>.json beside the checkpoint or in "
                               "../configs/)")
    robovlms.add_argument("--dtype", choices=["keep", *DTYPES], default="keep")
    robovlms.add_argument("--allow-pickle", action="store_true",
                          help="load a checkpoint that holds Python objects besides tensors (trusted files only)")
    robovlms.set_defaults(convert=lambda a: convert_robovlms(
        a.src, a.dst, statistics=a.statistics, config=a.config, backbone=a.backbone, dtype=a.dtype,
        allow_pickle=a.allow_pickle))
    spatialvla = sub.add_parser("spatialvla", help="SpatialVLA's released folder -> SpatialVLA policy folder")
    spatialvla.add_argument("src", type=Path, help="the released folder (IPEC-COMMUNITY/spatialvla-4b-224-pt layout)")
    spatialvla.add_argument("dst", type=Path, help="new policy folder to write")
    spatialvla.add_argument("--dataset", default=None,
                            help="the processor config's statistics/intrinsics entry (default bridge_orig/1.0.0, "
                                 "SimplerEnv's WidowX)")
    spatialvla.add_argument("--dtype", choices=["keep", *DTYPES], default="keep",
                            help="float32 for post-finetuning with fp32 master weights")
    spatialvla.set_defaults(convert=lambda a: convert_spatialvla(a.src, a.dst, dtype=a.dtype, dataset=a.dataset))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(add_policy_subcommands, description=__doc__.split("\n\n")[0])
    return run(parser, argv, errors=(CheckpointError, StatisticsError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
