"""Files that are either old or new after any crash: write to a temporary file beside the
target, fsync, rename. A rename is the one atomic file operation every filesystem (local,
NFS, Lustre) gives, so the resumable jobs (``orv-augment``, ``orv-occupancy``) write every
output and manifest this way and survive a SIGKILL at any moment."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write-to-temp, fsync, rename: the file is either old or new after any crash."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_partial_files(folder: Path) -> int:
    """Delete the temporary files a killed writer left in ``folder`` (recursively: hidden names
    with ``.tmp`` in them, as :func:`atomic_write_bytes` and numpy's ``.npz`` writers make); their count."""
    count = 0
    for tmp in Path(folder).rglob(".*.tmp*"):
        tmp.unlink(missing_ok=True)
        count += 1
    return count


def read_manifest_json(path: Path, expected_format: str, what: str, error: type[Exception] = ValueError) -> dict:
    """A JSON manifest written with :func:`atomic_write_text`, checked for its ``format`` key.

    Such a file is only ever replaced whole, so one that does not parse was edited by hand or
    the disk is failing: say so, naming the file (``error`` is the caller's error type)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise error(f"{path}: unreadable {what} manifest ({err}); it is only ever replaced atomically, so it "
                    "was changed by hand or the disk is failing") from None
    if not isinstance(data, dict) or data.get("format") != expected_format:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise error(f"{path}: not an {what} manifest (format {found!r})")
    return data
