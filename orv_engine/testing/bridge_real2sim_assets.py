"""A format twin of ManiSkill3's ``bridge_v2_real2sim`` assets: SimplerEnv's Bridge scenes.

Why: ``PutSpoonOnTableClothInScene-v1``, ``PutCarrotOnPlateInScene-v1``,
``StackGreenCubeOnYellowCubeBakedTexInScene-v1`` and ``PutEggplantInBasketScene-v1`` need the
``bridge_v2_real2sim`` download (a HuggingFace zip), which cannot be had on this machine, so
without a twin CI never creates them. This module writes stand-in assets in exactly the
layout and formats the installed loader reads, so the real environment classes (their
``obs_mode``, configurations, green screen, success/grasp logic) run unchanged.

What the loader reads (``mani_skill/envs/tasks/digital_twins/bridge_dataset_eval/base_env.py``,
ManiSkill 3.0.1), all under ``<MS_ASSET_DIR>/data/tasks/bridge_v2_real2sim_dataset/``:

- ``stages/bridge_table_1_v1.glb`` (flat table) and ``stages/bridge_table_1_v2.glb`` (sink):
  the arena, loaded as visual *and* non-convex collision, placed with
  ``Pose(p=[2.0634, 2.8313, 0], q=[0.707, 0.707, 0, 0])`` (a y-up glTF turned z-up);
- ``real_inpainting/bridge_real_eval_1.png`` / ``bridge_sink.png``: the real first frames the
  green screen pastes over every pixel whose segmentation is not the robot or an object the
  task keeps (``digital_twins/base_env.py``, ``_green_sceen_rgb``);
- ``custom/info_bridge_custom_v0.json`` (``info_bridge_custom_baked_tex_v0.json`` for the
  cubes): per model id ``bbox`` {``min``, ``max``} (required: success compares the source's
  offset with it), ``scales`` (a list the scene samples from; a model without one crashes the
  loader) and ``density``;
- ``custom/models/<id>/collision.obj`` (``add_multiple_convex_collisions_from_file``: every
  mesh in the file becomes one convex piece) and the first of ``textured.obj``,
  ``textured.dae``, ``textured.glb`` that exists (visual).

The ids, bounding boxes, scales and densities are those of SimplerEnv's
``ManiSkill2_real2sim/data/custom/info_bridge_custom_v0.json``; the meshes are boxes of
those bounding boxes (the sink a five-piece basin), the stages one table box at the real
table height (objects are placed at z 0.87-0.93 m by the tasks). The flat-table models get
``textured.obj`` + ``.mtl`` visuals, the baked cubes ``textured.glb``, so two of the
loader's three visual branches run. The robot is the real ``widowx250s`` description
(linked from ``robot_dir``) and the overlays are the real images. Geometry, and so success
rates, mean nothing; the formats, paths and keys are the real ones.

    python -m orv_engine.testing.bridge_real2sim_assets OUT_DIR ../shared/data/bridge_real \\
        --robot-dir ../shared/data/maniskill/data/robots/widowx
    MS_ASSET_DIR=OUT_DIR orv-simpler --policy scripted --suite bridge --episodes 2 --out eval/
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
from pathlib import Path

import numpy as np

TASK_DIR = "data/tasks/bridge_v2_real2sim_dataset"  # relative to MS_ASSET_DIR (the zip's target_path)
OVERLAYS = ("bridge_real_eval_1.png", "bridge_sink.png")
# base_env.py places every stage with this pose: world = R_x(90 deg) @ p + offset
STAGE_OFFSET = np.array([2.0634, 2.8313, 0.0])

# model id -> (info json, bbox half extents in m, density, RGB in [0, 1]); boxes from
# ManiSkill2_real2sim's info_bridge_custom_v0.json / info_bridge_custom_baked_tex_v0.json
MODELS = {
    "bridge_carrot_generated_modified": ("info_bridge_custom_v0.json", (0.0575, 0.016, 0.019), 700, (0.95, 0.45, 0.05)),
    "bridge_plate_objaverse_larger": ("info_bridge_custom_v0.json", (0.055, 0.055, 0.003), 1000, (0.9, 0.9, 0.85)),
    "bridge_spoon_generated_modified": ("info_bridge_custom_v0.json", (0.07, 0.0173, 0.013021), 1200, (0.7, 0.7, 0.75)),
    "table_cloth_generated_shorter": ("info_bridge_custom_v0.json", (0.05, 0.05, 0.005), 330, (0.2, 0.3, 0.8)),
    "eggplant": ("info_bridge_custom_v0.json", (0.03915, 0.0187, 0.019), 400, (0.35, 0.1, 0.45)),
    "sink": ("info_bridge_custom_v0.json", (0.1345, 0.1965, 0.0575), 100000, (0.75, 0.75, 0.78)),
    "dummy_sink_target_plane": ("info_bridge_custom_v0.json", (0.065, 0.04, 0.001), 100000, (1.0, 0.9, 0.1)),
    "baked_green_cube_3cm": ("info_bridge_custom_baked_tex_v0.json", (0.015, 0.015, 0.015), 1000, (0.1, 0.7, 0.2)),
    "baked_yellow_cube_3cm": ("info_bridge_custom_baked_tex_v0.json", (0.015, 0.015, 0.015), 1000, (0.95, 0.85, 0.1)),
}
GLB_VISUALS = ("baked_green_cube_3cm", "baked_yellow_cube_3cm")
# the real sink's bbox runs from z = 0 (its base, at the actor's origin) to 0.115 m
SINK_WALL = 0.01

# stage -> (table-top height in world metres, RGB): v1 under the flat-table tasks (objects
# rest at z ~0.87; the plate, 6 mm thick, is placed with its centre at 0.8695: a higher top
# swallows it and it falls through), v2 under the sink (the robot base sits at z 0.85)
STAGES = {"bridge_table_1_v1.glb": (0.864, (0.55, 0.45, 0.35)), "bridge_table_1_v2.glb": (0.85, (0.6, 0.6, 0.6))}


def _box(center, half) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(24 vertices, 24 normals, 12 triangles) of an axis-aligned box with flat faces."""
    center, half = np.asarray(center, float), np.asarray(half, float)
    vertices, normals, faces = [], [], []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            u, v = [a for a in range(3) if a != axis]
            corners = []
            for cu, cv in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                p = np.zeros(3)
                p[axis], p[u], p[v] = sign, cu, cv
                corners.append(center + p * half)
            normal = np.zeros(3)
            normal[axis] = sign
            base = len(vertices)
            vertices += corners
            normals += [normal] * 4
            # counter-clockwise seen from outside
            tri = [(0, 1, 2), (0, 2, 3)]
            if np.dot(np.cross(corners[1] - corners[0], corners[2] - corners[0]), normal) < 0:
                tri = [(0, 2, 1), (0, 3, 2)]
            faces += [(base + a, base + b, base + c) for a, b, c in tri]
    return np.array(vertices), np.array(normals), np.array(faces)


