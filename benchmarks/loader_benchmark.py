"""Loader benchmark: clips per second at the Bridge settings, and the share of JPEG decoding.

    python -m benchmarks.loader_benchmark [--shared ../shared/data] [--episodes 8]

Two datasets, both real Bridge pixels:
1. the 25 shared BridgeV2 RLDS episodes (64x64, 10 steps): Bridge settings (320x480,
   stride 1, interval 4) with 8 frames, since no 10-step episode holds a 16-frame clip;
2. the shared raw-resolution Bridge clips (480x640, 37 frames) written here as an RLDS
   dataset with JPEG images: the paper's full Bridge preset (16 frames, 320x480).

Figures come from one run (the machine is noisy): clips/s, and the fraction of reading
time spent in JPEG decoding, resizing and the rest (TFRecord parsing, standardization).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import imageio.v3 as iio
import numpy as np

import orv_engine.data.clips as clips_module
import orv_engine.data.rlds_reader as reader_module
from orv_engine.data import PRESETS, RLDSReader, cut_clips
from orv_engine.data.rlds_writer import bridge_features, write_rlds


class Stopwatch:
    """Wraps a function and accumulates the seconds spent inside it."""

    def __init__(self, module, name):
        self.module, self.name, self.seconds = module, name, 0.0
        self.original = getattr(module, name)

    def __enter__(self):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return self.original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0

        setattr(self.module, self.name, timed)
        return self

    def __exit__(self, *exc):
        setattr(self.module, self.name, self.original)


def measure(path: Path, config, label: str, repeats: int = 2) -> dict:
    best = None
    for _ in range(repeats):  # the first pass also warms tfds and the page cache
        with Stopwatch(reader_module, "decode_image") as decode, Stopwatch(clips_module, "resize_frames") as resize:
            t0 = time.perf_counter()
            n_clips = n_episodes = 0
            for episode in RLDSReader(path):
                n_episodes += 1
                n_clips += len(cut_clips(episode, config, "train"))
            total = time.perf_counter() - t0
        result = {"label": label, "episodes": n_episodes, "clips": n_clips, "seconds": total,
                  "clips_per_s": n_clips / total, "decode_share": decode.seconds / total,
                  "resize_share": resize.seconds / total}
        if best is None or result["seconds"] < best["seconds"]:
            best = result
    return best


def write_raw_resolution_dataset(shared: Path, out: Path, episodes: int) -> Path:
    videos = [iio.imread(p) for p in sorted((shared / "bridge_real").glob("bridge_real_*.mp4"))]
    rng = np.random.default_rng(0)

    def generate():
        for k in range(episodes):
            video = videos[k % len(videos)]
            n = len(video)
            states = np.cumsum(rng.normal(0, 0.005, (n, 7)), 0).astype(np.float32)
            steps = []
            for t in range(n):
                obs = {f"image_{c}": (video[t] if c == 0 else np.zeros_like(video[t])) for c in range(4)}
                obs["state"] = states[t]
                steps.append({"observation": obs, "action": states[min(t + 1, n - 1)] - states[t],
                              "discount": 1.0, "reward": 0.0, "is_first": t == 0, "is_last": t == n - 1,
                              "is_terminal": t == n - 1, "language_instruction": "put the spoon on the towel",
                              "language_embedding": np.zeros(512, np.float32)})
            yield {"steps": steps, "episode_metadata": {"file_path": f"bridge_real_{k}", "episode_id": k,
                   "has_image_0": True, "has_image_1": False, "has_image_2": False, "has_image_3": False,
                   "has_language": True}}

    h, w = videos[0].shape[1:3]
    return write_rlds(out, "bridge_dataset", bridge_features((h, w)), {"train": generate})


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--episodes", type=int, default=8, help="raw-resolution episodes to write")
    args = parser.parse_args(argv)
    shared = Path(args.shared)

    rows = []
    debug = shared / "bridge_debug" / "bridge_dataset" / "1.0.0"
    rows.append(measure(debug, replace(PRESETS["bridge"], num_frames=8),
                        "shared RLDS episodes, 64x64 -> 320x480, 8 frames"))
    rows.append(measure(debug, PRESETS["bridge-tiny"], "shared RLDS episodes, bridge-tiny (64x64)"))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        raw = write_raw_resolution_dataset(shared, Path(tmp), args.episodes)
        print(f"(wrote {args.episodes} raw-resolution episodes in {time.perf_counter() - t0:.1f}s)")
        rows.append(measure(raw, PRESETS["bridge"], "raw 480x640 Bridge clips -> Bridge preset (16 fr, 320x480)"))

    print(f"\n{'dataset / settings':62s} {'episodes':>8s} {'clips':>6s} {'clips/s':>8s} {'JPEG decode':>11s} {'resize':>7s}")
    for r in rows:
        print(f"{r['label']:62s} {r['episodes']:8d} {r['clips']:6d} {r['clips_per_s']:8.1f} "
              f"{100 * r['decode_share']:10.1f}% {100 * r['resize_share']:6.1f}%")
    print("\nper reader process; DataLoader workers (make_clip_loader) scale it across cores.")


if __name__ == "__main__":
    main()
