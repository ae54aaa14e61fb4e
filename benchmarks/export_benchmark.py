"""Export benchmark: kept clips exported per second, and bytes per episode.

    python -m benchmarks.export_benchmark [--shared ../shared/data] [--clips 24] [--frames 17]

Clips carry real Bridge pixels (the shared raw-resolution Bridge videos, 480x640, cut into
windows of ``--frames`` frames, ORV's 16+1 at the Bridge preset) with random-walk
states/actions, and are exported as the ``bridge_dataset`` schema at the given image
sizes and JPEG qualities (default: 256x256, quality 95). One run per row; the machine is
noisy. Bytes are the tfrecord shards only; per step they hold image_0 plus three blank
cameras (BridgeV2's layout) and the 512-float language embedding (2 KiB per step).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np

import vla_finetune.export as export_module
from vla_finetune.clip_record import ExportClip, Provenance
from vla_finetune.export import ExportConfig, export_clips


def real_frame_clips(shared: Path, count: int, frames: int) -> list[ExportClip]:
    videos = [iio.imread(p) for p in sorted((shared / "bridge_real").glob("bridge_real_*.mp4"))]
    if not videos:
        raise SystemExit(f"no bridge_real_*.mp4 under {shared / 'bridge_real'} (pass --shared)")
    rng = np.random.default_rng(0)
    clips = []
    for i in range(count):
        video = videos[i % len(videos)]
        start = int(rng.integers(0, max(1, len(video) - frames)))
        window = np.ascontiguousarray(video[start:start + frames, ..., :3])
        if len(window) < frames:  # pad short videos by holding the last frame
            window = np.concatenate([window, np.repeat(window[-1:], frames - len(window), 0)])
        actions = rng.normal(0, 0.01, (frames, 7)).astype(np.float32)
        actions[:, 6] = 1.0
        states = np.zeros((frames, 7), np.float32)
        states[:, :6] = np.cumsum(np.concatenate([np.zeros((1, 6)), actions[:-1, :6]]), 0)
        states[:, 6] = 1.0
        clips.append(ExportClip(frames=window, actions=actions, states=states, caption="put the pot in the sink",
                                provenance=Provenance(source_dataset="bridge_real", source_episode=str(i), seed=i,
                                                      verdict_score=0.8)))
    return clips


def measure(clips, image_size, quality) -> dict:
    encode = {"seconds": 0.0}
    original = export_module.jpeg_bytes

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            encode["seconds"] += time.perf_counter() - t0

    export_module.jpeg_bytes = timed
    try:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            result = export_clips(clips, tmp, ExportConfig(image_size=image_size, jpeg_quality=quality))
            seconds = time.perf_counter() - t0
    finally:
        export_module.jpeg_bytes = original
    episodes = sum(result.episodes.values())
    return {"size": f"{image_size[0]}x{image_size[1]}", "quality": quality, "episodes": episodes,
            "episodes_per_s": episodes / seconds, "bytes_per_episode": result.bytes / episodes,
            "bytes_per_step": result.bytes / result.steps, "jpeg_share": encode["seconds"] / seconds}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--frames", type=int, default=17)
    args = parser.parse_args(argv)
    clips = real_frame_clips(Path(args.shared), args.clips, args.frames)
    measure(clips[:2], (64, 64), 95)  # warm-up: TensorFlow/tfds imports and graph building
    rows = [measure(clips, (256, 256), 95), measure(clips, (256, 256), 85), measure(clips, (224, 224), 95)]
    print(f"{args.clips} clips x {args.frames} frames of real Bridge pixels (480x640 source)")
    print(f"{'image':>8} {'quality':>7} {'episodes/s':>10} {'bytes/episode':>13} {'bytes/step':>10} {'JPEG encode':>11}")
    for r in rows:
        print(f"{r['size']:>8} {r['quality']:>7} {r['episodes_per_s']:>10.1f} {r['bytes_per_episode']:>13,.0f} "
              f"{r['bytes_per_step']:>10,.0f} {r['jpeg_share']:>10.0%}")


if __name__ == "__main__":
    main()
