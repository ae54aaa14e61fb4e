"""Simulated tabletop episodes with ManiSkill3 (the sim-to-real source, ORV-S2R).

``mani_skill`` (the ``sim`` extra) loads only in a simulator process: ``tabletop_env`` and
``recorder`` import it at their top, and only code that runs there imports them
(``generate.make_env`` and the process ``generate.record_episodes`` spawns).
"""
