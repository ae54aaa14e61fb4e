"""``orv-occupancy``'s work: a dataset -> its occupancy store, resumable and shardable.

Three passes, each resumed from the shard manifest (``store.StoreManifest``):

1. **listing** (only when the label set comes from a VLM): the VLM lists the objects on each
   episode's keyframes (``from_rgb.object_labels.ObjectLister``, the paper's prompt).
2. **label set**: all shards' listings -> MiniLM + K-means -> ``STORE/label_set.json`` (or the
   configured names / file). With ``--shard i/n`` every shard must have finished its listing
   first; the pass says which have not and stops, and the next run of any shard goes on.
3. **occupancy**: per episode, depth -> camera -> instances -> voxels -> RAFT consistency
   (``from_rgb.pipeline``), written to ``STORE/episodes/KEY/``. An episode that cannot be
   built is skipped with its reason (counted, listed in the report); one whose rendered maps
   flicker beyond ``consistency.max_error`` is written and flagged.

Models load once per pass. A SIGKILL at any moment loses at most the episode in flight: its
files are written atomically before the manifest records it, and a resume checks the files.
"""

from __future__ import annotations

import json
import sys
import time

from tqdm import tqdm

from orv_engine.atomic_files import atomic_write_text, remove_partial_files
from orv_engine.config_validation import ConfigError
from orv_engine.data.errors import DatasetError, SkipReport
from orv_engine.data.rlds_reader import RLDSReader
from orv_engine.data.sharding import episode_key, iter_shard_episodes, owner_shard
from orv_engine.occupancy.errors import OccupancyInputError
from orv_engine.occupancy.from_rgb.pipeline import consistency_score, occupancy_from_video
from orv_engine.occupancy.labels import LabelSet, normalise_label
from orv_engine.occupancy.store.config import OccupancyJobConfig, check_job
from orv_engine.occupancy.store.store import DONE, FLAGGED, LISTED, SKIPPED, STORE_FORMAT, OccupancyStore, StoreManifest

# what a bad episode may raise and still be skipped (anything else is a bug and stops the job)
EPISODE_ERRORS = (OccupancyInputError, DatasetError, ValueError)


