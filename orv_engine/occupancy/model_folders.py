"""The one check of a local model folder that the RGB → occupancy stages load (depth
estimators, segmenters): a folder, a readable ``config.json``, the expected ``model_type``.
Every error names the config field the path came from."""

from __future__ import annotations

import json
from pathlib import Path

from orv_engine.weight_files import CheckpointError, check_weight_files
from orv_engine.occupancy.errors import OccupancyInputError


def read_model_folder(field: str, path) -> tuple[Path, dict]:
    """``path`` as a saved transformers model folder and its parsed config.json."""
    if path is None:
        raise OccupancyInputError(f"{field}: a local model folder is required, got None")
    folder = Path(path)
    if not folder.is_dir():
        raise OccupancyInputError(f"{field}: {folder} is not a folder (a saved transformers model)")
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise OccupancyInputError(f"{field}: {folder} has no config.json (not a saved transformers model folder)")
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as error:
        raise OccupancyInputError(f"{field}: cannot read {config_file} as JSON ({error})") from None
    if not isinstance(config, dict):
        raise OccupancyInputError(f"{field}: {config_file} is not a JSON object")
    try:
        check_weight_files(folder)
    except CheckpointError as error:
        raise OccupancyInputError(f"{field}: {error}") from None
    return folder, config


def require_model_type(field: str, folder: Path, config: dict, model_types: tuple[str, ...]) -> None:
    model_type = config.get("model_type")
    if model_type not in model_types:
        raise OccupancyInputError(
            f"{field}: {folder} holds model_type {model_type!r}, expected {' or '.join(map(repr, model_types))}")


def check_model_folder(field: str, path, model_types: tuple[str, ...]) -> Path:
    """``path`` as a saved model folder whose config.json has one of ``model_types``."""
    folder, config = read_model_folder(field, path)
    require_model_type(field, folder, config, model_types)
    return folder
