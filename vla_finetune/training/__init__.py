"""Post-finetuning of VLA policies (RoboVLM, SpatialVLA) on RLDS mixtures with accelerate."""
