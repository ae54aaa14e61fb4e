"""Where a benchmark's ``--json PATH`` goes: one writer for every benchmark script."""

from __future__ import annotations

import json
from pathlib import Path


def write_figures(result: dict, path: str | Path, indent: int = 2) -> Path:
    """``result`` as JSON at ``path`` (parents made), said on stdout."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=indent) + "\n")
    print(f"figures written to {path}")
    return path
