"""ManiSkill3 asset folders: where they are, and a clear error when one is missing.

ManiSkill reads ``MS_ASSET_DIR`` once, when ``mani_skill`` is first imported, so the folder
is set here before that import. Its downloader leaves an empty folder behind after a failed
download, and later runs then fail deep inside URDF loading; such empty folders are removed
here and the user is told the exact download command instead.
"""

from __future__ import annotations

import os
from pathlib import Path

# uid -> (file that must exist, relative to MS_ASSET_DIR/data; ManiSkill's download id)
ROBOT_ASSETS = {
    "widowx250s": ("robots/widowx/wx250s.urdf", "widowx250s"),
    "widowx250s_bridgedataset_flat_table": ("robots/widowx/wx250s.urdf", "widowx250s"),
    "orv_widowx250s": ("robots/widowx/wx250s.urdf", "widowx250s"),
    "bridge_v2_real2sim": ("tasks/bridge_v2_real2sim_dataset/custom/info_bridge_custom_v0.json", "bridge_v2_real2sim"),
}


# what this project's tests use instead of a download (named in the error, for harness checks)
TEST_STAND_INS = {
    "widowx250s": " (this project's tests use MS_ASSET_DIR=../shared/data/maniskill for the WidowX)",
    "bridge_v2_real2sim": (" (for harness checks only, a format twin with stand-in meshes: python -m "
                           "orv_engine.testing.bridge_real2sim_assets DIR ../shared/data/bridge_real --robot-dir "
                           "../shared/data/maniskill/data/robots/widowx)"),
}


class SimAssetError(FileNotFoundError):
    """A ManiSkill asset is not on this machine."""


def default_asset_dir() -> Path:
    """ManiSkill's ``MS_ASSET_DIR`` (its data lives in ``<MS_ASSET_DIR>/data``)."""
    return Path(os.environ.get("MS_ASSET_DIR", Path.home() / ".maniskill")).expanduser()


def _remove_empty_dirs(folder: Path, stop: Path) -> None:
    """Remove ``folder`` and its empty parents up to ``stop`` if they hold no files."""
    while folder.is_dir() and folder != stop and not any(p.is_file() for p in folder.rglob("*")):
        for sub in sorted(folder.rglob("*"), reverse=True):
            sub.rmdir()
        folder.rmdir()
        folder = folder.parent


def require_asset(uid: str, asset_dir: str | Path | None = None) -> Path:
    """Return the asset file for ``uid`` or raise :class:`SimAssetError` naming the command."""
    if uid not in ROBOT_ASSETS:
        return Path()
    relative, download_id = ROBOT_ASSETS[uid]
    root = Path(asset_dir).expanduser() if asset_dir else default_asset_dir()
    target = root / "data" / relative
    if target.is_file():
        return target
    _remove_empty_dirs(target.parent, root / "data")
    hint = TEST_STAND_INS.get(download_id, "")
    raise SimAssetError(
        f"ManiSkill asset '{download_id}' not found (looked for {target}). Download it with\n"
        f"    MS_ASSET_DIR={root} python -m mani_skill.utils.download_asset {download_id}\n"
        f"or point MS_ASSET_DIR at a folder that has it{hint}."
    )