def _boxes(model_id: str) -> list[tuple]:
    """The pieces of one model, in its own frame (each becomes one convex collision shape)."""
    half = MODELS[model_id][1]
    if model_id != "sink":
        return [_box((0, 0, 0), half)]
    hx, hy, hz = half  # a basin: floor and four walls, base at z = 0 like the real sink
    w = SINK_WALL
    return [_box((0, 0, w / 2), (hx, hy, w / 2)),
            _box((-hx + w / 2, 0, hz), (w / 2, hy, hz)), _box((hx - w / 2, 0, hz), (w / 2, hy, hz)),
            _box((0, -hy + w / 2, hz), (hx, w / 2, hz)), _box((0, hy - w / 2, hz), (hx, w / 2, hz))]


def write_obj(path: Path, pieces: list[tuple], rgb=None) -> Path:
    """Wavefront OBJ, one ``o`` object per piece (assimp reads each as its own mesh)."""
    lines = []
    if rgb is not None:
        mtl = path.with_suffix(".mtl")
        mtl.write_text(f"newmtl material_0\nKd {rgb[0]:.4f} {rgb[1]:.4f} {rgb[2]:.4f}\nKa 0 0 0\nKs 0 0 0\nd 1\n")
        lines += [f"mtllib {mtl.name}"]
    offset = 1
    for i, (vertices, normals, faces) in enumerate(pieces):
        lines.append(f"o piece_{i}")
        if rgb is not None:
            lines.append("usemtl material_0")
        lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
        lines += [f"vn {x:.6f} {y:.6f} {z:.6f}" for x, y, z in normals]
        lines += [f"f {a + offset}//{a + offset} {b + offset}//{b + offset} {c + offset}//{c + offset}"
                  for a, b, c in faces]
        offset += len(vertices)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_glb(path: Path, pieces: list[tuple], rgb) -> Path:
    """Binary glTF 2.0: one mesh (a primitive per piece) with one PBR base colour."""
    binary, buffer_views, accessors, primitives = b"", [], [], []

    def add(array: np.ndarray, component: int, kind: str, target: int, bounds: bool = False) -> int:
        nonlocal binary
        data = array.tobytes()
        buffer_views.append({"buffer": 0, "byteOffset": len(binary), "byteLength": len(data), "target": target})
        binary += data + b"\0" * (-len(data) % 4)  # 4-byte alignment of every view
        accessor = {"bufferView": len(buffer_views) - 1, "componentType": component, "count": len(array), "type": kind}
        if bounds:
            accessor["min"], accessor["max"] = array.min(0).tolist(), array.max(0).tolist()
        accessors.append(accessor)
        return len(accessors) - 1

    for vertices, normals, faces in pieces:
        position = add(vertices.astype(np.float32), 5126, "VEC3", 34962, bounds=True)
        normal = add(normals.astype(np.float32), 5126, "VEC3", 34962)
        index = add(faces.astype(np.uint32).reshape(-1), 5125, "SCALAR", 34963)
        primitives.append({"attributes": {"POSITION": position, "NORMAL": normal}, "indices": index, "material": 0})
    gltf = {"asset": {"version": "2.0", "generator": "orv_engine.testing.bridge_real2sim_assets"},
            "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
            "meshes": [{"primitives": primitives}],
            "materials": [{"pbrMetallicRoughness": {"baseColorFactor": [*map(float, rgb), 1.0],
                                                    "metallicFactor": 0.0, "roughnessFactor": 0.8}}],
            "buffers": [{"byteLength": len(binary)}], "bufferViews": buffer_views, "accessors": accessors}
    text = json.dumps(gltf, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    chunks = struct.pack("<II", len(text), 0x4E4F534A) + text + struct.pack("<II", len(binary), 0x004E4942) + binary
    path.write_bytes(struct.pack("<III", 0x46546C67, 2, 12 + len(chunks)) + chunks)
    return path


def _stage_pieces(table_top: float) -> list[tuple]:
    """The table box (world x -0.7..0.5, y -0.6..0.6, 7 cm thick) in the stage file's frame."""
    vertices, normals, faces = _box((-0.1, 0.0, table_top - 0.035), (0.6, 0.6, 0.035))
    # invert world = R_x(90) @ p + STAGE_OFFSET: p = R_x(-90) @ (world - offset), (x, y, z) -> (x, z, -y)
    to_file = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], float)
    return [((vertices - STAGE_OFFSET) @ to_file.T, normals @ to_file.T, faces)]


