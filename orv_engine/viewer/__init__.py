"""Viewers of the data the engine reads and writes (``orv-data view``: Rerun)."""
