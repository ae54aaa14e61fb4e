"""What a weights file on disk says before any loader opens it: its safetensors header checked
against the file's size, an index's shards present.

Why a module of its own: every loader of a user-given folder calls :func:`check_weight_files`
first (the ORV pipeline, the painter, the VLM backends, the occupancy models, the policies),
some of them inside side environments without diffusers (the vLLM venv runs ``filtering``):
this module needs the standard library only.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path


class CheckpointError(OSError):
    """A checkpoint folder that cannot be loaded as asked (missing file, keys or shapes)."""


def read_header(path: Path) -> dict:
    """The JSON header of a safetensors file, checked against the file's size.

    A truncated file (an interrupted download or copy) often keeps a whole header, so
    safetensors would only fail when the missing tensor is read; the byte ranges tell it
    at once.
    """
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            header_len = int.from_bytes(f.read(8), "little")
            if header_len <= 0 or 8 + header_len > size:
                raise ValueError(f"header of {header_len} bytes in a {size}-byte file")
            header = json.loads(f.read(header_len))
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
    except (ValueError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors file ({error}); is it truncated or another format?") from error
    data_end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + header_len + data_end > size:
        raise CheckpointError(
            f"{path} is truncated: its tensors need {8 + header_len + data_end} bytes, the file has {size}"
        )
    return header


def check_weight_files(path: str | Path, max_depth: int = 2) -> None:
    """Read the header of every ``.safetensors`` file under ``path`` (a file, a model folder or
    a pipeline folder with one model per subfolder, up to ``max_depth`` levels) and check each
    index's shards exist.

    Why: transformers and diffusers meet a truncated or foreign weights file only when they
    load it, deep inside ``from_pretrained``, with a bare ``SafetensorError`` or a message that
    does not say what to do. Headers cost nothing to read, so every loader of a user-given
    folder calls this first and a damaged file is a :class:`CheckpointError` naming it.
    """
    path = Path(path).expanduser()
    if path.is_file():
        files, indexes = ([path], []) if path.suffix == ".safetensors" else ([], [])
    else:
        files, indexes = [], []
        for depth in range(max_depth + 1):
            pattern = "/".join(["*"] * depth + ["*"])
            files += [p for p in path.glob(pattern) if p.name.endswith(".safetensors") and p.is_file()]
            indexes += [p for p in path.glob(pattern) if p.name.endswith(".safetensors.index.json")]
    problems = []
    for index in sorted(indexes):
        try:
            shards = set(json.loads(index.read_text())["weight_map"].values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            problems.append(f"{index} is not a readable safetensors index ({type(error).__name__}: {error})")
            continue
        missing = sorted(name for name in shards if not (index.parent / name).is_file())
        if missing:
            problems.append(f"{index}: shards it lists are missing: {missing}")
    for file in sorted(files):
        try:
            read_header(file)
        except (CheckpointError, OSError) as error:
            problems.append(str(error))
    if problems:
        raise CheckpointError("damaged weights (re-download or re-copy these files):\n  " + "\n  ".join(problems))


TORCH_SAVE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl")


def check_training_checkpoint(path: str | Path) -> None:
    """A training checkpoint folder (accelerate's ``save_state``): its safetensors headers, and
    every file ``torch.save`` wrote (model / optimizer / scheduler ``.bin``, RNG ``.pkl``) a
    complete zip archive. ``torch.save`` writes zips since torch 1.6 and a zip's directory sits
    at its end, so a truncated file fails here at the cost of reading its last bytes."""
    path = Path(path)
    check_weight_files(path, max_depth=1)
    problems = []
    for file in sorted(p for p in path.rglob("*") if p.suffix in TORCH_SAVE_SUFFIXES and p.is_file()):
        try:
            with zipfile.ZipFile(file) as archive:
                archive.namelist()
        except (zipfile.BadZipFile, OSError, EOFError) as error:
            problems.append(f"{file} is not a complete torch file ({type(error).__name__}: {error})")
    if problems:
        raise CheckpointError("damaged checkpoint files:\n  " + "\n  ".join(problems))
