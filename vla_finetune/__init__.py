"""RLDS export of kept clips, BridgeV2 mixtures, RoboVLM/SpatialVLA recipes, SimplerEnv.

Not built yet: see the export, policies and evaluation issues. Importing it fixes the
import order.
"""

import orv_engine.import_order as _import_order

_import_order.load_torch_first()
