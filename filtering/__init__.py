"""VLM captioning and scoring (Qwen2.5-VL under vLLM), cheap checks, clip selection.

Not built yet: see the filtering issue. Importing it fixes the import order.
"""

import orv_engine.import_order as _import_order

_import_order.load_torch_first()
