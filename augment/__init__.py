"""First frames (FLUX ControlNet), ORV rollouts, the job system and the ``orv-augment`` CLI.

Not built yet: see the augmentation-loop issue. Importing it fixes the import order.
"""

import orv_engine.import_order as _import_order

_import_order.load_torch_first()
