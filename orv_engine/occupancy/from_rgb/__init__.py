"""4D semantic occupancy from RGB video (the paper's ORV-Data pipeline, Sec. 3.3 and
supplementary 10.1) for datasets without depth or cameras (BridgeV2, RT-1):

    depth (Depth Pro / Depth Anything V2)  ->  camera (static per episode)
    objects (a VLM lists them on keyframes; MiniLM + K-means -> the dataset's label set)
    instances (SAM3 video / Grounding DINO + SAM2 video, text-prompted, tracked)
    -> points -> voxels -> Occupancy4D  (orv_engine.occupancy.from_rgb.pipeline)

Each stage is a module with a small interface and a well-kept model behind it; weights come
from local folders. ``orv-occupancy`` (orv_engine.occupancy.store_cli) runs it over a dataset.
"""
