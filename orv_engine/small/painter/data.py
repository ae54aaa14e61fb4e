"""The small painter's images: frames of the appearance-randomised simulated episodes with the
occupancy-rendered maps of the same step and the episode's appearance prompt.

Why frames beyond the first: the painter paints first frames, but 300 training episodes give
only 300 first frames (the arm always starts in the same pose); frames every
:data:`TRAIN_STEP_EVERY` steps of the same episodes add layouts (arm poses, cube positions
mid-task) of the same scenes under the same appearance, so the layout-following ControlNets
see more than 300 maps. The held-out set is the first frame (step 0) of every ``val`` episode:
what the product paints.

Maps are made as the product makes them (``augment.sources``: the episode's 4D occupancy,
:func:`orv_engine.occupancy.occupancy_from_episode`, rendered by Occ2GS from the episode's
camera at the painting size, :func:`orv_engine.occupancy.clip_conditions.view_condition_maps`),
and turned into control images by the first-frame stage's own
:func:`augment.first_frames.painter.control_images_for`.

File (``np.savez_compressed``, no pickles): ``frames`` (N, 64, 64, 3) uint8, ``depth`` (N, 64, 64)
float32 metres (0 = none), ``semantics`` (N, 64, 64) int32 (< 0 background), ``control_depth`` /
``control_semantics`` (N, 64, 64, 3) uint8 (the control images), ``steps`` (N,) int64,
``episode`` (N,) int64 (index into ``episode_ids``), ``prompts`` / ``episode_ids`` /
``appearances``: UTF-8 JSON lists, one per episode.

    python -m orv_engine.small.painter.data outputs/small/data/orv_tabletop/1.0.0 outputs/small_painter/data
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from augment.first_frames.painter import control_images_for
from orv_engine.data.rlds_reader import RLDSReader
from orv_engine.occupancy import occupancy_from_episode
from orv_engine.occupancy.clip_conditions import view_condition_maps
from orv_engine.sim.appearance import Appearance

SIZE = 64
TRAIN_STEP_EVERY = 5  # frames 0, 5, 10, ... of each training episode


def appearance_prompt(episode) -> tuple[str, str]:
    """(prompt, appearance JSON) of an episode (``episode_metadata/appearance``)."""
    text = str(episode.meta.extra.get("appearance", ""))
    if not text:
        raise ValueError(f"episode {episode.meta.episode_id}: no recorded appearance (generate with "
                         "orv-sim --appearance randomized)")
    return Appearance.from_json(text).prompt(), text


def episode_records(episode, steps) -> dict[str, np.ndarray]:
    camera = next(iter(episode.frames))
    steps = [s for s in steps if s < len(episode)]
    maps = view_condition_maps(episode, camera, steps, SIZE, SIZE, occupancy_from_episode(episode))
    frames = np.asarray(episode.frames[camera])[steps]
    if frames.shape[1:3] != (SIZE, SIZE):
        raise ValueError(f"episode {episode.meta.episode_id}: frames are {frames.shape[1:3]}, expected {SIZE}x{SIZE}")
    controls = {k: [] for k in ("depth", "semantics")}
    for i in range(len(steps)):
        one = {"depth": maps["depth"][i], "semantics": maps["semantics"][i]}
        for kind, image in zip(controls, control_images_for(one, list(controls), SIZE, SIZE)):
            controls[kind].append(np.asarray(image))
    return {"frames": frames.astype(np.uint8), "depth": maps["depth"].astype(np.float32),
            "semantics": maps["semantics"].astype(np.int32),
            "control_depth": np.stack(controls["depth"]).astype(np.uint8),
            "control_semantics": np.stack(controls["semantics"]).astype(np.uint8),
            "steps": np.asarray(steps, np.int64)}


def build_split(dataset: str | Path, split: str, out: str | Path, step_every: int | None,
                max_episodes: int | None = None) -> Path:
    """One split -> ``out`` (.npz); ``step_every`` None: the first frame only."""
    out = Path(out)
    if out.is_file():
        return out
    reader = RLDSReader(dataset, split=split, on_bad="skip")
    parts: dict[str, list] = {}
    prompts, ids, appearances = [], [], []
    for index, episode in enumerate(reader):
        if max_episodes is not None and index >= max_episodes:
            break
        prompt, appearance = appearance_prompt(episode)
        steps = [0] if step_every is None else list(range(0, len(episode), step_every))
        records = episode_records(episode, steps)
        records["episode"] = np.full(len(records["steps"]), len(ids), np.int64)
        for key, value in records.items():
            parts.setdefault(key, []).append(value)
        prompts.append(prompt)
        ids.append(episode.meta.episode_id)
        appearances.append(appearance)
        if index % 20 == 0:
            print(f"{split}: episode {index}, {sum(len(p) for p in parts['steps'])} images", flush=True)
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays, prompts=np.frombuffer(json.dumps(prompts).encode(), np.uint8),
                        episode_ids=np.frombuffer(json.dumps(ids).encode(), np.uint8),
                        appearances=np.frombuffer(json.dumps(appearances).encode(), np.uint8))
    os.replace(tmp, out)
    return out


def load_split(path: str | Path) -> dict:
    """The arrays of a split file, with ``prompts`` / ``episode_ids`` / ``appearances`` as lists."""
    with np.load(path) as data:
        out = {k: data[k] for k in data.files}
    for key in ("prompts", "episode_ids", "appearances"):
        out[key] = json.loads(out[key].tobytes().decode())
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset")
    parser.add_argument("out")
    args = parser.parse_args(argv)
    out = Path(args.out)
    print(build_split(args.dataset, "val", out / "val.npz", None))
    print(build_split(args.dataset, "train", out / "train.npz", TRAIN_STEP_EVERY))


if __name__ == "__main__":
    main()


def write_heldout(val_path: str | Path, out: str | Path, scenes: int = 8) -> Path:
    """The first ``scenes`` held-out scenes (the CI test's): same layout as a split file."""
    data = load_split(val_path)
    keep = np.arange(min(scenes, len(data["frames"])))
    episodes = sorted({int(e) for e in data["episode"][keep]})
    remap = {e: i for i, e in enumerate(episodes)}
    arrays = {k: data[k][keep] for k in ("frames", "depth", "semantics", "control_depth", "control_semantics", "steps")}
    arrays["episode"] = np.asarray([remap[int(e)] for e in data["episode"][keep]], np.int64)
    lists = {k: [data[k][e] for e in episodes] for k in ("prompts", "episode_ids", "appearances")}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays, **{k: np.frombuffer(json.dumps(v).encode(), np.uint8) for k, v in lists.items()})
    return out
