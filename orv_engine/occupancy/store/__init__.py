"""A dataset's occupancy store (``orv-occupancy``): the job (``job``), its config
(``config``), the on-disk layout and reader (``store``), and its report (``report``)."""

from orv_engine.occupancy.store.store import OccupancyStore

__all__ = ["OccupancyStore"]
