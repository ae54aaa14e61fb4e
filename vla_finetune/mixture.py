"""A sampling mixture of BridgeV2 and the synthetic export, with shared statistics.

Octo and OpenVLA interleave datasets at the *frame* level (``sample_from_datasets`` with
the normalised weights; ``balance_weights`` off by default), so a weight pair
``(1.0, f / (1 - f))`` makes a share ``f`` of the sampled frames synthetic whatever the
dataset sizes. BridgeV2 keeps weight 1.0: OpenVLA counts datasets of weight 1.0 as
"primary" when it sizes an epoch.

:func:`write_mixture` writes, into one folder:

- ``dataset_statistics_octo.json`` / ``dataset_statistics_openvla.json``: statistics over
  the union of both datasets, each after that framework's Bridge transform (the file to
  pass as ``dataset_statistics=`` for *both* datasets);
- ``dataset_statistics.json``: OpenVLA's run-folder format ``{dataset name: statistics}``
  (what ``OpenVLA.predict_action(unnorm_key=...)`` reads), the union statistics under
  both names;
- ``mixture.json``: datasets, folders, weights, sample shares and the files above.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from orv_engine import import_order
from vla_finetune.clip_record import ExportError
from vla_finetune.rlds_source import RLDSSource
from vla_finetune.statistics import StatisticsAccumulator, write_json

DEFAULT_SYNTHETIC_FRACTION = 0.25  # the paper: synthetic ~ a quarter of the samples


@dataclass
class MixtureEntry:
    name: str  # tfds name
    data_dir: str  # the folder Octo/OpenVLA get as data_dir (holds <name>/<version>)
    version: str
    weight: float  # sampling weight as written into an OXE mixture
    sample_share: float  # normalised: expected share of sampled frames


def mixture_weights(synthetic_fraction: float = DEFAULT_SYNTHETIC_FRACTION) -> tuple[float, float]:
    """``(bridge weight, synthetic weight)`` giving ``synthetic_fraction`` of sampled frames."""
    if not 0.0 < synthetic_fraction < 1.0:
        raise ValueError(f"synthetic_fraction must be in (0, 1), got {synthetic_fraction}")
    return 1.0, synthetic_fraction / (1.0 - synthetic_fraction)


def mixture_entries(sources: Sequence[RLDSSource], weights: Sequence[float]) -> list[MixtureEntry]:
    total = float(sum(weights))
    return [MixtureEntry(name=s.name, data_dir=str(s.path.parent.parent), version=s.path.name, weight=float(w),
                         sample_share=float(w) / total) for s, w in zip(sources, weights)]


def union_statistics(sources: Sequence[RLDSSource]) -> dict[str, dict]:
    """``{framework: statistics}`` over the union of ``sources`` (one pass over the data)."""
    accs = {fw: StatisticsAccumulator(fw) for fw in ("octo", "openvla")}
    for source in sources:
        for states, actions in source.trajectories():
            for acc in accs.values():
                acc.add(states, actions)
    return {fw: acc.result() for fw, acc in accs.items()}


def write_mixture(bridge: str | Path, synthetic: str | Path, out_dir: str | Path, *,
                  synthetic_fraction: float = DEFAULT_SYNTHETIC_FRACTION, mixture_name: str = "bridge_orv") -> dict:
    """Statistics over the union + the mixture description; returns the ``mixture.json`` content."""
    sources = [RLDSSource(bridge), RLDSSource(synthetic)]
    if sources[0].name == sources[1].name:
        raise ExportError(f"both datasets are named {sources[0].name!r}; Octo/OpenVLA key datasets by name "
                          "(export the synthetic one under another name)")
    out_dir = Path(out_dir)
    stats = union_statistics(sources)
    files = {}
    for framework, value in stats.items():
        files[framework] = str(write_json(out_dir / f"dataset_statistics_{framework}.json", value))
    write_json(out_dir / "dataset_statistics.json", {s.name: stats["openvla"] for s in sources})
    entries = mixture_entries(sources, mixture_weights(synthetic_fraction))
    description = {
        "mixture_name": mixture_name,
        "synthetic_fraction": synthetic_fraction,
        "datasets": [asdict(e) for e in entries],
        "statistics": files,
        "openvla_run_statistics": str(out_dir / "dataset_statistics.json"),
        "num_transitions": {fw: s["num_transitions"] for fw, s in stats.items()},
        "oxe_mixture": [[e.name, e.weight] for e in entries],
        # Octo/OpenVLA take one data_dir for a whole mixture: if False, symlink both there
        "same_data_dir": len({e.data_dir for e in entries}) == 1,
    }
    write_json(out_dir / "mixture.json", description)
    return description


def sample_mixture(paths: Sequence[str | Path], weights: Sequence[float], num_samples: int, seed: int = 0,
                   split: str = "train") -> np.ndarray:
    """Draw ``num_samples`` frames as Octo/OpenVLA do (frame-level ``sample_from_datasets``
    over repeated, flattened datasets); return how many came from each dataset."""
    tf = import_order.tensorflow()
    datasets = []
    for index, path in enumerate(paths):
        source = RLDSSource(path)
        decoders = {"steps": {"observation": {k: source._tfds.decode.SkipDecoding() for k in source.image_keys}}}
        ds = source.builder.as_dataset(split=split, decoders=decoders, shuffle_files=False)
        ds = ds.repeat().flat_map(lambda ep: ep["steps"]).map(lambda step, i=index: tf.constant(i, tf.int32))
        datasets.append(ds)
    weights = np.asarray(weights, np.float64) / np.sum(weights)
    mixed = tf.data.Dataset.sample_from_datasets(datasets, weights=weights.tolist(), seed=seed)
    counts = np.zeros(len(paths), np.int64)
    for value in mixed.take(num_samples).batch(4096).as_numpy_iterator():
        counts += np.bincount(value, minlength=len(paths))
    return counts
