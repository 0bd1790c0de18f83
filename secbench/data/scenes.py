"""Procedural indoor scans: furnished rectangular rooms sampled as noisy coloured point clouds.

What it models: a rectangular room (3.5-8 m a side, 2.5-3.2 m high) with a floor, a ceiling and four
walls (one instance each); 1-3 windows and 1-2 doors as thin boxes proud of the walls (the wall behind
them removed); furniture of varied shape and size, one instance per piece: tables (a top on four legs
or on two side panels), chairs (seat, back, and four legs or an office pole and base, any
orientation), cabinets and bookcases against the walls (bookcases taller, with shelf boards and rows
of books), lamps (base, pole and a prism shade, on the floor or on tables) and boxes (on the floor or
on tables). Surfaces are sampled at a fixed density, so big surfaces get many points; faces that touch
something (object bottoms, the floor under cabinets, the wall behind a bookcase) get none. The scan
is seen from two scanner positions: a point that furniture hides from both is lost, and so are the
points in a few random holes (glare, missed spots). Points carry xyz jitter and colour noise, and
every instance has its own colour around a class palette shared in part between classes (wood tones
for tables, cabinets, doors and bookcases; whites for walls, ceilings and doors), so colour helps but
does not decide the class.

What it does not model: non-rectangular rooms, beams, columns, clutter on walls, curved surfaces
other than prism lamp shades, reflectance, scan-line patterns or sensor range limits, and crowding:
floor pieces are placed apart (only boxes and desk lamps stand on tables, chairs stand at them).
"""

from __future__ import annotations

import numpy as np

from secbench.data.base import SPLIT_SEED
from secbench.data.points import PointSet, PointSplits, room_blocks, stack_rooms
from secbench.errors import SecbenchError
from secbench.registry import register

CLASSES = ("ceiling", "floor", "wall", "window", "door", "table", "chair", "cabinet", "bookcase", "lamp",
           "box")
CEILING, FLOOR, WALL, WINDOW, DOOR, TABLE, CHAIR, CABINET, BOOKCASE, LAMP, BOX = range(len(CLASSES))

DENSITY = 400.0  # points per m² of surface, before occlusion
JITTER = 0.005  # m: std of the xyz sensor noise
COLOUR_NOISE = 0.03  # std of the per-point colour noise, in [0, 1] units
INSTANCE_COLOUR = 0.04  # std of an instance's colour around its palette entry
HIDE_MARGIN = 0.03  # m: a solid object hides the points of others this close to it (a wall 1-2 cm behind)
SELF_MARGIN = 0.02  # m: a ray must cross this much of an occluder before its point for the point to be hidden
WALL_GAP = 0.01  # m: between a wall and the furniture against it
INTERIOR = 0.7  # m: free pieces stay this far from the walls, clear of wall furniture (at most 0.6 m deep)

WOOD = ((0.55, 0.38, 0.22), (0.70, 0.52, 0.33), (0.42, 0.28, 0.17), (0.80, 0.66, 0.45))
WHITE = ((0.88, 0.88, 0.85), (0.80, 0.80, 0.77))
GREY = ((0.50, 0.50, 0.52), (0.28, 0.28, 0.30))
PALETTE: dict[int, tuple[tuple[float, float, float], ...]] = {
    CEILING: (*WHITE, (0.74, 0.73, 0.69)),
    FLOOR: (*WOOD[:2], *GREY, (0.62, 0.58, 0.50)),
    WALL: (*WHITE, (0.85, 0.80, 0.68), (0.70, 0.78, 0.80)),
    WINDOW: ((0.60, 0.72, 0.85), (0.85, 0.90, 0.95), (0.45, 0.55, 0.65)),
    DOOR: (*WOOD, WHITE[1], GREY[0]),
    TABLE: (*WOOD, WHITE[0], GREY[1]),
    CHAIR: (*GREY, (0.15, 0.15, 0.18), (0.20, 0.30, 0.55), (0.55, 0.15, 0.15), WOOD[0]),
    CABINET: (*WOOD, GREY[0], WHITE[0]),
    BOOKCASE: (*WOOD, WHITE[1]),
    LAMP: ((0.95, 0.92, 0.80), (0.90, 0.90, 0.90), (0.25, 0.25, 0.25)),
    BOX: ((0.66, 0.50, 0.32), (0.60, 0.45, 0.28), (0.90, 0.90, 0.88)),
}

