"""Read a folder of clips and pair it with a folder of ground truth, checking the pairing.

The naming rule (one rule, for both folders): a clip's name is its file name without the
extension (``ep12_cam0.mp4`` -> ``ep12_cam0``), or the folder's name for a folder of
frames (``ep12_cam0/000.png, 001.png, ...``). A generated clip and its ground truth have
the same name; the formats may differ (generated ``.mp4`` against ground-truth PNG frames
is fine). Every clip must have its pair, in both directions, with the same frame count and
frame size; anything else is a :class:`ClipPairError` that names the clips.

``orv-augment``'s per-unit layout reads directly: a folder holding ``video.mp4`` (a run's
``rollouts/UNIT/``) is the clip named after the folder, so ``orv-filter RUN/rollouts`` works.

Formats: videos through FFmpeg (``.mp4 .avi .mov .mkv .webm``, via imageio-ffmpeg, which
the project already depends on), ``.gif`` (imageio/Pillow), ``.npy`` arrays
``(T, H, W, 3)`` or ``(T, H, W)`` uint8, and folders of ``.png``/``.jpg`` frames in natural
order (``2.png`` before ``10.png``). All read as ``(T, H, W, 3) uint8`` RGB.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
from PIL import Image

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
GIF_EXTENSIONS = (".gif",)
ARRAY_EXTENSIONS = (".npy",)
FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg")
CLIP_EXTENSIONS = VIDEO_EXTENSIONS + GIF_EXTENSIONS + ARRAY_EXTENSIONS
UNIT_VIDEO = "video.mp4"  # the clip of an orv-augment unit folder (augment.rollout)


class ClipPairError(ValueError):
    """Generated and ground-truth folders do not pair up (names, frame counts or sizes)."""


@dataclass(frozen=True)
class ClipPair:
    name: str
    generated: Path
    ground_truth: Path


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _frame_files(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_EXTENSIONS),
        key=_natural_key,
    )


def scan_clip_folder(folder: str | Path) -> tuple[dict[str, Path], list[str], list[tuple[str, Path, Path]]]:
    """``({name: path}, unsupported entries, duplicates)`` of a folder, in natural name
    order; hidden entries are skipped; a duplicate is ``(name, kept path, second path)``."""
    folder = Path(folder)
    clips: dict[str, Path] = {}
    unsupported: list[str] = []
    duplicates: list[tuple[str, Path, Path]] = []
    for entry in sorted(folder.iterdir(), key=_natural_key):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if (entry / UNIT_VIDEO).is_file():  # an orv-augment unit folder
                name, entry = entry.name, entry / UNIT_VIDEO
            elif not _frame_files(entry):
                unsupported.append(entry.name + f"/ (no .png/.jpg frames, no {UNIT_VIDEO})")
                continue
            else:
                name = entry.name
        elif entry.suffix.lower() in CLIP_EXTENSIONS:
            name = entry.stem
        else:
            unsupported.append(entry.name)
            continue
        if name in clips:
            duplicates.append((name, clips[name], entry))
            continue
        clips[name] = entry
    return clips, unsupported, duplicates


def list_clips(folder: str | Path) -> dict[str, Path]:
    """Map clip name -> path for every clip in ``folder``; anything else is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ClipPairError(f"not a folder of clips: {folder}")
    clips, unsupported, duplicates = scan_clip_folder(folder)
    if duplicates:
        name, first, second = duplicates[0]
        raise ClipPairError(f"two clips named {name!r} in {folder}: {first.name} and {second.name}")
    if unsupported:
        raise ClipPairError(
            f"unsupported entries in {folder}: {', '.join(unsupported[:10])}"
            f"{' ...' if len(unsupported) > 10 else ''}; a clip is one of "
            f"{' '.join(CLIP_EXTENSIONS)} or a folder of {'/'.join(FRAME_EXTENSIONS)} frames"
        )
    if not clips:
        raise ClipPairError(f"no clips in {folder}")
    return clips


def pair_clips(generated_dir: str | Path, ground_truth_dir: str | Path) -> list[ClipPair]:
    """Pair clips by name; every clip on either side must have its pair."""
    gen, gt = list_clips(generated_dir), list_clips(ground_truth_dir)
    no_gt = sorted(set(gen) - set(gt))
    no_gen = sorted(set(gt) - set(gen))
    if no_gt or no_gen:
        parts = []
        if no_gt:
            parts.append(f"{len(no_gt)} generated clip(s) without ground truth: {', '.join(no_gt[:10])}")
        if no_gen:
            parts.append(f"{len(no_gen)} ground-truth clip(s) without a generated clip: {', '.join(no_gen[:10])}")
        raise ClipPairError(
            "; ".join(parts) + f" (generated: {generated_dir}, ground truth: {ground_truth_dir}; "
            "a pair shares its name without the extension)"
        )
    return [ClipPair(name, gen[name], gt[name]) for name in sorted(gen)]


