"""The GPU-heavy per-unit stages (first frames, rollouts) on a Ray cluster.

One actor per GPU holds its model (FLUX + ControlNets, or the ORV pipeline) for the whole
stage; the driver hands out units with ``ray.util.ActorPool`` and is the only writer of the
manifest (actors write their unit outputs atomically to the shared run directory, exactly as
the local runner does, and return the seconds taken). The ``replay`` units' first frames (a
copy of a recorded frame, no model) are made by the driver. Everything else (sources,
scoring with vLLM's own tensor parallelism, the run-wide stages) runs in the driver as in
:class:`augment.runner.AugmentRun`. A killed driver resumes like a local run.

    ray start --head --num-gpus 8            # on each node (workers: --address HEAD:6379)
    orv-augment run --config run.yaml --run-dir /shared/runs/x --ray auto

The run directory must be on a filesystem every node sees.
"""

from __future__ import annotations

import time

from augment.config import config_from_dict
from augment.manifest import FAILED
from augment.models import make_generator, make_painter, painter_ids
from augment.replay import is_replay
from augment.runner import STAGE_STATES, AugmentRun
from augment.unit_work import first_frame_unit, replay_first_frame, rollout_unit
from orv_engine.console import is_verbose, quiet


class _UnitWorker:
    """Ray actor body: loads one stage's model once, then does units of that stage."""

    def __init__(self, config_dict: dict, run_dir: str, stage: str, verbose: bool = False):
        # the driver's --verbose choice: an actor on another node does not inherit its environment
        quiet(verbose)
        self.config = config_from_dict(config_dict)
        self.run_dir = run_dir
        self.stage = stage
        self.model = make_painter(self.config) if stage == "first_frames" else make_generator(self.config)
        self.painter_ids = painter_ids(self.config)

    def work(self, unit_id: str, unit: dict):
        try:
            if self.stage == "first_frames":
                return unit_id, first_frame_unit(lambda: self.model, self.config, self.run_dir, unit_id, unit), None
            return unit_id, rollout_unit(self.model, self.painter_ids, self.config, self.run_dir, unit_id, unit), None
        except (ValueError, KeyError, FileNotFoundError, RuntimeError) as err:
            return unit_id, None, f"{self.stage}: {type(err).__name__}: {err}"


class RayAugmentRun(AugmentRun):
    def __init__(self, *args, address: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.address = address

    def _ray(self):
        import ray  # noqa: PLC0415  (optional and heavy: only --ray runs load it)

        if not ray.is_initialized():
            if self.address:
                ray.init(address=self.address, log_to_driver=False)
            else:
                ray.init(num_cpus=max(1, int(self.config.ray.num_cpus_per_actor * self._num_actors(None))),
                         include_dashboard=False, log_to_driver=False)
        return ray

    def _num_actors(self, ray) -> int:
        rc = self.config.ray
        if rc.num_actors:
            return rc.num_actors
        if ray is None or rc.num_gpus_per_actor <= 0:
            return 1
        return max(1, int(ray.cluster_resources().get("GPU", 0) // rc.num_gpus_per_actor))

    def _on_ray(self, stage: str, only=None) -> None:
        after = STAGE_STATES[stage][1]
        todo = self._todo(stage, only)
        if not todo:
            return
        ray = self._ray()
        from ray.util import ActorPool  # noqa: PLC0415  (ray: see _ray)

        rc = self.config.ray
        actor_cls = ray.remote(num_gpus=rc.num_gpus_per_actor, num_cpus=rc.num_cpus_per_actor)(_UnitWorker)
        count = min(self._num_actors(ray), len(todo))
        actors = [actor_cls.remote(self.config.to_dict(), str(self.run_dir), stage, is_verbose()) for _ in range(count)]
        pool = ActorPool(actors)
        start = time.perf_counter()
        with self._bar(len(todo), f"{stage} (ray x{count})") as bar:
            jobs = ((u, self.manifest.units[u]) for u in todo)
            for unit_id, seconds, error in pool.map_unordered(lambda a, job: a.work.remote(*job), jobs):
                if error is None:
                    self.manifest.set_state(unit_id, after, seconds)
                else:
                    self.manifest.set_state(unit_id, FAILED, error=error)
                    self.log(f"unit {unit_id} failed: {error}")
                bar.update(1)
        for actor in actors:
            ray.kill(actor)
        self.state.add_time(stage, time.perf_counter() - start, len(todo))

    def run_first_frames(self) -> None:
        # replay units copy a recorded frame (no model): here, not on an actor
        self._unit_stage("first_frames", lambda u, rec: replay_first_frame(self.run_dir, u, rec), only=is_replay)
        self._on_ray("first_frames", only=lambda rec: not is_replay(rec))

    def run_rollouts(self) -> None:
        self._on_ray("rollouts")