class OccupancyJob:
    def __init__(self, config: OccupancyJobConfig, store_root, shard: tuple[int, int] = (0, 1),
                 progress: bool = True, log=print):
        check_job(config)
        self.config = config
        self.store = OccupancyStore(store_root)
        self.shard = shard
        self.progress = progress
        self.log = log
        self.store.root.mkdir(parents=True, exist_ok=True)
        self._check_same_config()
        remove_partial_files(self.store.root)
        self.manifest = StoreManifest(self.store.root, shard)
        self.read_report = SkipReport()

    def _check_same_config(self) -> None:
        """A store belongs to one config: resuming with another would mix occupancies."""
        path = self.store.root / "store.json"
        current = {"format": STORE_FORMAT, "config": self.config.to_dict()}
        if path.exists():
            saved = json.loads(path.read_text())
            if saved.get("format") != STORE_FORMAT:
                raise ConfigError(f"{path}: not an occupancy store (format {saved.get('format')!r})")
            keep = ("dataset", "depth", "segmenter", "labels", "voxel_size")
            differ = [k for k in keep if saved["config"].get(k) != current["config"].get(k)]
            if differ:
                raise ConfigError(f"{self.store.root} holds a store built with another config (differs in: "
                                  f"{', '.join(differ)}); use a new --store, or delete it to start over")
        else:
            atomic_write_text(path, json.dumps(current, indent=1))

    # -- episodes -------------------------------------------------------------------------
    def _reader(self, report: SkipReport | None = None) -> RLDSReader:
        ds = self.config.dataset
        return RLDSReader(ds.path, dataset=ds.dataset, split=ds.split, cameras=[ds.camera] if ds.camera else None,
                          on_bad="skip", report=report)

    def _episodes(self, done: set[str]):
        reader = self._reader(self.read_report)
        self.camera = reader.cameras[0]
        steps = self.config.dataset.max_steps
        for key, episode, reason in iter_shard_episodes(reader, self.shard, done, self.config.dataset.max_episodes):
            yield key, (episode.first_steps(steps) if episode is not None and steps else episode), reason

    def _count(self) -> int:
        """This shard's episode count, for the progress bar's ETA (from the split's shard lengths)."""
        reader = self._reader()
        lengths = reader.builder.info.splits[reader.split].shard_lengths
        limit, seen, count = self.config.dataset.max_episodes, 0, 0
        for file, length in zip(reader.files, lengths):
            for index in range(length):
                if limit is not None and seen >= limit:
                    return count
                seen += 1
                count += owner_shard(episode_key(file, index), self.shard[1]) == self.shard[0]
        return count

    def _bar(self, total: int, desc: str):
        return tqdm(total=total, desc=desc, unit="episode", disable=not self.progress or total == 0,
                    file=sys.stderr, dynamic_ncols=True)

    # -- 1. listing -----------------------------------------------------------------------
    def run_listing(self, batch_episodes: int = 8) -> None:
        if not self.config.needs_vlm or self.manifest.data.get("listing_done"):
            return
        from filtering.backends import make_backend  # lazy: a VLM stack
        from orv_engine.occupancy.from_rgb.object_labels import ObjectLister

        lister = ObjectLister(make_backend(self.config.labels.filter_config()), keyframes=self.config.labels.keyframes)
        done = {k for k, r in self.manifest.episodes.items() if r.get("status") in (LISTED, DONE, FLAGGED, SKIPPED)}
        pending: dict[str, object] = {}
        with self._bar(self._count() - len(done), "listing objects") as bar:
            def flush():
                frames = {key: ep.frames[self.camera] for key, ep in pending.items()}
                for key, objects in lister.list_objects(frames).items():
                    self.manifest.update(key, episode_id=pending[key].meta.episode_id, status=LISTED,
                                         objects=objects.names, objects_error=objects.error)
                bar.update(len(pending))
                pending.clear()

            for key, episode, reason in self._episodes(done):
                if episode is None:
                    self.manifest.update(key, status=SKIPPED, reason=reason, stage="read")
                    bar.update(1)
                    continue
                pending[key] = episode
                if len(pending) >= batch_episodes:
                    flush()
            if pending:
                flush()
        self.manifest.data["listing_done"] = True
        self.manifest.save()

    # -- 2. label set ---------------------------------------------------------------------
    def run_label_set(self) -> LabelSet | None:
        labels = self.config.labels
        if self.config.segmenter.kind == "recorded" and labels.names is None and labels.label_set is None:
            return None  # the episodes' own label names
        if self.store.label_set_path.is_file():
            return self.store.label_set()
        if labels.names is not None:
            names = tuple(dict.fromkeys(normalise_label(n) for n in labels.names if str(n).strip()))
            label_set = LabelSet(names, {n: i for i, n in enumerate(names)})
        elif labels.label_set:
            label_set = LabelSet.load(labels.label_set)
        else:
            manifests = self.store.manifests()
            finished = {tuple(m["shard"]) for m in manifests if m.get("listing_done")}
            waiting = [f"{i}/{self.shard[1]}" for i in range(self.shard[1]) if (i, self.shard[1]) not in finished]
            if waiting:
                raise ShardsPending(f"label set: shard(s) {', '.join(waiting)} have not listed their objects yet; "
                                    "run them, then rerun any shard to build the label set and go on")
            from orv_engine.occupancy.from_rgb.object_labels import EpisodeObjects, dataset_label_set

            objects = {k: EpisodeObjects(k, r.get("objects") or [], r.get("objects_error"))
                       for k, r in self.store.records().items() if r.get("status") != SKIPPED}
            label_set = dataset_label_set(objects, labels.num_clusters, labels.minilm_path)
        label_set.save(self.store.label_set_path)  # shards racing here write the same file
        return label_set

    def _class_names(self, record: dict, label_set: LabelSet | None) -> list[str]:
        if label_set is None:
            return []
        if not self.config.needs_vlm:
            return list(label_set.names)
        from orv_engine.occupancy.from_rgb.object_labels import EpisodeObjects, episode_class_names

        return episode_class_names(EpisodeObjects(record.get("episode_id", ""), record.get("objects") or []), label_set)

    # -- 3. occupancy ---------------------------------------------------------------------
    def _models(self):
        depth = segmenter = raft = None
        c = self.config
        if c.depth.kind != "recorded":
            from orv_engine.occupancy.from_rgb.depth import load_depth_estimator

            depth = load_depth_estimator(c.depth.model_path, kind=c.depth.kind, device=c.device)
            if hasattr(depth, "target_median"):
                depth.target_median = c.depth.target_median
        if c.segmenter.kind != "recorded":
            from orv_engine.occupancy.from_rgb.instances import GroundedSam2VideoSegmenter, Sam3VideoSegmenter

            s = c.segmenter
            if s.kind == "sam3_video":
                segmenter = Sam3VideoSegmenter(s.model_path, c.device, s.score_threshold)
            else:
                segmenter = GroundedSam2VideoSegmenter(s.grounding_dino_path, s.sam2_path, c.device, s.box_threshold,
                                                       s.text_threshold, s.keyframe)
        if c.consistency.raft_weights:
            from orv_engine.occupancy.consistency import RaftConsistency

            raft = RaftConsistency(c.consistency.raft_weights, c.consistency.raft_variant, c.device)
        return depth, segmenter, raft

    def _redo(self) -> set[str]:
        """Keys recorded as done whose files are gone (a deleted or copied-over folder)."""
        return {k for k, r in self.manifest.episodes.items()
                if r.get("status") in (DONE, FLAGGED) and not self.store.has_episode(k)}

    def run_occupancy(self, label_set: LabelSet | None) -> None:
        redo = self._redo()
        if redo:
            self.log(f"orv-occupancy: {len(redo)} episode(s) recorded as done have no files; redoing "
                     f"{', '.join(sorted(redo)[:5])}{' ...' if len(redo) > 5 else ''}")
        done = {k for k, r in self.manifest.episodes.items() if r.get("status") in (DONE, FLAGGED, SKIPPED)} - redo
        todo = self._count() - len(done)
        if todo <= 0:
            return
        depth, segmenter, raft = self._models()
        c = self.config
        label_names = None if label_set is None else label_set.names
        with self._bar(todo, "occupancy") as bar:
            for key, episode, reason in self._episodes(done):
                if episode is None:
                    self.manifest.update(key, status=SKIPPED, reason=reason, stage="read")
                    bar.update(1)
                    continue
                record = self.manifest.episodes.get(key, {})
                start = time.perf_counter()
                try:
                    class_names = self._class_names(record, label_set)
                    if segmenter is not None and not class_names:
                        raise OccupancyInputError(
                            f"episode {episode.meta.episode_id}: no object class to segment "
                            f"({record.get('objects_error') or 'the VLM listed nothing in the label set'})")
                    result = occupancy_from_video(episode, self.camera, depth, segmenter, class_names, label_names,
                                                  c.voxel_size)
                    flagged = False
                    if raft is not None:
                        clock = time.perf_counter()
                        result.consistency = consistency_score(result, raft, c.consistency.size,
                                                               c.consistency.max_frames)
                        result.seconds["consistency"] = time.perf_counter() - clock
                        flagged = not result.consistency.keep(c.consistency.max_error)
                    self.store.write_episode(key, episode.meta.episode_id, result, flagged)
                    score = None if result.consistency is None else round(result.consistency.score, 5)
                    self.manifest.update(key, episode_id=episode.meta.episode_id, status=FLAGGED if flagged else DONE,
                                         reason=f"consistency {score} > {c.consistency.max_error}" if flagged else None,
                                         consistency=score, steps=len(episode), sources=result.sources,
                                         seconds={k: round(v, 3) for k, v in result.seconds.items()},
                                         total_seconds=round(time.perf_counter() - start, 3))
                except EPISODE_ERRORS as err:
                    self.manifest.update(key, episode_id=episode.meta.episode_id, status=SKIPPED, stage="occupancy",
                                         reason=f"{type(err).__name__}: {err}")
                bar.update(1)

    # -- all ------------------------------------------------------------------------------
    def run(self, report: bool = True) -> dict:
        self.run_listing()
        label_set = self.run_label_set()
        self.run_occupancy(label_set)
        self.manifest.save()  # a shard that owns no episode still says it ran
        if report:
            from orv_engine.occupancy.store.report import write_report

            write_report(self.store, self.config)
        return summary(self.store)


