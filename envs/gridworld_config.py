"""The gridworld's static description and its named presets, importable without JAX.

A search's configuration names its gridworld by preset; the configuration and the run store
open without loading JAX, so the presets live apart from the JAX environment (``gridworld``).
"""

from __future__ import annotations

import dataclasses

LAYOUTS = ("empty", "four_rooms", "goal")
# Four rooms needs a room of at least one cell on each side of the inner walls.
_MIN_SIZE = {"empty": 4, "four_rooms": 5, "goal": 4}

# Marks "this layout has no goal"; never equal to a reachable position.
NO_GOAL = (-1, -1)


@dataclasses.dataclass(frozen=True)
class GridConfig:
    """Static description of a gridworld; hashable so jit can key its cache on it."""

    layout: str = "empty"
    """One of ``LAYOUTS``: ``"empty"`` (the paper's room), ``"four_rooms"``
    (inner walls with one door per wall segment, doors redrawn every reset) or
    ``"goal"`` (empty room with a rewarding, terminating goal in the
    bottom-right interior corner)."""

    size: int = 15
    """Side of the square grid including the border walls; the interior is
    ``(size - 2) x (size - 2)``."""

    max_steps: int = 100
    """Episode length after which the episode is truncated."""

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.size < _MIN_SIZE[self.layout]:
            raise ValueError(
                f"layout {self.layout!r} needs size >= {_MIN_SIZE[self.layout]}, got {self.size}"
            )
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be positive, got {self.max_steps}")

    @property
    def has_goal(self) -> bool:
        return self.layout == "goal"

    @property
    def goal_pos(self) -> tuple[int, int]:
        return (self.size - 2, self.size - 2) if self.has_goal else NO_GOAL


EMPTY = GridConfig()
"""The paper's meta-training environment: 13x13 empty interior, 100-step episodes."""

GOAL = GridConfig(layout="goal")
"""The paper's room with a goal; same size and horizon so only the reward differs."""

FOUR_ROOMS = GridConfig(layout="four_rooms", size=19, max_steps=100)
"""MiniGrid-FourRooms-v0's grid size and horizon, with the paper's fixed start."""

PRESETS = {"empty": EMPTY, "goal": GOAL, "four_rooms": FOUR_ROOMS}
