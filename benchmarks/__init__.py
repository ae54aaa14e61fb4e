"""Speed and quality benchmarks. Each module is a script that prints its figures:

    python -m benchmarks.loader_benchmark

Library code never imports this package.
"""

import orv_engine.import_order as _import_order

_import_order.load_torch_first()
