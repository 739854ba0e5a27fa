"""Settings of one program search, with named presets (SPEC §3, reference §8.4).

A ``SearchConfig`` is stored as JSON in its run's store, so a resumed run continues with
exactly the settings it started with.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from envs import gridworld_config
from metacurio import arguments
from metacurio.agent import gym_presets
from metacurio.agent.config import GRIDWORLD_PAPER, PPOConfig
from metacurio.agent.config import PAPER_SEEDS

SPACES = ("curiosity", "combiner")
"""Spaces a search can cover: curiosity programs on the gridworld, or reward combiners with a
fixed curiosity program on a gymnasium environment (design §4.4)."""
CONTROLS = ("none", "rnd", "fast", "ccim")
"""Plain PPO (the zero-reward program ``none``) and the published methods a discovery must beat."""
COMBINER_CONTROLS = ("combiner_paper", "combiner_sum")
"""The paper's combiner and plain intrinsic + extrinsic: what a discovered combiner must beat."""
ADDED_FIELDS = {"controls": (), "curiosity": "", "gym_env": "", "gym_budget": "paper"}
"""Fields that runs stored before them lack, with what those runs did: no controls, a curiosity search."""


class ConfigError(ValueError):
    """A search configuration is malformed; the message names the field in one line."""


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """Everything that decides what a search evaluates and how."""

    space: str = "curiosity"
    """Program space to enumerate."""
    max_ops: int = 7
    """Largest program size (operations) enumerated."""
    dedup: bool = True
    """Remove behavioural duplicates (SPEC §3.2) before evaluating."""
    dedup_steps: int = 8
    """Environment steps each candidate runs for its duplicate signature."""
    env: str = "empty"
    """Gridworld preset the search evaluates on (``envs.gridworld_config.PRESETS``)."""
    seeds: tuple[int, ...] = PAPER_SEEDS
    """Trial seeds of the search stage, one agent lifetime each."""
    lifetime_steps: int = 1000
    """Env steps per environment in one lifetime."""
    num_envs: int = 5
    """Parallel environments per trial."""
    checkpoint_every: int = 108
    """Env steps per environment between early-stopping checks."""
    early_stopping: bool = True
    """Stop programs whose partial curve falls below the cutoffs (SPEC §3.4)."""
    top_k: int = 250
    """Completed programs the cutoffs are computed from."""
    num_stdevs: float = 2.0
    """Standard deviations below the top programs' mean where the cutoff lies."""
    batch_size: int = 56
    """Programs selected per batch; the predictor refits between batches."""
    epsilon: float = 0.1
    """Share of each batch picked at random rather than by predicted score."""
    selection_seed: int = 0
    """Seed of the random picks, the duplicate signatures and the recheck sample."""
    limit: int | None = None
    """Most programs the search stage evaluates; None evaluates every unique program."""
    recheck_sample: int = 100
    """Stopped programs re-evaluated in full to check what early stopping lost."""
    fresh_top_k: int = 20
    """Best completed programs re-evaluated on fresh seeds."""
    fresh_seeds: tuple[int, ...] = (1004, 1104, 1204, 1304, 1404)
    """Seeds of the fresh re-evaluation; disjoint from ``seeds``."""
    controls: tuple[str, ...] = CONTROLS
    """Reference programs (``results/programs/NAME.json``) of the searched space, evaluated in
    full on the search seeds and on the fresh seeds, in the same harness, so that every discovery
    is compared with them seed by seed."""
    curiosity: str = ""
    """Combiner searches: the fixed curiosity program every combiner runs with (a reference name
    or a program file, ``metacurio.core.program_io.resolve``); empty for curiosity searches."""
    gym_env: str = ""
    """Combiner searches: the gymnasium environment id they evaluate on; empty for curiosity searches."""
    gym_budget: str = "paper"
    """Combiner searches: the ``metacurio.agent.gym_presets`` preset of ``gym_env`` whose agent
    (rollout length, minibatches, episode time limit) they use; ``lifetime_steps`` and
    ``num_envs`` of this config replace its lifetime and environment count."""

    def __post_init__(self):
        object.__setattr__(self, "seeds", _seeds(self.seeds, "seeds"))
        object.__setattr__(self, "fresh_seeds", _seeds(self.fresh_seeds, "fresh_seeds"))
        object.__setattr__(self, "controls", _names(self.controls, "controls"))
        for name in ("dedup", "early_stopping"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"config field {name} must be true or false, got {getattr(self, name)!r}")
        if self.space not in SPACES:
            raise ConfigError(f"config field space must be one of {', '.join(SPACES)}, got {self.space!r}")
        _check_space_fields(self)
        if self.env not in gridworld_config.PRESETS:
            raise ConfigError(f"config field env must be one of {', '.join(gridworld_config.PRESETS)}, got {self.env!r}")
        for name in ("max_ops", "dedup_steps", "lifetime_steps", "num_envs", "checkpoint_every", "top_k", "batch_size"):
            _integer(self, name, minimum=1)
        for name in ("recheck_sample", "fresh_top_k", "selection_seed"):
            _integer(self, name, minimum=0)
        try:
            arguments.check_max_ops(self.max_ops, self.space, "config field max_ops")
        except arguments.ArgumentError as err:
            raise ConfigError(str(err)) from None
        if self.limit is not None:
            _integer(self, "limit", minimum=1)
        for name in ("num_stdevs", "epsilon"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"config field {name} must be a finite number, got {value!r}")
        if not 0.0 <= self.epsilon <= 1.0:
            raise ConfigError(f"config field epsilon must be in [0, 1], got {self.epsilon}")
        if set(self.seeds) & set(self.fresh_seeds):
            raise ConfigError("config fields seeds and fresh_seeds must not share a seed")
        try:
            self.ppo()
        except ValueError as err:
            raise ConfigError(f"config gives an impossible agent: {err}") from None

    def ppo(self) -> PPOConfig:
        """The search's PPO agent (the gridworld paper's, or ``gym_budget``'s for combiners) with
        this config's lifetime and number of environments."""
        base = GRIDWORLD_PAPER if self.space == "curiosity" else gym_presets.preset(self.gym_env, self.gym_budget).ppo
        return dataclasses.replace(base, lifetime_steps=self.lifetime_steps, num_envs=self.num_envs)

    def grid(self) -> gridworld_config.GridConfig:
        return gridworld_config.PRESETS[self.env]

    def gym_preset(self) -> gym_presets.GymPreset:
        """A combiner search's environment, agent, lifetime and search seeds."""
        base = gym_presets.preset(self.gym_env, self.gym_budget)
        return dataclasses.replace(base, ppo=self.ppo(), seeds=self.seeds)

    @property
    def env_name(self) -> str:
        """The ``env`` column of this search's evaluations."""
        return f"gridworld-{self.env}" if self.space == "curiosity" else self.gym_env

    @property
    def score_name(self) -> str:
        """What a score of this search measures, for reports and the command line."""
        return "coverage" if self.space == "curiosity" else f"{self.gym_env} return"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> "SearchConfig":
        try:
            data = json.loads(text)
        except (TypeError, json.JSONDecodeError) as err:
            raise ConfigError(f"config is not valid JSON: {err}") from None
        if not isinstance(data, dict):
            raise ConfigError("config must be a JSON object")
        return from_dict(data)


