"""The one error type of the occupancy package, so callers can catch bad occupancy input.

It subclasses ``ValueError`` so generic input-checking code keeps working; messages always
name the offending field (``intrinsics``, ``depth``, ``cam_to_world``...).
"""

from __future__ import annotations


class OccupancyInputError(ValueError):
    """An array handed to the occupancy code has the wrong shape, dtype or content."""