class ShardsPending(RuntimeError):
    """The label set needs every shard's object listing; some shards have not finished it."""


def summary(store: OccupancyStore) -> dict:
    """Counts by status, skip reasons and consistency scores over every shard."""
    records = store.records()
    counts: dict[str, int] = {}
    for record in records.values():
        counts[record.get("status", "?")] = counts.get(record.get("status", "?"), 0) + 1
    skipped = {k: r.get("reason") for k, r in records.items() if r.get("status") in (SKIPPED, FLAGGED)}
    scores = [r["consistency"] for r in records.values() if r.get("consistency") is not None]
    return {"episodes": len(records), "counts": counts, "skipped": skipped, "consistency": scores,
            "label_set": None if not store.label_set_path.is_file() else list(store.label_set().names)}


def _ray_pass(config_dict: dict, store_root: str, shard: tuple[int, int], what: str) -> dict:
    """One shard's listing or occupancy pass, in a Ray worker process."""
    from orv_engine.occupancy.store.config import job_config_from_dict

    job = OccupancyJob(job_config_from_dict(config_dict), store_root, shard, progress=False)
    if what == "listing":
        job.run_listing()
    else:
        job.run_occupancy(job.store.label_set())
    job.manifest.save()  # a shard that owns no episode still says it ran
    return {"shard": list(shard), "episodes": len(job.manifest.episodes)}


def run_with_ray(config: OccupancyJobConfig, store_root, workers: int, address: str | None = None,
                 num_gpus_per_worker: float = 0.0, log=print) -> dict:
    """Every shard of ``workers`` as a Ray task: all listings, the label set in the driver, then
    all occupancy passes. The store must be on a filesystem every node sees; a killed driver
    resumes like a local run (each shard's manifest)."""
    import ray  # lazy: optional and heavy

    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False) if address else ray.init(num_cpus=workers, log_to_driver=False)
    task = ray.remote(num_gpus=num_gpus_per_worker)(_ray_pass)
    config_dict = config.to_dict()
    shards = [(i, workers) for i in range(workers)]
    driver = OccupancyJob(config, store_root, (0, workers), progress=False, log=log)
    if config.needs_vlm:
        ray.get([task.remote(config_dict, str(store_root), s, "listing") for s in shards])
    label_set = driver.run_label_set()
    del label_set  # the workers read it from the store
    ray.get([task.remote(config_dict, str(store_root), s, "occupancy") for s in shards])
    from orv_engine.occupancy.store.report import write_report

    write_report(driver.store, config)
    return summary(driver.store)
