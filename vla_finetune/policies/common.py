"""What both policies share: their folder layout, backbone loading, statistics.

A saved policy folder holds ``config.json`` (the policy config with the backbone config
nested), ``model.safetensors``, ``dataset_statistics.json`` (the mixture statistics the
actions were normalised with) and the backbone's processor files (tokenizer + image
processor), so :func:`vla_finetune.policies.interface.load_policy` needs nothing else.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import AutoProcessor
from transformers.utils import logging as hf_logging

from orv_engine.weight_files import CheckpointError, check_weight_files
from vla_finetune.policy_data.normalization import ActionNormalizer, StatisticsError, read_statistics

STATISTICS_FILE = "dataset_statistics.json"


def check_model_folder(path, what: str) -> Path:
    path = Path(path).expanduser()
    if not path.is_dir():
        raise CheckpointError(f"{what} folder {path} not found")
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{what} folder {path} has no config.json (expected a transformers save_pretrained folder)")
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise CheckpointError(f"{what} folder {path} has no weights (*.safetensors)")
    check_weight_files(path)
    return path


def load_processor(path):
    # AutoTokenizer reads the folder's config.json to choose a class and warns that our policy's
    # model_type is not the backbone's; the tokenizer_config.json names the class, so mute that
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return AutoProcessor.from_pretrained(str(path))
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path}: cannot load the processor (tokenizer + image processor files): {err}") from err
    finally:
        hf_logging.set_verbosity(verbosity)


class PolicyFilesMixin:
    """Adds the processor and the statistics to ``save_pretrained``/``from_pretrained``."""

    processor = None
    normalizer: ActionNormalizer | None = None

    def attach(self, processor, statistics, mode: str) -> None:
        self.processor = processor
        self.normalizer = ActionNormalizer(statistics, mode=mode)

    def save_pretrained(self, save_directory, *args, **kwargs):
        if self.processor is None or self.normalizer is None:
            raise StatisticsError("the policy has no processor/statistics attached; a saved folder would not load")
        super().save_pretrained(save_directory, *args, **kwargs)
        self.processor.save_pretrained(save_directory)
        Path(save_directory, STATISTICS_FILE).write_text(json.dumps(self.normalizer.statistics, indent=1))
        self.save_extra(Path(save_directory))

    def save_extra(self, folder: Path) -> None:  # subclasses save more files
        pass

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        folder = check_model_folder(pretrained_model_name_or_path, f"{cls.__name__}")
        stats = folder / STATISTICS_FILE
        if not stats.is_file():
            raise StatisticsError(f"{folder}: no {STATISTICS_FILE} (the action statistics the policy was trained "
                                  "with); cannot un-normalise its actions")
        model = super().from_pretrained(str(folder), *args, **kwargs)
        model.attach(load_processor(folder), read_statistics(stats), model.config.normalization)
        model.load_extra(folder)
        return model

    def load_extra(self, folder: Path) -> None:
        pass