def _to_rgb_uint8(frames: np.ndarray, path: Path) -> np.ndarray:
    if frames.dtype != np.uint8:
        raise ClipPairError(f"{path}: frames must be uint8, got {frames.dtype}")
    if frames.ndim == 3:  # (T, H, W) grayscale
        frames = np.repeat(frames[..., None], 3, axis=-1)
    if frames.ndim != 4 or frames.shape[-1] not in (1, 3, 4):
        raise ClipPairError(f"{path}: expected (T, H, W, 3) frames, got shape {frames.shape}")
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    if frames.shape[-1] == 4:  # drop alpha
        frames = frames[..., :3]
    if frames.shape[0] == 0:
        raise ClipPairError(f"{path}: clip has no frames")
    return np.ascontiguousarray(frames)


def _read_video(path: Path) -> np.ndarray:
    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    meta = next(reader)
    width, height = meta["size"]
    frames = [np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3) for raw in reader]
    return np.stack(frames) if frames else np.zeros((0, height, width, 3), np.uint8)


def _read_gif(path: Path) -> np.ndarray:
    frames = iio.imread(path, index=None, plugin="pillow", mode="RGB")
    return frames if frames.ndim == 4 else frames[None]


def _read_frame_folder(path: Path) -> np.ndarray:
    frames = []
    for file in _frame_files(path):
        with Image.open(file) as image:
            frames.append(np.asarray(image.convert("RGB")))
    sizes = {f.shape for f in frames}
    if len(sizes) > 1:
        raise ClipPairError(f"{path}: frames of different sizes {sorted(sizes)}")
    return np.stack(frames)


def read_clip(path: str | Path) -> np.ndarray:
    """Read one clip as ``(T, H, W, 3) uint8``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_dir():
        frames = _read_frame_folder(path)
    elif suffix in VIDEO_EXTENSIONS:
        frames = _read_video(path)
    elif suffix in GIF_EXTENSIONS:
        frames = _read_gif(path)
    elif suffix in ARRAY_EXTENSIONS:
        frames = np.load(path, allow_pickle=False)
    else:
        raise ClipPairError(f"unsupported clip {path}: use {' '.join(CLIP_EXTENSIONS)} or a folder of frames")
    return _to_rgb_uint8(frames, path)


def read_pair(pair: ClipPair) -> tuple[np.ndarray, np.ndarray]:
    """Read a generated clip and its ground truth; same frame count and size, or an error."""
    gen, gt = read_clip(pair.generated), read_clip(pair.ground_truth)
    if gen.shape != gt.shape:
        what = "frame counts" if gen.shape[0] != gt.shape[0] else "frame sizes"
        raise ClipPairError(
            f"clip {pair.name!r}: {what} differ: generated {pair.generated.name} has "
            f"{gen.shape[0]} frames of {gen.shape[2]}x{gen.shape[1]}, ground truth "
            f"{pair.ground_truth.name} has {gt.shape[0]} frames of {gt.shape[2]}x{gt.shape[1]}"
        )
    return gen, gt


def check_pairs(pairs: list[ClipPair]) -> list[tuple[int, int, int]]:
    """Read every pair once and report *all* mismatched clips in one error.

    Costs one decoding pass, which is small next to FID/FVD, and means a bad folder fails
    before any network runs rather than halfway through. Returns ``(T, H, W)`` per pair.
    """
    shapes, problems = [], []
    for pair in pairs:
        try:
            gen, _ = read_pair(pair)
        except ClipPairError as error:
            problems.append(str(error))
            continue
        shapes.append(gen.shape[:3])
    if problems:
        raise ClipPairError(f"{len(problems)} clip pair(s) do not match:\n  " + "\n  ".join(problems))
    return shapes


def write_clip(path: str | Path, frames: np.ndarray, fps: int = 8) -> Path:
    """Write ``(T, H, W, 3) uint8`` frames in the format the extension names.

    Videos are H.264, yuv420p, CRF 12 (visually lossless and playable everywhere, but
    lossy: ground truth and generated clips should go through the same codec before PSNR
    is compared); ``.npy`` and frame folders are lossless.
    """
    path = Path(path)
    frames = _to_rgb_uint8(np.asarray(frames), path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix in ARRAY_EXTENSIONS:
        np.save(path, frames)
    elif suffix in GIF_EXTENSIONS:
        iio.imwrite(path, frames, plugin="pillow", duration=int(1000 / fps), loop=0)
    elif suffix in VIDEO_EXTENSIONS:
        height, width = frames.shape[1:3]
        writer = imageio_ffmpeg.write_frames(
            str(path), (width, height), fps=fps, codec="libx264", quality=None,
            macro_block_size=1, output_params=["-crf", "12"],
        )
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
        writer.close()
    elif suffix == "":
        path.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(frames):
            Image.fromarray(frame).save(path / f"{i:04d}.png")
    else:
        raise ClipPairError(f"cannot write {path}: use .mp4, .gif, .npy or a folder path")
    return path
