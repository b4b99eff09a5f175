"""Serf's Vivaldi network coordinates (serf/coordinate), sans-IO.

Theory of operation: every node holds a point in an 8-dimensional Euclidean space plus a
non-negative height (the latency of its own access link). The estimated RTT between two
nodes is the distance between their vectors plus both heights plus both adjustments.
After each probe the node moves along the line to the probed node by a force
proportional to the error of that estimate (spring relaxation), weighted by its own
confidence (`error`) against the other's. `adjustment` is a windowed mean of the
residual error; `gravity` pulls coordinates gently toward the origin so the whole
system does not drift. RTT samples pass a 3-sample median filter per peer first.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

ZERO_THRESHOLD = 1.0e-6
MAX_RTT = 10.0


@dataclass(frozen=True, slots=True)
class CoordinateConfig:
    dimensionality: int = 8
    vivaldi_error_max: float = 1.5
    vivaldi_ce: float = 0.25
    vivaldi_cc: float = 0.25
    adjustment_window_size: int = 20
    height_min: float = 10.0e-6
    latency_filter_size: int = 3
    gravity_rho: float = 150.0


class CoordinateError(ValueError):
    """A coordinate that cannot be used (wrong dimensions, NaN or infinite)."""


@dataclass(frozen=True, slots=True)
class Coordinate:
    vec: tuple[float, ...]
    error: float
    adjustment: float
    height: float

    @classmethod
    def origin(cls, config: CoordinateConfig) -> Coordinate:
        return cls((0.0,) * config.dimensionality, config.vivaldi_error_max, 0.0, config.height_min)

    def is_valid(self) -> bool:
        values = (*self.vec, self.error, self.adjustment, self.height)
        return all(math.isfinite(v) for v in values)

    def is_compatible_with(self, other: Coordinate) -> bool:
        return len(self.vec) == len(other.vec)

    def raw_distance_to(self, other: Coordinate) -> float:
        return _magnitude(_diff(self.vec, other.vec)) + self.height + other.height

    def distance_to(self, other: Coordinate) -> float:
        """Estimated RTT in seconds."""
        dist = self.raw_distance_to(other)
        adjusted = dist + self.adjustment + other.adjustment
        return adjusted if adjusted > 0.0 else dist

    def apply_force(
        self, config: CoordinateConfig, force: float, other: Coordinate, rng: random.Random
    ) -> Coordinate:
        unit, mag = _unit_vector_at(self.vec, other.vec, rng)
        vec = tuple(a + b * force for a, b in zip(self.vec, unit, strict=True))
        height = self.height
        if mag > ZERO_THRESHOLD:
            height = (self.height + other.height) * force / mag + self.height
            height = max(height, config.height_min)
        return Coordinate(vec, self.error, self.adjustment, height)

    def to_wire(self) -> dict[str, Any]:
        """Consul's JSON/msgpack field names."""
        return {
            "Vec": list(self.vec),
            "Error": self.error,
            "Adjustment": self.adjustment,
            "Height": self.height,
        }

    @classmethod
    def from_wire(cls, data: Any) -> Coordinate:
        if not isinstance(data, dict):
            raise CoordinateError("coordinate must be a map")
        try:
            vec = tuple(float(v) for v in data["Vec"])
            coord = cls(vec, float(data["Error"]), float(data["Adjustment"]), float(data["Height"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CoordinateError(f"bad coordinate: {exc}") from exc
        if not coord.is_valid():
            raise CoordinateError("coordinate has NaN or infinite components")
        return coord


def parse_coordinates(entries: Any) -> dict[str, Coordinate]:
    """{node: Coordinate} of Consul's [{Node, Coord}] list; unusable entries are skipped."""
    coords: dict[str, Coordinate] = {}
    for entry in entries or ():
        try:
            coords[str(entry.get("Node"))] = Coordinate.from_wire(entry.get("Coord"))
        except (CoordinateError, TypeError, ValueError, AttributeError):
            continue
    return coords


def sort_by_distance(
    origin: Coordinate, items: Sequence[T], coordinate_of: Callable[[T], Coordinate | None]
) -> list[T]:
    """`items` sorted by estimated RTT from `origin`; those without a usable coordinate go
    last, in their order (Consul's sortByDistanceFrom, a stable sort)."""

    def rtt(item: T) -> float:
        other = coordinate_of(item)
        if other is None or not other.is_compatible_with(origin):
            return math.inf
        try:
            return origin.distance_to(other)
        except CoordinateError:
            return math.inf

    return sorted(items, key=rtt)


def _diff(a: tuple[float, ...], b: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(x - y for x, y in zip(a, b, strict=True))


def _magnitude(v: tuple[float, ...]) -> float:
    return math.sqrt(sum(x * x for x in v))


def _unit_vector_at(
    a: tuple[float, ...], b: tuple[float, ...], rng: random.Random
) -> tuple[tuple[float, ...], float]:
    d = _diff(a, b)
    mag = _magnitude(d)
    if mag > ZERO_THRESHOLD:
        return tuple(x / mag for x in d), mag
    # Same place: push in a random direction.
    r = tuple(rng.random() - 0.5 for _ in a)
    rmag = _magnitude(r)
    if rmag > ZERO_THRESHOLD:
        return tuple(x / rmag for x in r), 0.0
    return (0.0,) * len(a), 0.0


@dataclass
class CoordinateClient:
    """One node's Vivaldi state (serf coordinate.Client)."""

    config: CoordinateConfig = field(default_factory=CoordinateConfig)
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self.coord = Coordinate.origin(self.config)
        self.origin = Coordinate.origin(self.config)
        self.adjustment_index = 0
        self.adjustment_samples = [0.0] * self.config.adjustment_window_size
        self.latency_filter_samples: dict[str, list[float]] = {}
        self.resets = 0
        self.updates = 0

    def forget(self, node: str) -> None:
        self.latency_filter_samples.pop(node, None)

    def _latency_filter(self, node: str, rtt: float) -> float:
        samples = self.latency_filter_samples.setdefault(node, [])
        samples.append(rtt)
        if len(samples) > self.config.latency_filter_size:
            del samples[0]
        return sorted(samples)[len(samples) // 2]

    def _update_vivaldi(self, other: Coordinate, rtt: float) -> None:
        dist = self.coord.distance_to(other)
        rtt = max(rtt, ZERO_THRESHOLD)
        wrongness = abs(dist - rtt) / rtt
        total_error = max(self.coord.error + other.error, ZERO_THRESHOLD)
        weight = self.coord.error / total_error
        ce = self.config.vivaldi_ce
        error = min(
            ce * weight * wrongness + self.coord.error * (1.0 - ce * weight),
            self.config.vivaldi_error_max,
        )
        self.coord = Coordinate(self.coord.vec, error, self.coord.adjustment, self.coord.height)
        force = self.config.vivaldi_cc * weight * (rtt - dist)
        self.coord = self.coord.apply_force(self.config, force, other, self.rng)

    def _update_adjustment(self, other: Coordinate, rtt: float) -> None:
        window = self.config.adjustment_window_size
        if window == 0:
            return
        self.adjustment_samples[self.adjustment_index] = rtt - self.coord.raw_distance_to(other)
        self.adjustment_index = (self.adjustment_index + 1) % window
        adjustment = sum(self.adjustment_samples) / (2.0 * window)
        c = self.coord
        self.coord = Coordinate(c.vec, c.error, adjustment, c.height)

    def _update_gravity(self) -> None:
        dist = self.origin.distance_to(self.coord)
        force = -1.0 * (dist / self.config.gravity_rho) ** 2
        self.coord = self.coord.apply_force(self.config, force, self.origin, self.rng)

    def update(self, node: str, other: Coordinate, rtt: float) -> Coordinate:
        """Fold one RTT sample (seconds) to `node` at `other` into our coordinate."""
        if not self.coord.is_compatible_with(other):
            raise CoordinateError("dimensions aren't compatible")
        if not other.is_valid():
            raise CoordinateError("other coordinate is invalid")
        if not (0.0 <= rtt <= MAX_RTT):
            raise CoordinateError(f"round trip time not in valid range, got {rtt}")
        filtered = self._latency_filter(node, rtt)
        self._update_vivaldi(other, filtered)
        self._update_adjustment(other, filtered)
        self._update_gravity()
        if not self.coord.is_valid():
            self.resets += 1
            self.coord = Coordinate.origin(self.config)
        self.updates += 1
        return self.coord
