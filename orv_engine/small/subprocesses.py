"""The one way ``make reproduce-small`` runs its steps: commands side by side, each with a set
number of CPU threads, a failure of any one stopping the target (the small ORV's stages and the
small painter's alike)."""

from __future__ import annotations

import os
import subprocess


def run_parallel(commands: list[list[str]], threads_each: int = 1) -> None:
    """Run commands side by side (each with ``threads_each`` CPU threads); fail if any fails."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads_each), "MKL_NUM_THREADS": str(threads_each)}
    procs = [subprocess.Popen(c, env=env) for c in commands]
    try:
        codes = [p.wait() for p in procs]
    except BaseException:
        for p in procs:
            p.terminate()
        raise
    failed = [" ".join(c) for c, code in zip(commands, codes) if code]
    if failed:
        raise SystemExit(f"reproduce-small: failed: {'; '.join(failed)}")
