"""Read diffusers safetensors checkpoints (single or sharded) and check them key by key.

Why: a checkpoint folder with a missing tensor or a wrong shape should fail with a message
that names the folder and the tensors, before any weight is copied, not with a meta-tensor
error deep inside a forward pass. Shapes are read from the safetensors headers, so the
check costs nothing even for the 2B model.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from orv_engine.weight_files import CheckpointError, read_header

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"


def _name(base: str, variant: str | None) -> str:
    if not variant:
        return base
    stem, ext = base.rsplit(".safetensors", 1)[0], ".safetensors"
    return f"{stem}.{variant}{ext}"


def checkpoint_files(folder: str | Path, variant: str | None = None) -> list[Path]:
    """The safetensors files of a diffusers model folder (one file, or the shards of an index)."""
    folder = Path(folder)
    single = folder / _name(WEIGHTS_NAME, variant)
    if single.is_file():
        return [single]
    index = folder / (_name(WEIGHTS_NAME, variant) + ".index.json")
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        files = [folder / name for name in sorted(set(weight_map.values()))]
        absent = [f.name for f in files if not f.is_file()]
        if absent:
            raise CheckpointError(f"{folder}: shards listed in {index.name} are missing: {absent}")
        return files
    present = sorted(p.name for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".pt", ".json"))
    raise CheckpointError(
        f"{folder} has no {single.name} (nor a sharded index); files present: {present}. "
        "Only safetensors checkpoints are read."
    )


def checkpoint_shapes(folder: str | Path, variant: str | None = None) -> dict[str, tuple[int, ...]]:
    """{key: shape} from the safetensors headers; a truncated or foreign file is a CheckpointError."""
    shapes: dict[str, tuple[int, ...]] = {}
    for path in checkpoint_files(folder, variant):
        for key, entry in read_header(path).items():
            if key != "__metadata__":
                shapes[key] = tuple(entry["shape"])
    return shapes


def load_checkpoint(folder: str | Path, variant: str | None = None) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for path in checkpoint_files(folder, variant):
        try:
            state.update(load_file(str(path)))
        except Exception as error:
            raise CheckpointError(
                f"{path} is not a readable safetensors file ({type(error).__name__}: {error}); "
                "is it truncated or another format?"
            ) from error
    return state


def _shape(value) -> tuple[int, ...]:
    return tuple(value.shape) if hasattr(value, "shape") else tuple(value)


def check_shapes(expected: dict, found: dict, source) -> None:
    """Raise :class:`CheckpointError` naming missing, unexpected and mis-shaped tensors."""
    expected = {k: _shape(v) for k, v in expected.items()}
    found = {k: _shape(v) for k, v in found.items()}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    mismatched = sorted(
        f"{k}: checkpoint {found[k]} vs model {expected[k]}"
        for k in set(expected) & set(found)
        if found[k] != expected[k]
    )
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing weights: {_short(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected weights: {_short(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} mismatched shapes: {_short(mismatched)}")
    if problems:
        raise CheckpointError(
            f"checkpoint {source} does not fit the model config: " + "; ".join(problems)
            + ". Was the folder saved from a different config, or is it incomplete?"
        )


def _short(items: list[str], limit: int = 8) -> str:
    head = ", ".join(items[:limit])
    return head + (f", ... (+{len(items) - limit} more)" if len(items) > limit else "")
