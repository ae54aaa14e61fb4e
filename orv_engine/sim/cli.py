"""``orv-sim``: simulated tabletop episodes (ManiSkill3) as an RLDS dataset.

    orv-sim generate --robot widowx --episodes 24 --size 128 --out data/sim
    orv-sim generate --robot panda --episodes 2 --cameras 2 --out /tmp/sim
    orv-sim generate --appearance randomized --episodes 300 --val-episodes 50 --size 64 --out data/small

The WidowX 250 S asset is not part of ManiSkill's wheel: point ``MS_ASSET_DIR`` at a folder
that holds it (``python -m mani_skill.utils.download_asset widowx250s``). On a machine
without a GPU, rendering runs on Mesa's lavapipe (``scripts/setup_system.sh``).
"""

from __future__ import annotations

import argparse
import sys

from orv_engine.console import add_verbose_argument, quiet
from orv_engine.sim.assets import SimAssetError
from orv_engine.sim.generate import write_sim_dataset


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orv-sim", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="record scripted pick-and-place episodes into an RLDS dataset")
    gen.add_argument("--robot", default="widowx", choices=["widowx", "panda"], help="robot (default: widowx, Bridge's)")
    gen.add_argument("--episodes", type=int, default=24, help="successful train episodes to record (default 24)")
    gen.add_argument("--val-episodes", type=int, default=0, help="episodes for a val split (default 0)")
    gen.add_argument("--size", type=int, default=128, help="square camera resolution (default 128)")
    gen.add_argument("--cameras", type=int, default=1, choices=[1, 2], help="number of cameras (default 1)")
    gen.add_argument("--seed", type=int, default=0, help="first episode seed (default 0)")
    gen.add_argument("--max-steps", type=int, default=60, help="step limit per episode at 5 Hz (default 60)")
    gen.add_argument("--appearance", default="fixed", choices=["fixed", "randomized"],
                     help="fixed: one look; randomized: colours, lights and arm motion drawn per episode "
                          "(recorded in episode_metadata/appearance)")
    gen.add_argument("--jpeg-quality", type=int, default=85, help="JPEG quality of the RGB frames (default 85)")
    gen.add_argument("--out", required=True, help="TFDS data dir; the dataset lands in OUT/orv_tabletop/1.0.0")
    return add_verbose_argument(parser)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    quiet(args.verbose)
    try:
        path, stats = write_sim_dataset(
            args.out, robot=args.robot, episodes=args.episodes, camera_size=args.size,
            num_cameras=args.cameras, val_episodes=args.val_episodes, first_seed=args.seed,
            max_steps=args.max_steps, appearance=args.appearance, jpeg_quality=args.jpeg_quality,
        )
    except (SimAssetError, RuntimeError, ValueError) as err:
        print(f"orv-sim: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {stats.episodes} episodes ({stats.failures} failed seeds left out, "
          f"{stats.steps} steps at {stats.steps_per_second:.1f} steps/s) to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
