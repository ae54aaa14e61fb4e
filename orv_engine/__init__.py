"""ORV world model: data reading, occupancy, models, pipelines, training, simulation.

Importing the package fixes the torch/triton-before-TensorFlow import order
(see :mod:`orv_engine.import_order`).
"""

from orv_engine.import_order import load_torch_first as _load_torch_first

_load_torch_first()

__version__ = "0.1.0"
