"""ORV inference pipelines: first frame + actions (+ occupancy conditions) -> video."""

from orv_engine.pipelines.long_horizon import rollout
from orv_engine.pipelines.pipeline_orv import ORVPipeline, ORVPipelineOutput
from orv_engine.pipelines.video_io import save_mp4

__all__ = ["ORVPipeline", "ORVPipelineOutput", "rollout", "save_mp4"]
