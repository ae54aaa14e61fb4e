"""VLM captioning and scoring (Qwen2.5-VL under vLLM, an OpenAI-compatible server, or
transformers), cheap checks, clip selection. See docs/filtering.md.

    from filtering.config import FilterConfig
    from filtering.scoring import FilterPipeline
    from filtering.selection import select

Importing it fixes the import order.
"""

import orv_engine.import_order as _import_order

_import_order.load_torch_first()
