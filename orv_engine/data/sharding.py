"""Stable episode keys and their split over ``--shard i/n`` workers, shared by every job that
walks a dataset episode by episode (``orv-augment``, ``orv-occupancy``): a key names the same
episode on every machine and run, so one job's per-episode outputs can be found by another."""

from __future__ import annotations

import re
import zlib
from pathlib import Path


def episode_key(file: str, index: int) -> str:
    """A filesystem-safe, stable key for an episode: ``<shard file>-<index>``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{Path(file).name}-{index:06d}")


def owner_shard(key: str, count: int) -> int:
    """Which of ``count`` shards owns an episode (stable across machines and runs)."""
    return zlib.crc32(key.encode()) % count


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)``; None -> ``(0, 1)``."""
    if not text:
        return 0, 1
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard expects i/n (e.g. 0/4), got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"--shard {text}: need 0 <= i < n")
    return index, count


def iter_shard_episodes(reader, shard: tuple[int, int], done: set[str], max_episodes: int | None = None):
    """Yield ``(key, episode or None, reason)`` for ``shard``'s episodes of an ``RLDSReader``
    not in ``done``.

    Episodes are numbered in reading order over the whole dataset (so ``max_episodes`` means
    the same episodes for every shard count); only this shard's are decoded. An episode the
    reader refused (``on_bad="skip"``, counted in its report) comes back as ``None`` with a reason.
    """
    seen = 0
    for file_index, file in enumerate(reader.files):
        if max_episodes is not None and seen >= max_episodes:
            return
        wanted: dict[int, str] = {}

        def keep(index, file=file):
            nonlocal seen
            if max_episodes is not None and seen >= max_episodes:
                return False
            seen += 1
            key = episode_key(file, index)
            if owner_shard(key, shard[1]) != shard[0] or key in done:
                return False
            wanted[index] = key
            return True

        for episode in reader.iter_shard(file_index, keep=keep):
            key = wanted.pop(episode.meta.index_in_file)
            yield key, episode, None
        for index, key in sorted(wanted.items()):
            yield key, None, "unreadable episode (see the skip report)"
