"""Simulated tabletop episodes with ManiSkill3 (the sim-to-real source, ORV-S2R).

``mani_skill`` is imported lazily (by ``tabletop_env``), so ``orv_engine.sim.assets`` can set
``MS_ASSET_DIR`` first.
"""
