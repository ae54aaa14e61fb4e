"""VP² visual-planning benchmark with the ORV world model (Tian et al., "A Control-Centric
Benchmark for Video Prediction", ICLR 2023): visual MPC (MPPI / CEM) on robosuite pushing and
RoboDesk tasks, scored by success rate and normalised by a planner that uses the simulator as
its model. See docs/vp2.md.

Nothing here imports robosuite/robodesk at import time: the planners, costs and world model
run in the project venv; the environments need the side venv (scripts/setup_vp2_venv.sh).
"""