def write_bridge_real2sim_assets(asset_dir, overlay_dir, robot_dir=None) -> Path:
    """Write the twin under ``asset_dir`` (use it as ``MS_ASSET_DIR``); return the task folder.

    ``overlay_dir`` holds the real ``bridge_real_eval_1.png`` and ``bridge_sink.png``
    (``../shared/data/bridge_real``); ``robot_dir`` a ``widowx250s`` robot folder
    (``wx250s.urdf``), linked to ``<asset_dir>/data/robots/widowx`` (copied where links fail).
    """
    asset_dir, overlay_dir = Path(asset_dir), Path(overlay_dir)
    root = asset_dir / TASK_DIR
    for name in OVERLAYS:
        if not (overlay_dir / name).is_file():
            raise FileNotFoundError(f"real overlay image {overlay_dir / name} not found")
    (root / "real_inpainting").mkdir(parents=True, exist_ok=True)
    for name in OVERLAYS:
        shutil.copyfile(overlay_dir / name, root / "real_inpainting" / name)
    (root / "stages").mkdir(exist_ok=True)
    for name, (table_top, rgb) in STAGES.items():
        write_glb(root / "stages" / name, _stage_pieces(table_top), rgb)
    infos: dict[str, dict] = {}
    for model_id, (info_name, half, density, rgb) in MODELS.items():
        folder = root / "custom" / "models" / model_id
        folder.mkdir(parents=True, exist_ok=True)
        pieces = _boxes(model_id)
        write_obj(folder / "collision.obj", pieces)
        if model_id in GLB_VISUALS:
            write_glb(folder / "textured.glb", pieces, rgb)
        else:
            write_obj(folder / "textured.obj", pieces, rgb)
        low = [-half[0], -half[1], 0.0] if model_id == "sink" else [-h for h in half]
        high = [half[0], half[1], 2 * half[2]] if model_id == "sink" else list(half)
        infos.setdefault(info_name, {})[model_id] = {"bbox": {"min": low, "max": high}, "scales": [1.0],
                                                      "density": density}
    for info_name, models in infos.items():
        (root / "custom" / info_name).write_text(json.dumps(models, indent=2))
    if robot_dir is not None:
        robot_dir = Path(robot_dir).resolve()
        if not (robot_dir / "wx250s.urdf").is_file():
            raise FileNotFoundError(f"no widowx250s robot (wx250s.urdf) in {robot_dir}")
        target = asset_dir / "data" / "robots" / "widowx"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            try:
                os.symlink(robot_dir, target, target_is_directory=True)
            except OSError:  # file systems without links
                shutil.copytree(robot_dir, target)
    return root


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("asset_dir", help="the MS_ASSET_DIR to write (the twin goes to data/tasks/...)")
    parser.add_argument("overlay_dir", help="folder with bridge_real_eval_1.png and bridge_sink.png")
    parser.add_argument("--robot-dir", help="a widowx250s robot folder to link as data/robots/widowx")
    args = parser.parse_args(argv)
    print(write_bridge_real2sim_assets(args.asset_dir, args.overlay_dir, args.robot_dir))


if __name__ == "__main__":
    main()
