"""A deliberately plain NumPy/Python twin of ``envs.gridworld``, for parity tests only.

It is written cell by cell, the way MiniGrid describes the world, so that it is
easy to check by eye; it has no automatic reset (the caller resets, which lets
tests check the JAX autoreset against an explicit one).
"""

from __future__ import annotations

import numpy as np

_MOVES = {0: (1, 0), 1: (0, 1), 2: (-1, 0), 3: (0, -1)}
_CODES = {"empty": (1, 0, 0), "wall": (2, 5, 0), "goal": (8, 1, 0)}


class GridworldReference:
    def __init__(self, layout: str = "empty", size: int = 15, max_steps: int = 100, seed: int = 0):
        self.layout = layout
        self.size = size
        self.max_steps = max_steps
        self._rng = np.random.default_rng(seed)
        self.reset()

    def reset(self, doors=None) -> np.ndarray:
        """Start an episode; ``doors`` fixes four_rooms' doors in ``door_positions`` order
        (upper/lower y on the vertical wall, left/right x on the horizontal wall)."""
        n = self.size
        self.grid = [["empty"] * n for _ in range(n)]  # indexed grid[x][y]
        for i in range(n):
            for cell in ((i, 0), (i, n - 1), (0, i), (n - 1, i)):
                self.grid[cell[0]][cell[1]] = "wall"
        if self.layout == "four_rooms":
            mid = n // 2
            if doors is None:
                doors = (
                    self._rng.integers(1, mid),
                    self._rng.integers(mid + 1, n - 1),
                    self._rng.integers(1, mid),
                    self._rng.integers(mid + 1, n - 1),
                )
            for i in range(n):
                self.grid[mid][i] = "wall"
                self.grid[i][mid] = "wall"
            upper, lower, left, right = (int(d) for d in doors)
            self.grid[mid][upper] = "empty"
            self.grid[mid][lower] = "empty"
            self.grid[left][mid] = "empty"
            self.grid[right][mid] = "empty"
        if self.layout == "goal":
            self.grid[n - 2][n - 2] = "goal"
        self.pos = (1, 1)
        self.dir = 0
        self.step_count = 0
        return self.obs()

    def obs(self) -> np.ndarray:
        out = np.zeros((self.size, self.size, 3), dtype=np.float32)
        for x in range(self.size):
            for y in range(self.size):
                out[x, y] = _CODES[self.grid[x][y]]
        out[self.pos[0], self.pos[1]] = (10, 0, self.dir)
        return out

    def step(self, action: int):
        """Returns ``(obs, reward, terminated, truncated)``."""
        self.step_count += 1
        reward = 0.0
        terminated = False
        if action == 0:
            self.dir = (self.dir - 1) % 4
        elif action == 1:
            self.dir = (self.dir + 1) % 4
        elif action == 2:
            dx, dy = _MOVES[self.dir]
            x, y = self.pos[0] + dx, self.pos[1] + dy
            cell = self.grid[x][y]
            if cell != "wall":
                self.pos = (x, y)
            if cell == "goal":
                terminated = True
                reward = 1.0 - 0.9 * (self.step_count / self.max_steps)
        truncated = self.step_count >= self.max_steps
        return self.obs(), reward, terminated, truncated
