"""SimplerEnv-style evaluation of VLA policies on ManiSkill3 (paper Table 3, WidowX/Bridge).

``tasks`` names the four Bridge digital twins and the CI tasks, ``adapter`` turns a policy's
Bridge-convention action into the environment's controller action, ``episodes`` runs
episodes in a ManiSkill process, ``evaluate`` runs tasks, collects per-episode records and
writes the metrics table, bar chart and videos; ``cli`` is ``orv-simpler``.
"""
