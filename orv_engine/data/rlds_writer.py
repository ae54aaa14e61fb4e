"""Write episodes as an RLDS dataset in a local TFDS folder.

Used for simulated episodes, the tests' own small datasets and benchmark data; readable by
``tfds.builder_from_directory`` (and so by :class:`RLDSReader`, Octo and OpenVLA).
tfds only writes through a ``DatasetBuilder``, so this wraps the episodes in a throw-away
``GeneratorBasedBuilder`` subclass that is never registered.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import types
from pathlib import Path
from typing import Callable, Iterable, Mapping

from orv_engine import import_order
from orv_engine.console import is_verbose


def bridge_features(image_size: tuple[int, int] = (256, 256), cameras: int = 4, extra_observation: Mapping | None = None):
    """The ``bridge_dataset`` RLDS features (BridgeV2, as Octo/OpenVLA read it)."""
    tf = import_order.tensorflow()
    tfds = import_order.tensorflow_datasets()
    f = tfds.features
    h, w = image_size
    observation = {
        f"image_{k}": f.Image(shape=(h, w, 3), dtype=tf.uint8, encoding_format="jpeg")
        for k in range(cameras)
    }
    observation["state"] = f.Tensor(shape=(7,), dtype=tf.float32)
    observation.update(extra_observation or {})
    return f.FeaturesDict({
        "steps": f.Dataset({
            "observation": f.FeaturesDict(observation),
            "action": f.Tensor(shape=(7,), dtype=tf.float32),
            "discount": f.Scalar(dtype=tf.float32),
            "reward": f.Scalar(dtype=tf.float32),
            "is_first": f.Scalar(dtype=tf.bool),
            "is_last": f.Scalar(dtype=tf.bool),
            "is_terminal": f.Scalar(dtype=tf.bool),
            "language_instruction": f.Text(),
            "language_embedding": f.Tensor(shape=(512,), dtype=tf.float32),
        }),
        "episode_metadata": f.FeaturesDict({
            "file_path": f.Text(),
            "episode_id": f.Scalar(dtype=tf.int32),
            **{f"has_image_{k}": f.Scalar(dtype=tf.bool) for k in range(cameras)},
            "has_language": f.Scalar(dtype=tf.bool),
        }),
    })


def write_rlds(
    data_dir: str | Path,
    name: str,
    features,
    splits: Mapping[str, Iterable[dict] | Callable[[], Iterable[dict]]],
    *,
    version: str = "1.0.0",
    description: str = "",
    num_shards: int | None = None,
) -> Path:
    """Write ``splits`` ({split: episodes}) as ``data_dir/name/version``; return that folder.

    Each episode is a nested dict matching ``features`` (``steps`` a list of step dicts).
    ``num_shards`` fixes the number of tfrecord files of every split (each split needs at
    least that many episodes); default: by size.
    """
    tfds = import_order.tensorflow_datasets()
    tfds.disable_progress_bar()

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, description=description, features=features)

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(episodes) for split, episodes in splits.items()}

    def _generate_examples(self, episodes):
        for index, episode in enumerate(episodes() if callable(episodes) else episodes):
            yield index, episode

    body = {
        "name": name,
        "VERSION": tfds.core.Version(version),
        "RELEASE_NOTES": {version: "written by orv_engine.data.rlds_writer"},
        "_info": _info,
        "_split_generators": _split_generators,
        "_generate_examples": _generate_examples,
    }
    builder_cls = types.new_class(
        "RLDSWriterBuilder", (tfds.core.GeneratorBasedBuilder,), {"skip_registration": True},
        lambda ns: ns.update(body),
    )
    builder = builder_cls(data_dir=str(data_dir))
    # tfds prints "Downloading and preparing dataset ..." to stdout: ours is a local write
    with contextlib.nullcontext() if is_verbose() else contextlib.redirect_stdout(io.StringIO()):
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(num_shards=num_shards, try_download_gcs=False)
        )
    downloads = Path(data_dir) / "downloads"  # tfds leaves an empty download folder behind
    if downloads.is_dir() and not any(p.is_file() for p in downloads.rglob("*")):
        shutil.rmtree(downloads)
    return Path(builder.data_dir)