# A box's faces: (local axis, side). Furniture faces the room along local +y, so "-y" is its back.
FACES = {"-x": (0, -1), "+x": (0, 1), "-y": (1, -1), "+y": (1, 1), "bottom": (2, -1), "top": (2, 1)}

Box = tuple[np.ndarray, float, np.ndarray, int]  # centre (3,), yaw, half extents (3,), instance


def _rot(yaw: float) -> np.ndarray:
    """Rotation about z: its columns are an object's local axes in room coordinates."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


class _Scene:
    """One room under construction: the parallelograms to sample, and the boxes that hide other points
    (``solids``: touching them) or shadow them (``occluders``: standing between them and a scanner)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.quads: list[np.ndarray] = []  # (3, 3): corner, edge u, edge v
        self.quad_colours: list[np.ndarray] = []
        self.quad_instances: list[int] = []
        self.labels: list[int] = []  # the class of each instance
        self.colours: list[np.ndarray] = []  # the colour of each instance
        self.solids: list[Box] = []
        self.occluders: list[Box] = []

    def instance(self, label: int) -> int:
        palette = PALETTE[label]
        base = np.array(palette[self.rng.integers(len(palette))])
        self.colours.append(np.clip(base + self.rng.normal(0, INSTANCE_COLOUR, 3), 0, 1))
        self.labels.append(label)
        return len(self.labels) - 1

    def quad(self, inst: int, corner: np.ndarray, u: np.ndarray, v: np.ndarray,
             colour: np.ndarray | None = None) -> None:
        self.quads.append(np.stack([corner, u, v]))
        self.quad_colours.append(self.colours[inst] if colour is None else colour)
        self.quad_instances.append(inst)

    def box(self, inst: int, centre: np.ndarray, half: np.ndarray, yaw: float = 0.0, *,
            skip: tuple[str, ...] = (), colour: np.ndarray | None = None, solid: bool = False,
            occluder: bool = False) -> None:
        """A cuboid of half extents ``half`` (local x, y, z) about ``centre``, turned by ``yaw``;
        the faces named in ``skip`` (keys of :data:`FACES`) are hidden and not sampled."""
        centre, half = np.asarray(centre, float), np.asarray(half, float)
        axes = _rot(yaw) * half  # column k: the half-extent vector along local axis k
        for name, (k, side) in FACES.items():
            if name not in skip:
                i, j = (a for a in range(3) if a != k)
                corner = centre + side * axes[:, k] - axes[:, i] - axes[:, j]
                self.quad(inst, corner, 2 * axes[:, i], 2 * axes[:, j], colour)
        if solid:
            self.solids.append((centre, yaw, half, inst))
        if occluder:
            self.occluders.append((centre, yaw, half, inst))

    def sample(self, scanners: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Area-weighted points of every quad, less the hidden and shadowed ones, with sensor noise:
        xyz ``(P, 3)`` metres, rgb ``(P, 3)`` in [0, 1], labels and instances ``(P,)``."""
        rng = self.rng
        quads = np.stack(self.quads)
        normal = np.cross(quads[:, 1], quads[:, 2])
        area = np.linalg.norm(normal, axis=1)
        # top and bottom faces catch more of the ceiling lights than vertical ones
        shade = (0.85 + 0.15 * np.abs(normal[:, 2]) / area) * rng.uniform(0.85, 1.1)
        which = np.repeat(np.arange(len(quads)), rng.poisson(area * DENSITY))
        st = rng.random((len(which), 2, 1))
        xyz = quads[which, 0] + st[:, 0] * quads[which, 1] + st[:, 1] * quads[which, 2]
        instances = np.array(self.quad_instances)[which]

        cols = np.ascontiguousarray(xyz.T, dtype=np.float32)  # (3, P): column-wise float32 is much faster
        keep = ~_hidden(cols, instances, self.solids)
        lost = keep.copy()  # a point is lost when furniture blocks every scanner's view of it
        for scanner in scanners:
            look = np.flatnonzero(lost)
            lost[look] = _shadowed(cols[:, look], scanner, self.occluders)
        keep &= ~lost
        holes = cols[:, rng.integers(len(xyz), size=rng.integers(1, 4))]
        radii = rng.uniform(0.15, 0.45, holes.shape[1]).astype(np.float32)
        keep &= (sum((cols[k, :, None] - holes[k]) ** 2 for k in range(3)) > radii**2).all(1)

        xyz, which, instances = xyz[keep], which[keep], instances[keep]
        xyz = xyz + rng.normal(0, JITTER, xyz.shape)
        rgb = np.stack(self.quad_colours)[which] * shade[which, None]
        rgb = np.clip(rgb + rng.normal(0, COLOUR_NOISE, rgb.shape), 0, 1)
        return xyz, rgb, np.array(self.labels)[instances], instances


def _turn(x: np.ndarray, y: np.ndarray, yaw: float) -> tuple[np.ndarray, np.ndarray]:
    """Room-frame x, y components in the frame of an object turned by ``yaw`` (dtype kept)."""
    c, s = float(np.cos(yaw)), float(np.sin(yaw))
    return x * c + y * s, y * c - x * s


def _hidden(cols: np.ndarray, instances: np.ndarray, boxes: list[Box]) -> np.ndarray:
    """Points ``cols`` ``(3, P)`` within :data:`HIDE_MARGIN` of a box of another instance: ``(P,)`` bool."""
    hidden = np.zeros(cols.shape[1], bool)
    for centre, yaw, half, inst in boxes:
        rel = cols - centre.astype(np.float32)[:, None]
        x, y = _turn(rel[0], rel[1], yaw)
        reach = (half + HIDE_MARGIN).tolist()  # Python floats keep the arithmetic in float32
        hidden |= ((np.abs(x) <= reach[0]) & (np.abs(y) <= reach[1]) & (np.abs(rel[2]) <= reach[2])
                   & (instances != inst))
    return hidden


def _shadowed(cols: np.ndarray, scanner: np.ndarray, boxes: list[Box]) -> np.ndarray:
    """Points ``cols`` ``(3, P)`` whose ray from ``scanner`` crosses a box before reaching them (slab
    test): ``(P,)`` bool. A box's far faces are shadowed by its near ones; its near faces are not
    (:data:`SELF_MARGIN`)."""
    ray = cols - scanner.astype(np.float32)[:, None]
    before = 1 - SELF_MARGIN / np.sqrt((ray**2).sum(0))
    shadowed = np.zeros(cols.shape[1], bool)
    # a ray parallel to a slab divides by zero: inf (outside it: no hit) or nan (on its edge: no hit either)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_z = 1 / ray[2]
        for centre, yaw, half, _ in boxes:
            origin = (*_turn(*(scanner[:2] - centre[:2]), yaw), scanner[2] - centre[2])
            inverse = (*(1 / d for d in _turn(ray[0], ray[1], yaw)), inv_z)
            near, far = np.float32(-np.inf), np.float32(np.inf)
            for inv, o, h in zip(inverse, map(float, origin), half.tolist(), strict=True):
                t1, t2 = (-h - o) * inv, (h - o) * inv
                near, far = np.maximum(near, np.minimum(t1, t2)), np.minimum(far, np.maximum(t1, t2))
            shadowed |= (near < far) & (far > 0) & (near < before)
    return shadowed


class _Layout:
    """Where things may still go: free intervals along each wall, free discs on the floor plan."""

    def __init__(self, rng: np.random.Generator, lx: float, ly: float) -> None:
        self.rng, self.lx, self.ly = rng, lx, ly
        # walls counter-clockwise from the origin: start, direction, length; the room is on their left
        self.walls = [(np.array([0.0, 0.0]), np.array([1.0, 0.0]), lx),
                      (np.array([lx, 0.0]), np.array([0.0, 1.0]), ly),
                      (np.array([lx, ly]), np.array([-1.0, 0.0]), lx),
                      (np.array([0.0, ly]), np.array([0.0, -1.0]), ly)]
        self.taken: list[list[tuple[float, float]]] = [[] for _ in self.walls]
        self.discs: list[tuple[float, float, float]] = []

    def on_wall(self, width: float, corner: float) -> tuple[np.ndarray, float] | None:
        """A free stretch of ``width`` on a random wall, ``corner`` metres clear of its ends:
        the stretch's middle on the floor plan and the yaw of something standing against it."""
        for _ in range(20):
            wall = int(self.rng.integers(4))
            start, direction, length = self.walls[wall]
            if length < width + 2 * corner:
                continue
            s = self.rng.uniform(corner + width / 2, length - corner - width / 2)
            lo, hi = s - width / 2 - 0.1, s + width / 2 + 0.1
            if all(hi < a or lo > b for a, b in self.taken[wall]):
                self.taken[wall].append((lo, hi))
                return start + s * direction, float(np.arctan2(direction[1], direction[0]))
        return None

    def free(self, x: float, y: float, radius: float, ignore: int | None = None) -> bool:
        return all(np.hypot(x - a, y - b) > radius + r
                   for k, (a, b, r) in enumerate(self.discs) if k != ignore)

    def inside(self, x: float, y: float, radius: float) -> bool:
        lo = INTERIOR + radius
        return lo <= x <= self.lx - lo and lo <= y <= self.ly - lo

    def on_floor(self, radius: float) -> tuple[float, float] | None:
        """A free disc of ``radius`` away from the walls (it is then taken)."""
        lo = INTERIOR + radius
        if self.lx < 2 * lo or self.ly < 2 * lo:
            return None
        for _ in range(20):
            x, y = self.rng.uniform(lo, self.lx - lo), self.rng.uniform(lo, self.ly - lo)
            if self.free(x, y, radius):
                self.discs.append((x, y, radius))
                return x, y
        return None


def _shell(scene: _Scene, layout: _Layout, height: float) -> None:
    """Floor, ceiling, walls, windows and doors."""
    lx, ly = layout.lx, layout.ly
    for label, z in ((FLOOR, 0.0), (CEILING, height)):
        scene.quad(scene.instance(label), np.array([0.0, 0.0, z]), np.array([lx, 0.0, 0.0]),
                   np.array([0.0, ly, 0.0]))
    for start, direction, length in layout.walls:
        scene.quad(scene.instance(WALL), np.array([*start, 0.0]), np.array([*direction, 0.0]) * length,
                   np.array([0.0, 0.0, height]))
    rng = scene.rng
    openings = [(DOOR, rng.uniform(0.8, 1.0), 0.0, rng.uniform(2.0, min(2.2, height - 0.1)))
                for _ in range(rng.integers(1, 3))]
    for _ in range(rng.integers(1, 4)):
        sill = rng.uniform(0.7, 1.1)
        top = rng.uniform(sill + 0.8, min(2.4, height - 0.2))
        openings.append((WINDOW, rng.uniform(0.6, 1.8), sill, top))
    for label, width, bottom, top in openings:
        spot = layout.on_wall(width, 0.2)
        if spot is None:
            continue
        (x, y), yaw = spot
        depth = rng.uniform(0.02, 0.05)  # proud of the wall; the solid's margin reaches the wall behind it
        centre = np.array([x, y, (bottom + top) / 2]) + _rot(yaw)[:, 1] * depth / 2
        skip = ("-y", "bottom") if bottom == 0 else ("-y",)
        scene.box(scene.instance(label), centre, [width / 2, depth / 2, (top - bottom) / 2], yaw, skip=skip,
                  solid=True)


def _against_wall(layout: _Layout, width: float, depth: float,
                  height: float) -> tuple[np.ndarray, float] | None:
    """The centre and yaw of a box of this size standing against a free stretch of wall."""
    spot = layout.on_wall(width, INTERIOR - 0.05)  # clear of the corners, so pieces on two walls never meet
    if spot is None:
        return None
    (x, y), yaw = spot
    return np.array([x, y, height / 2]) + _rot(yaw)[:, 1] * (WALL_GAP + depth / 2), yaw


def _cabinet(scene: _Scene, layout: _Layout) -> None:
    rng = scene.rng
    width, depth = rng.uniform(0.5, 1.4), rng.uniform(0.4, 0.6)
    height = rng.uniform(0.7, 1.0) if rng.random() < 0.5 else rng.uniform(1.6, 2.0)
    placed = _against_wall(layout, width, depth, height)
    if placed is None:
        return
    centre, yaw = placed
    inst = scene.instance(CABINET)
    scene.box(inst, centre, [width / 2, depth / 2, height / 2], yaw, skip=("-y", "bottom"), solid=True,
              occluder=True)
    # one door with its handle near a side, or two doors with their handles by the middle
    alongs = [rng.choice([-0.35, 0.35]) * width] if rng.random() < 0.5 else [-0.04, 0.04]
    colour = np.clip(scene.colours[inst] * rng.choice([0.5, 1.4]), 0, 1)
    z = height * rng.uniform(0.1, 0.35)
    for along in alongs:
        scene.box(inst, centre + _rot(yaw) @ [along, depth / 2 + 0.01, z], [0.01, 0.01, 0.06], yaw,
                  skip=("-y",), colour=colour)


def _bookcase(scene: _Scene, layout: _Layout, room_height: float) -> None:
    rng = scene.rng
    width, depth = rng.uniform(0.8, 1.6), rng.uniform(0.28, 0.4)
    height, board = rng.uniform(1.6, min(2.3, room_height - 0.2)), rng.uniform(0.02, 0.03)
    placed = _against_wall(layout, width, depth, height)
    if placed is None:
        return
    centre, yaw = placed
    inst = scene.instance(BOOKCASE)
    hw, hd, hh = width / 2, depth / 2, height / 2
    scene.solids.append((centre, yaw, np.array([hw, hd, hh]), inst))  # open: it only hides what it touches
    rot = _rot(yaw)

    def part(offset: list[float], half: list[float], **kwargs: object) -> None:
        scene.box(inst, centre + rot @ offset, half, yaw, **kwargs)

    for side in (-1, 1):
        part([side * (hw - board / 2), 0, 0], [board / 2, hd, hh], skip=("bottom",), occluder=True)
    part([0, -hd + board / 2, 0], [hw - board, board / 2, hh], skip=("-y", "bottom"))  # back panel
    shelves = int(rng.integers(3, 6))
    levels = np.linspace(-hh + board / 2, hh - board / 2, shelves + 1)
    for k, level in enumerate(levels):  # bottom board, shelves and top
        skip = ("-y", "bottom") if k == 0 else ("-y",)
        part([0, board / 2, level], [hw - board, hd - board / 2, board / 2], skip=skip)
    gap = levels[1] - levels[0] - board
    for level in levels[:-1]:  # a row of books on each shelf: their spines and tops face the room
        edges = np.cumsum(rng.uniform(0.02, 0.06, int(width / 0.02)))
        edges = edges[edges < (width - 2 * board) * rng.uniform(0.3, 1.0)]
        tall = rng.uniform(0.5, 0.9, len(edges)) * gap
        book_depth = rng.uniform(0.6, 0.9) * (depth - board)
        for left, right, h in zip(np.r_[0, edges[:-1]], edges, tall, strict=True):
            colour = np.clip(rng.random(3) * 0.8 + 0.1, 0, 1)
            x = -hw + board + (left + right) / 2
            y, z = -hd + board + book_depth / 2, level + board / 2 + h / 2
            part([x, y, z], [(right - left) / 2 - 0.002, book_depth / 2, h / 2],
                 skip=("-y", "bottom", "-x", "+x"), colour=colour)


def _table(scene: _Scene, layout: _Layout) -> tuple[np.ndarray, float, np.ndarray] | None:
    """A table on the floor; returns its top's centre, yaw and half extents, for what stands on it."""
    rng = scene.rng
    width, depth = rng.uniform(0.8, 2.0), rng.uniform(0.6, 1.0)
    spot = layout.on_floor(np.hypot(width, depth) / 2)
    if spot is None:
        return None
    yaw = rng.choice([0.0, np.pi / 2]) + (rng.uniform(0, np.pi) if rng.random() < 0.3 else 0.0)
    height, thick = rng.uniform(0.70, 0.78), rng.uniform(0.03, 0.06)
    inst = scene.instance(TABLE)
    top = np.array([*spot, height - thick / 2])
    half = np.array([width / 2, depth / 2, thick / 2])
    scene.box(inst, top, half, yaw, occluder=True)
    rot, leg_height = _rot(yaw), height - thick
    if rng.random() < 0.7:  # four legs
        leg, inset = rng.uniform(0.02, 0.035), rng.uniform(0.02, 0.1)
        for sx in (-1, 1):
            for sy in (-1, 1):
                offset = [sx * (width / 2 - inset - leg), sy * (depth / 2 - inset - leg), leg_height / 2]
                scene.box(inst, top * [1, 1, 0] + rot @ offset, [leg, leg, leg_height / 2], yaw,
                          skip=("bottom",))
    else:  # a desk on two side panels
        panel = rng.uniform(0.015, 0.03)
        for sx in (-1, 1):
            offset = [sx * (width / 2 - 0.05 - panel), 0, leg_height / 2]
            scene.box(inst, top * [1, 1, 0] + rot @ offset, [panel, depth / 2 - 0.05, leg_height / 2], yaw,
                      skip=("bottom",))
    return top + [0, 0, thick / 2], float(yaw), half


def _chair(scene: _Scene, x: float, y: float, yaw: float) -> None:
    """A chair at ``(x, y)`` facing local +y turned by ``yaw``."""
    rng = scene.rng
    inst = scene.instance(CHAIR)
    width, depth = rng.uniform(0.40, 0.52), rng.uniform(0.40, 0.50)
    seat_z, thick = rng.uniform(0.42, 0.50), rng.uniform(0.04, 0.09)
    back_h, back_t = rng.uniform(0.30, 0.55), rng.uniform(0.03, 0.06)
    rot, base = _rot(yaw), np.array([x, y, 0.0])
    scene.box(inst, base + [0, 0, seat_z - thick / 2], [width / 2, depth / 2, thick / 2], yaw, occluder=True)
    back = base + rot @ [0, -depth / 2 + back_t / 2, seat_z + back_h / 2]
    scene.box(inst, back, [width / 2, back_t / 2, back_h / 2], yaw, skip=("bottom",), occluder=True)
    leg_h = seat_z - thick
    if rng.random() < 0.6:  # four legs
        leg = rng.uniform(0.012, 0.022)
        for sx in (-1, 1):
            for sy in (-1, 1):
                offset = [sx * (width / 2 - leg), sy * (depth / 2 - leg), leg_h / 2]
                scene.box(inst, base + rot @ offset, [leg, leg, leg_h / 2], yaw, skip=("bottom",))
    else:  # an office chair: a pole on a cross-shaped base
        scene.box(inst, base + [0, 0, leg_h / 2], [0.025, 0.025, leg_h / 2], yaw, skip=("bottom",))
        for turn in (0, np.pi / 2):
            scene.box(inst, base + [0, 0, 0.03], [0.3, 0.025, 0.03], yaw + turn, skip=("bottom",))


def _chairs_at(scene: _Scene, layout: _Layout, table: int, top: tuple[np.ndarray, float, np.ndarray]) -> None:
    """Up to four chairs pulled up to the sides of the table ``table`` (its disc in ``layout``)."""
    rng = scene.rng
    centre, yaw, half = top
    rot = _rot(yaw)
    for _ in range(rng.integers(0, 5)):
        axis, side = int(rng.integers(2)), rng.choice([-1, 1])
        offset = np.zeros(3)
        offset[axis] = side * (half[axis] + rng.uniform(0.1, 0.35))
        offset[1 - axis] = rng.uniform(-0.6, 0.6) * half[1 - axis]
        x, y = (centre + rot @ offset)[:2]
        if layout.inside(x, y, 0.35) and layout.free(x, y, 0.35, ignore=table):
            layout.discs.append((x, y, 0.35))
            facing = np.arctan2(centre[1] - y, centre[0] - x) - np.pi / 2  # local +y toward the table
            _chair(scene, x, y, facing + rng.normal(0, 0.3))


def _lamp(scene: _Scene, x: float, y: float, z: float, small: bool) -> None:
    """A lamp standing at ``(x, y, z)``: base, pole and an open prism shade; ``small`` for a desk lamp."""
    rng = scene.rng
    inst = scene.instance(LAMP)
    pole = rng.uniform(0.3, 0.5) if small else rng.uniform(1.3, 1.8)
    radius = rng.uniform(0.08, 0.12) if small else rng.uniform(0.15, 0.25)
    shade_h = radius * rng.uniform(1.0, 1.6)
    base = [radius * 0.7, radius * 0.7, 0.015]
    scene.box(inst, [x, y, z + 0.015], base, rng.uniform(0, np.pi), skip=("bottom",))
    scene.box(inst, [x, y, z + pole / 2], [0.012, 0.012, pole / 2], skip=("bottom", "top"))
    sides = int(rng.choice([4, 6, 12]))
    angles = rng.uniform(0, 2 * np.pi) + np.arange(sides + 1) * 2 * np.pi / sides
    ring = radius * np.stack([np.cos(angles), np.sin(angles), np.zeros_like(angles)], 1) + [x, y, z + pole]
    shade = np.clip(scene.colours[inst] + 0.15, 0, 1)  # lit from inside
    for a, b in zip(ring[:-1], ring[1:], strict=True):
        scene.quad(inst, a, b - a, np.array([0.0, 0.0, shade_h]), shade)


def _box(scene: _Scene, x: float, y: float, z: float, size: np.ndarray) -> None:
    """A closed box of ``size`` (full extents) standing at ``(x, y, z)``."""
    scene.box(scene.instance(BOX), [x, y, z + size[2] / 2], size / 2, scene.rng.uniform(0, np.pi),
              skip=("bottom",), solid=True, occluder=True)


def _on_top(scene: _Scene, top: tuple[np.ndarray, float, np.ndarray]) -> None:
    """Boxes and at most one desk lamp on a table top."""
    rng = scene.rng
    centre, yaw, half = top
    rot, placed = _rot(yaw), []
    items = ["box"] * int(rng.integers(0, 3)) + ["lamp"] * int(rng.random() < 0.25)
    for item in items:
        size = rng.uniform(0.1, 0.35, 3) if item == "box" else np.full(3, 0.2)
        reach = half[:2] - np.hypot(size[0], size[1]) / 2
        if (reach <= 0).any():
            continue
        x, y = (centre + rot @ [*rng.uniform(-reach, reach), 0])[:2]
        radius = np.hypot(size[0], size[1]) / 2
        if any(np.hypot(x - a, y - b) < radius + r for a, b, r in placed):
            continue
        placed.append((x, y, radius))
        if item == "box":
            _box(scene, x, y, centre[2], size)
        else:
            _lamp(scene, x, y, centre[2], small=True)


def room(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One furnished room scanned from two positions: xyz ``(P, 3)`` metres (floor at z = 0, the room
    in ``[0, lx] × [0, ly]``), rgb ``(P, 3)`` in [0, 1], labels (indices into :data:`CLASSES`) and
    instances ``(P,)`` int64 (numbered from 0 within the room)."""
    lx, ly = rng.uniform(3.5, 8.0, 2)
    height = rng.uniform(2.5, 3.2)
    scene, layout = _Scene(rng), _Layout(rng, lx, ly)
    _shell(scene, layout, height)
    for _ in range(rng.integers(0, 3)):
        _cabinet(scene, layout)
    for _ in range(rng.integers(0, 3)):
        _bookcase(scene, layout, height)
    for _ in range(rng.integers(1, 2 + int(lx * ly // 15))):
        top = _table(scene, layout)
        if top is not None:
            _chairs_at(scene, layout, len(layout.discs) - 1, top)
            _on_top(scene, top)
    for _ in range(rng.integers(0, 4)):
        if (spot := layout.on_floor(0.35)) is not None:
            _chair(scene, *spot, rng.uniform(0, 2 * np.pi))
    for _ in range(rng.integers(0, 3)):
        if (spot := layout.on_floor(0.25)) is not None:
            _lamp(scene, *spot, 0.0, small=False)
    for _ in range(rng.integers(0, 4)):
        size = rng.uniform(0.15, 0.6, 3)
        if (spot := layout.on_floor(np.hypot(size[0], size[1]) / 2)) is not None:
            _box(scene, *spot, 0.0, size)
    # scanner heads over the free middle of the room, above every piece but lamps and wall furniture
    scanners = np.stack([rng.uniform(1.0, lx - 1.0, 2), rng.uniform(1.0, ly - 1.0, 2),
                         rng.uniform(1.2, 1.7, 2)], 1)
    xyz, rgb, labels, instances = scene.sample(scanners)
    return xyz, rgb, labels.astype(np.int64), instances.astype(np.int64)


def check_block_options(block_points: int, block_size: float, **sizes: int | None) -> None:
    """Raise a one-line :class:`SecbenchError` for a block option or a block count (``n_train=...``)
    that cannot work."""
    if block_points < 1 or not block_size > 0:
        raise SecbenchError(f"block_points must be positive and block_size above 0, got {block_points}, "
                            f"{block_size}")
    for name, n in sizes.items():
        if n is not None and n < 1:
            raise SecbenchError(f"{name} must be positive, got {n}")


def keep_blocks(data: PointSet, n: int | None, rng: np.random.Generator) -> PointSet:
    """A random ``n`` of the blocks, in their order (all of them when ``n`` is None or too large)."""
    if n is None or n >= len(data):
        return data
    return data.subset(np.sort(rng.choice(len(data), n, replace=False)))


def _split(stream: list[int], rooms: int, n: int | None, block_points: int, block_size: float) -> PointSet:
    """Blocks of ``rooms`` rooms (more while they give fewer than ``n``), each room from its own
    random stream ``[*stream, 0, index]``, so a room never depends on how many are built."""
    blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    total = 0
    while len(blocks) < rooms or (n is not None and total < n):
        rng = np.random.default_rng([*stream, 0, len(blocks)])
        blocks.append(room_blocks(*room(rng), block_points=block_points, rng=rng, block_size=block_size))
        total += len(blocks[-1][0])
    return keep_blocks(stack_rooms(blocks), n, np.random.default_rng([*stream, 1]))


@register("pointcloud", "scenes")
def scenes(
    *,
    seed: int = 0,
    n_train: int | None = None,
    n_test: int | None = None,
    block_points: int = 1024,
    rooms_train: int = 24,
    rooms_test: int = 8,
    block_size: float = 1.5,
) -> PointSplits:
    """Procedural furnished rooms scanned as noisy coloured points, 11 classes, cut into blocks.

    Blocks hold ``block_points`` points (channels :data:`~secbench.data.points.CHANNELS`);
    ``n_train``/``n_test`` blocks are kept (None: every block of ``rooms_train``/``rooms_test`` rooms;
    more rooms are built when they give too few). Training rooms come from ``seed``; the test rooms
    are the same for every seed.
    """
    check_block_options(block_points, block_size, n_train=n_train, n_test=n_test, rooms_train=rooms_train,
                        rooms_test=rooms_test)
    return PointSplits(
        "scenes",
        _split([seed, 0], rooms_train, n_train, block_points, block_size),
        _split([SPLIT_SEED, 1], rooms_test, n_test, block_points, block_size),
        CLASSES,
        "procedural indoor rooms (secbench.data.scenes)",
    )
