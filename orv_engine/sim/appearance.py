"""Appearance randomisation of ``ORVTabletop-v1``: colours, light, and how the scripted arm moves.

An :class:`Appearance` is drawn per episode from the episode's seed and applied to the built
scene in place (render materials and lights are changed; nothing is rebuilt, so a reset
costs what it did). It is recorded with the episode (RLDS ``episode_metadata/appearance``,
JSON) and described in words (:meth:`Appearance.prompt`) so a painter can be prompted with
it. Colours come from named palettes so that the instruction names the cube's real colour.

``Appearance.fixed()`` is the scene's original look (wood-textured table, red/green/yellow
cubes, blue towel, ManiSkill's default lights); ``sample_appearance(rng)`` is the randomised
one. Why hand-written: ManiSkill3 ships domain randomisation for cameras and physics only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import numpy as np

# name -> linear RGB in [0, 1]
CUBE_COLORS = {
    "red": (0.85, 0.12, 0.10), "green": (0.15, 0.65, 0.20), "yellow": (0.95, 0.80, 0.10),
    "orange": (0.95, 0.45, 0.05), "purple": (0.50, 0.15, 0.75), "white": (0.92, 0.92, 0.92),
    "black": (0.06, 0.06, 0.06), "pink": (0.95, 0.45, 0.70), "cyan": (0.10, 0.75, 0.80),
    "brown": (0.45, 0.25, 0.10),
}
TOWEL_COLORS = {
    "blue": (0.15, 0.30, 0.80), "red": (0.75, 0.10, 0.12), "green": (0.15, 0.55, 0.20),
    "grey": (0.45, 0.45, 0.45), "purple": (0.45, 0.20, 0.65), "yellow": (0.90, 0.80, 0.20),
}
SURFACE_COLORS = {
    "white": (0.85, 0.85, 0.85), "light grey": (0.65, 0.65, 0.65), "dark grey": (0.25, 0.25, 0.25),
    "beige": (0.80, 0.70, 0.52), "brown": (0.45, 0.28, 0.15), "tan": (0.70, 0.52, 0.32),
    "dark blue": (0.12, 0.16, 0.35), "dark green": (0.12, 0.30, 0.16), "maroon": (0.40, 0.10, 0.12),
    "light blue": (0.60, 0.72, 0.85), "olive": (0.45, 0.45, 0.20), "black": (0.05, 0.05, 0.05),
}
WOOD = "wood"  # the table's own texture (the fixed look)
DEFAULT_FLOOR = "default"  # ManiSkill's own ground texture
PROMPT_PARTS = ("table", "floor", "objects", "light")  # what Appearance.prompt can describe


@dataclass(frozen=True)
class Appearance:
    cube_colors: tuple[str, str, str]  # per cube slot, keys of CUBE_COLORS
    towel_color: str  # key of TOWEL_COLORS
    table_color: str  # key of SURFACE_COLORS, or WOOD
    floor_color: str  # key of SURFACE_COLORS, or DEFAULT_FLOOR
    light_azimuth: float  # degrees, direction the key light comes from around the table
    light_elevation: float  # degrees above the table plane
    light_intensity: float  # key light colour scale
    ambient: float  # ambient light level
    motion: dict = field(default_factory=dict)  # scripted-policy variation (speed, lift, hold)

    @classmethod
    def fixed(cls) -> "Appearance":
        return cls(("red", "green", "yellow"), "blue", WOOD, DEFAULT_FLOOR, light_azimuth=225.0,
                   light_elevation=35.26, light_intensity=1.0, ambient=0.3)

    @property
    def is_fixed(self) -> bool:
        return self == Appearance.fixed()

    def cube_name(self, slot: int) -> str:
        return f"{self.cube_colors[slot]} cube"

    @property
    def towel_name(self) -> str:
        return f"{self.towel_color} towel"

    def prompt(self, parts: Iterable[str] = PROMPT_PARTS) -> str:
        """A short description of the scene's look, e.g. for a painter's prompt.

        ``parts``: which of :data:`PROMPT_PARTS` to describe; a part left out is named without
        its colours ("a table", "three cubes and a towel") or not at all (floor, light), so a
        painter trained on descriptions with parts left out paints those parts as it likes
        (different per seed), as an image model trained on captions that leave things out does.
        """
        parts = set(parts)
        if parts - set(PROMPT_PARTS):
            raise ValueError(f"unknown prompt parts {sorted(parts - set(PROMPT_PARTS))}; parts: {PROMPT_PARTS}")
        if "table" not in parts:
            table = "a table"
        else:
            table = "a wooden table" if self.table_color == WOOD else f"a {self.table_color} table"
        # ManiSkill's own ground is named too, so that "no floor words" means "any floor"
        floor = "" if "floor" not in parts else ", plain floor" if self.floor_color == DEFAULT_FLOOR \
            else f", {self.floor_color} floor"
        if "objects" in parts:
            objects = "a " + ", ".join(self.cube_name(i) for i in range(2)) + f" and a {self.cube_name(2)} and a {self.towel_name}"
        else:
            objects = "three cubes and a towel"
        text = f"a robot arm above {table}{floor}; {objects} on the table"
        if "light" in parts:
            side = _side(self.light_azimuth)
            light = "bright" if self.light_intensity >= 1.1 else "dim" if self.light_intensity <= 0.75 else "soft"
            text += f"; {light} light from the {side}"
        return text

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Appearance":
        values = json.loads(text)
        values["cube_colors"] = tuple(values["cube_colors"])
        return cls(**values)


def _side(azimuth: float) -> str:
    sides = ["front", "front left", "left", "back left", "back", "back right", "right", "front right"]
    return sides[int(((azimuth % 360) + 22.5) // 45) % 8]


def sample_appearance(rng: np.random.Generator) -> Appearance:
    """A random look: distinct cube colours, a towel colour unlike the cubes', table and floor
    colours (or their textures), a key light from anywhere above, and a varied arm motion."""
    cubes = tuple(str(c) for c in rng.choice(list(CUBE_COLORS), size=3, replace=False))
    towels = [t for t in TOWEL_COLORS if t not in cubes]
    # the fixed look's wood table and ManiSkill's floor are among the choices, so a model
    # trained on randomised scenes has seen the default one too
    table = str(rng.choice([WOOD, *SURFACE_COLORS]))
    floor = str(rng.choice([DEFAULT_FLOOR, *(s for s in SURFACE_COLORS if s != table)]))
    return Appearance(
        cube_colors=cubes, towel_color=str(rng.choice(towels)), table_color=table, floor_color=floor,
        light_azimuth=float(rng.uniform(0, 360)), light_elevation=float(rng.uniform(25, 80)),
        light_intensity=float(rng.uniform(0.6, 1.4)), ambient=float(rng.uniform(0.15, 0.45)),
        motion={"max_step": float(rng.uniform(0.025, 0.05)), "lift": float(rng.uniform(0.08, 0.15)),
                "hold_steps": int(rng.integers(1, 4))},
    )


# ------------------------------------------------------------------ applying it to a scene


def _materials(actor) -> list:
    import sapien  # lazy: ManiSkill's renderer, only in the simulator process

    out = []
    for entity in actor._objs:
        body = entity.find_component_by_type(sapien.render.RenderBodyComponent)
        for shape in body.render_shapes if body is not None else []:
            out += [p.material for p in shape.parts] if hasattr(shape, "parts") else [shape.material]
    return out


class AppearanceApplier:
    """Remembers the scene's original materials and lights, and sets an appearance in place."""

    def __init__(self, env):
        self.env = env
        self.table = _materials(env.table_scene.table)
        self.floor = _materials(env.table_scene.ground)
        self.cubes = [_materials(c) for c in env.cubes]
        self.towel = _materials(env.towel)
        self.original = {id(m): (list(m.base_color), m.base_color_texture) for m in self.table + self.floor}
        self.sub_scenes = env.scene.sub_scenes
        self.lights = [[c for e in s.entities for c in e.components if type(c).__name__ == "RenderDirectionalLightComponent"]
                       for s in self.sub_scenes]

    def apply(self, appearance: Appearance) -> None:
        self._surface(self.table, appearance.table_color, WOOD)
        self._surface(self.floor, appearance.floor_color, DEFAULT_FLOOR)
        for materials, name in zip(self.cubes, appearance.cube_colors):
            for m in materials:
                m.set_base_color([*CUBE_COLORS[name], 1.0])
        for m in self.towel:
            m.set_base_color([*TOWEL_COLORS[appearance.towel_color], 1.0])
        self._lights(appearance)

    def _surface(self, materials, color: str, original: str) -> None:
        for m in materials:
            if color == original:
                base, texture = self.original[id(m)]
                m.base_color_texture = texture
                m.set_base_color(base)
            else:
                m.base_color_texture = None
                m.set_base_color([*SURFACE_COLORS[color], 1.0])

    def _lights(self, appearance: Appearance) -> None:
        import sapien  # lazy: see _materials

        az, el = math.radians(appearance.light_azimuth), math.radians(appearance.light_elevation)
        # the light travels from (azimuth, elevation) towards the table centre
        direction = -np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
        for scene, lights in zip(self.sub_scenes, self.lights):
            scene.render_system.ambient_light = [appearance.ambient] * 3
            if not lights:
                continue
            key, *fill = lights
            key.entity.set_pose(sapien.Pose(q=_quat_x_to(direction)))
            key.color = [appearance.light_intensity] * 3
            for light in fill:  # ManiSkill's second light shines straight down: keep it, scaled
                light.color = [0.5 * appearance.light_intensity + 0.5] * 3


def _quat_x_to(direction: np.ndarray) -> list[float]:
    """wxyz rotation taking +x (a SAPIEN light's direction) onto ``direction``."""
    x = np.array([1.0, 0.0, 0.0])
    d = direction / np.linalg.norm(direction)
    axis = np.cross(x, d)
    s, c = np.linalg.norm(axis), float(np.dot(x, d))
    if s < 1e-8:
        return [1.0, 0.0, 0.0, 0.0] if c > 0 else [0.0, 0.0, 0.0, 1.0]
    angle = math.atan2(s, c)
    axis = axis / s
    return [math.cos(angle / 2), *(axis * math.sin(angle / 2))]
