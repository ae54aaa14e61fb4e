"""RLDS export of kept clips, BridgeV2 mixtures, RoboVLM/SpatialVLA recipes, SimplerEnv.

Built: the export (``clip_record.ExportClip`` -> ``export`` -> RLDS in BridgeV2's schema),
``mixture``/``merge`` with BridgeV2 and shared statistics, ``lerobot_export``, the
``orv-export`` CLI (docs/export.md). Policies and evaluation: see their issues. Importing
it fixes the import order.
"""

import orv_engine.import_order as _import_order

_import_order.load_torch_first()