def from_dict(data: dict[str, Any]) -> SearchConfig:
    """A config from its fields; every field must be named, and nothing else.

    Runs stored before a field of ``ADDED_FIELDS`` existed lack it and get what they did.
    """
    data = {**ADDED_FIELDS, **data}
    names = {f.name for f in dataclasses.fields(SearchConfig)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown config field {unknown[0]!r}")
    missing = sorted(names - set(data))
    if missing:
        raise ConfigError(f"config lacks field {missing[0]!r}")
    return SearchConfig(**data)


def with_fields(base: SearchConfig, fields: dict[str, Any]) -> SearchConfig:
    """``base`` with some fields replaced; unknown names and bad values raise ConfigError."""
    return from_dict({**dataclasses.asdict(base), **fields})


def load_file(path: str | Path, base: SearchConfig) -> SearchConfig:
    """``base`` with the fields of a JSON object file replaced."""
    try:
        data = arguments.loads(arguments.read_text(Path(path), "config file"), f"config file {path}")
    except arguments.ArgumentError as err:
        raise ConfigError(str(err)) from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror or err}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"config file {path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a JSON object of config fields")
    try:
        return with_fields(base, data)
    except ConfigError as err:
        raise ConfigError(f"config file {path}: {err}") from None


def _seeds(value, name: str) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ConfigError(f"config field {name} must be a list of integers, got {value!r}")
    seeds = tuple(value)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= arguments.MAX_SEED for s in seeds):
        raise ConfigError(f"config field {name} must be a non-empty list of integers from 0 to 2**32 - 1, got {list(seeds)}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"config field {name} repeats a seed: {list(seeds)}")
    return seeds


def _names(value, name: str) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ConfigError(f"config field {name} must be a list of reference program names, got {value!r}")
    names = tuple(value)
    if any(not isinstance(n, str) or not n for n in names):
        raise ConfigError(f"config field {name} must be a list of reference program names, got {list(names)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"config field {name} repeats a name: {list(names)}")
    return names


def _check_space_fields(config: SearchConfig) -> None:
    """A combiner search names its fixed curiosity program and its environment; a curiosity search neither."""
    if config.space == "curiosity":
        for name in ("curiosity", "gym_env"):
            if getattr(config, name):
                raise ConfigError(f"config field {name} is for combiner searches; this search is over curiosity programs")
        return
    for name in ("curiosity", "gym_env", "gym_budget"):
        if not isinstance(getattr(config, name), str) or not getattr(config, name):
            raise ConfigError(f"config field {name} must name what a combiner search needs, got {getattr(config, name)!r}")
    try:
        gym_presets.preset(config.gym_env, config.gym_budget)
    except gym_presets.PresetError as err:
        raise ConfigError(f"config field gym_budget: {err}") from None


def _integer(config: SearchConfig, name: str, minimum: int) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"config field {name} must be an integer ≥ {minimum}, got {value!r}")


PAPER = SearchConfig()
"""The ICLR gridworld search (2-96): ≤ 7 ops, 5 trials of 5 envs × 1,000 steps, checks every
108 steps against the top 250, batches of 56 with 10 % random picks."""

SMALL = dataclasses.replace(
    PAPER,
    max_ops=5,
    seeds=PAPER_SEEDS[:3],
    lifetime_steps=500,
    checkpoint_every=96,
    top_k=50,
    batch_size=16,
    limit=200,
    recheck_sample=20,
    fresh_top_k=10,
    fresh_seeds=(1004, 1104, 1204),
)
"""An hour or so on a workstation: the ≤ 5-op space sampled by the predictor, 3 shorter trials."""

TINY = dataclasses.replace(
    PAPER,
    max_ops=4,
    seeds=PAPER_SEEDS[:2],
    lifetime_steps=240,
    num_envs=2,
    checkpoint_every=48,
    top_k=4,
    batch_size=4,
    limit=8,
    recheck_sample=2,
    fresh_top_k=2,
    fresh_seeds=(1004, 1104),
)
"""A smoke test, about a minute on 2 cores with a warm compile cache: 8 programs of ≤ 4 ops,
2 trials of 2 envs × 240 steps, checks every 48 steps."""

COMBINER = SearchConfig(
    space="combiner",
    max_ops=3,
    curiosity="fast",
    gym_env="LunarLander-v3",
    gym_budget="paper",
    dedup_steps=256,
    seeds=PAPER_SEEDS[:2],
    lifetime_steps=10_000,
    num_envs=5,
    checkpoint_every=768,
    top_k=10,
    batch_size=8,
    limit=None,
    recheck_sample=4,
    fresh_top_k=5,
    fresh_seeds=(1004, 1104, 1204),
    controls=COMBINER_CONTROLS,
)
"""The combiner search on Lunar Lander at the paper's transfer budget (5 envs × 39 updates of 256
steps, 500-step episodes) with FAST fixed: 2 search seeds, checks every 3 updates against the
top 10, the best 5 on 3 fresh seeds. Give ``--limit``: a lifetime costs ~12 CPU-seconds."""

COMBINER_TINY = dataclasses.replace(
    COMBINER,
    max_ops=1,
    gym_budget="quick",
    dedup_steps=64,
    lifetime_steps=256,
    num_envs=2,
    checkpoint_every=128,
    top_k=2,
    batch_size=2,
    limit=4,
    recheck_sample=1,
    fresh_top_k=1,
    fresh_seeds=(1004,),
)
"""A smoke test, seconds per lifetime: 4 one-op combiners, 2 trials of 2 envs × 4 updates of
64 steps, a check after 2 updates."""

PRESETS = {"tiny": TINY, "small": SMALL, "paper": PAPER, "combiner-tiny": COMBINER_TINY, "combiner": COMBINER}


def preset(name: str) -> SearchConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]
