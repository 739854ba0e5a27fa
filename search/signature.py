"""Behavioural duplicate removal (SPEC §3.2): run candidates briefly, merge those that reward alike.

Every candidate is called for a few steps on the same real gridworld transitions (5 empty rooms
driven by random actions, one seed for every program) and learns as it goes: each call computes
the reward, then takes one Adam step, as in an agent's lifetime. Each reward stream is then scaled
the way PPO scales rewards (``ReturnNormalizer``: running std of the discounted return, clip ±10),
so programs that differ by a positive factor look alike. Streams that agree within rtol/atol are
one class, kept as its smallest member. A program whose reward or loss is ever non-finite is
dropped with its error, never kept as a representative.

This fixes the reference's quirks (original-system §6): batch 5 instead of 1, real observations
instead of noise, 8 learning steps, a tolerance instead of exact float equality, normalised
rather than raw rewards, and failing programs dropped instead of collapsed into one survivor.

Programs run as data through the interpreter, one compile per layout. A program's call costs
more in a larger layout: every node position pays for the heavy instructions of the dispatch
table (ensembles, 100-item lists), taken or not, and Adam steps every slot the layout holds.
FAST's signature costs ~9× more in the whole-space layout than in its own. So the candidates are
split into a few layouts that each hold what their programs use (``plan_layouts``), trading
modelled compile time against run time. Batches of one layout's programs run on the search's
executor (``search.executor``, ``SignatureJob``): in this process, or on Ray actors when the
modelled work pays for starting them.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import itertools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from envs import gridworld, gridworld_config
from metacurio.agent.config import GRIDWORLD_PAPER
from metacurio.agent.ppo import ReturnNormalizer
from metacurio.core.interpreter import Interpreter
from metacurio.core.layout import (
    NOP,
    Encoding,
    Layout,
    RegisterKind,
    SlotBank,
    bank_element_type,
    encode,
    instruction_output,
    stack_encodings,
    state_bank,
)
from metacurio.errors import failure
from metacurio.jax_setup import set_up_process
from search.executor import make_executor
from metacurio.core.program import CURIOSITY, Program
from metacurio.core.specs import CuriosityBatch, EnvSpec, one_hot_actions
from operations.kernels import init_state
from operations.registry import get_op
from operations.state_types import STATE_TYPES

BATCH = GRIDWORLD_PAPER.num_envs
"""Parallel environments, i.e. transitions per program call (the agent's N)."""
DEFAULT_CHUNK = 64
"""Programs per compiled call: large enough to hide dispatch, small enough to pad cheaply."""
PRIOR_COUNT = 1e-12
"""Weight of the return normaliser's prior (mean 0, variance 1). PPO starts from 1e-4, which the
thousands of returns of a lifetime wash out; over a few signature steps it would dominate small
rewards and keep x apart from 2x, which PPO treats alike after its first steps."""
SIGNATURE_ENV = EnvSpec(
    obs_shape=(gridworld_config.EMPTY.size, gridworld_config.EMPTY.size, 3), action_dim=gridworld.NUM_ACTIONS, batch_size=BATCH
)
"""The paper's empty room seen by a batch of ``BATCH`` transitions."""
WARMUP_STEPS = 50
"""Random steps before the recorded ones. Every room starts in the same pose, and from there a few
random steps (most actions do nothing or only turn) show a handful of near-identical states, on
which different memories and queries (kNN on s versus on s') look alike; after 50 steps the
five agents are spread over the room."""

RUN_SECONDS_PER_NODE = 0.54e-3
"""Cost model, fitted to FAST run in six layouts from its own to the whole space's (one loaded
CPU core, 8-step signatures; ±30 %): seconds per program and node position."""
RUN_SECONDS_PER_DISPATCH_FLOAT = 12.4e-9
"""Cost model: per program, node position and ``instruction_floats`` of every instruction in
the dispatch table (a differentiated switch pays for all its branches, taken or not)."""
RUN_SECONDS_PER_FLOAT = 47e-9
"""Cost model: per program and float of state the layout carries (Adam moments included)."""
COMPILE_SECONDS = 8.0
"""Cost model: fixed compile cost of a layout (same machine)."""
COMPILE_SECONDS_PER_INSTRUCTION = 1.5
"""Cost model: compile cost per instruction of the dispatch table."""


@dataclasses.dataclass(frozen=True)
class Dedup:
    """Outcome of duplicate removal over a list of candidates."""

    unique: list[Program]
    """One representative per class, in input order."""
    duplicate_of: dict[str, str]
    """Program id → id of its class's kept representative (representatives are not listed)."""
    failed: dict[str, str]
    """Program id → why its signature failed."""
    funnel: list[tuple[str, int, str]]
    """('signature failed', n, most common error), ('duplicates', n, ''), ('unique', n, '')."""
    signatures: np.ndarray
    """(programs, steps·batch) normalised reward streams in input order; NaN rows for failures."""


@struct.dataclass
class Transitions:
    """What every program is called on, one row per step."""

    batches: CuriosityBatch
    """obs, one-hot action, next_obs with a leading (steps,) axis, then the batch axis."""
    done: jax.Array
    """(steps, batch) episode ended at that step; resets the normaliser's return there."""


def gridworld_transitions(steps: int, key: jax.Array, config: gridworld_config.GridConfig = gridworld_config.EMPTY) -> Transitions:
    """``steps`` transitions of ``BATCH`` rooms under uniformly random actions, after
    ``WARMUP_STEPS`` unrecorded ones."""
    reset_key, step_key = jax.random.split(key)
    reset = jax.vmap(lambda k: gridworld.reset(k, config))
    step = jax.vmap(lambda k, s, a: gridworld.step(k, s, a, config))

    def body(carry, key):
        obs, state = carry
        action_key, env_key = jax.random.split(key)
        action = jax.random.randint(action_key, (BATCH,), 0, gridworld.NUM_ACTIONS)
        next_obs, state, _, terminated, truncated, info = step(jax.random.split(env_key, BATCH), state, action)
        batch = CuriosityBatch(obs, one_hot_actions(action, SIGNATURE_ENV), info["final_obs"])
        return (next_obs, state), (batch, terminated | truncated)

    start = reset(jax.random.split(reset_key, BATCH))
    _, (batches, done) = jax.lax.scan(body, start, jax.random.split(step_key, WARMUP_STEPS + steps))
    return jax.tree.map(lambda x: x[WARMUP_STEPS:], Transitions(batches, done))


def normalise(rewards: jax.Array, done: jax.Array) -> jax.Array:
    """PPO's reward scaling applied to a (steps, batch) reward stream."""
    start = ReturnNormalizer(
        ret=jnp.zeros(rewards.shape[1], jnp.float32),
        mean=jnp.zeros((), jnp.float32),
        var=jnp.ones((), jnp.float32),
        count=jnp.full((), PRIOR_COUNT, jnp.float32),
    )

    def body(normaliser, step):
        reward, ended = step
        scaled, normaliser = normaliser.normalize(reward, ended, GRIDWORLD_PAPER.gamma, GRIDWORLD_PAPER.reward_clip)
        return normaliser, scaled

    return jax.lax.scan(body, start, (rewards, done))[1]


def _transitions_and_key(steps: int, seed: int) -> tuple[Transitions, jax.Array]:
    rollout_key, init_key = jax.random.split(jax.random.PRNGKey(seed))
    return jax.jit(gridworld_transitions, static_argnums=0)(steps, rollout_key), init_key


FAILURES = ("reward", "loss", "normalised reward")
"""What a step can fail on, in the order checked."""


@functools.lru_cache(maxsize=32)
def _signature_fn(layout: Layout):
    """(initial state, transitions, stacked encodings) -> (scaled rewards, failures) per program.

    On a CPU the programs of a chunk run one after another (``lax.map``): under ``vmap`` the
    interpreter's switch computes every instruction for every program, which measured slower per
    program than running them in turn. Accelerators take the chunk as one vmapped batch.
    """
    interpreter = Interpreter(layout)

    def one(state, transitions: Transitions, encoding):
        def body(state, batch):
            reward, state, metrics = interpreter.step(state, batch, encoding)
            return state, (reward, metrics["loss"])

        _, (rewards, losses) = jax.lax.scan(body, state, transitions.batches)
        scaled = normalise(rewards, transitions.done)
        failures = jnp.stack(
            [~jnp.all(jnp.isfinite(rewards), axis=1), ~jnp.isfinite(losses), ~jnp.all(jnp.isfinite(scaled), axis=1)]
        )
        return scaled, failures

    def run(state, transitions, encodings):
        width = None if jax.default_backend() == "cpu" else jax.tree.leaves(encodings)[0].shape[0]
        return jax.lax.map(lambda e: one(state, transitions, e), encodings, batch_size=width)

    return jax.jit(run)


class LayoutRunner:
    """Signatures of encoded programs of one layout: compiled once, run in chunks of ``chunk``."""

    def __init__(self, layout: Layout, steps: int = 8, seed: int = 0, chunk: int = DEFAULT_CHUNK):
        self.layout = layout
        self.steps = steps
        self.chunk = chunk
        self.transitions, init_key = _transitions_and_key(steps, seed)
        self.state = jax.jit(Interpreter(layout).init, static_argnums=1)(init_key, SIGNATURE_ENV)
        self._compiled = None

    def compile(self, example: Encoding) -> None:
        """Trace and compile for ``example``'s shapes (any one encoding); the persistent cache applies."""
        if self._compiled is None:
            encodings = stack_encodings([example] * self.chunk)
            self._compiled = _signature_fn(self.layout).lower(self.state, self.transitions, encodings).compile()

    def run(self, encodings: Encoding) -> tuple[np.ndarray, list[str | None]]:
        """Stacked encodings of n programs -> (n, steps·batch) scaled rewards (NaN rows for
        failures) and each one's error."""
        count = len(encodings.output)
        rows = np.full((count, self.steps * BATCH), np.nan)
        errors: list[str | None] = [None] * count
        if count:
            self.compile(jax.tree.map(lambda x: x[0], encodings))
        for start in range(0, count, self.chunk):
            stop = min(start + self.chunk, count)
            part = np.concatenate([np.arange(start, stop), np.full(self.chunk - (stop - start), stop - 1)])
            chunk = jax.tree.map(lambda x: x[part], encodings)
            scaled, failures = jax.device_get(self._compiled(self.state, self.transitions, chunk))
            for j, i in enumerate(range(start, stop)):
                errors[i] = _failure_message(failures[j], self.steps)
                if errors[i] is None:
                    rows[i] = scaled[j].reshape(-1)
        return rows, errors


@functools.lru_cache(maxsize=64)
def _runner(layout: Layout, steps: int, seed: int, chunk: int) -> LayoutRunner:
    """Memoised so that a worker's later batches of a layout, and a second duplicate removal in
    the same process (the test suite), reuse its compile."""
    return LayoutRunner(layout, steps, seed, chunk)


@dataclasses.dataclass(frozen=True)
class SignatureTask:
    """One batch of one layout's encoded programs."""

    layout: Layout
    chunk: int
    encodings: Encoding
    members: tuple[int, ...]
    """Positions of the encoded programs in the caller's list."""


@dataclasses.dataclass(frozen=True)
class SignatureJob:
    """Every duplicate-removal worker's job (``search.executor.Job``): ``steps`` learning steps
    on the transitions drawn from ``seed``."""

    steps: int
    seed: int

    def start(self) -> "SignatureJob":
        set_up_process()
        return self

    def run(self, task: SignatureTask) -> tuple[np.ndarray, list[str | None]]:
        return _runner(task.layout, self.steps, self.seed, task.chunk).run(task.encodings)


def encode_programs(programs: Sequence[Program], layout: Layout) -> tuple[Encoding | None, list[int], dict[int, str]]:
    """Stacked encodings of the programs that encode, their positions, and the others' errors."""
    encodings, positions, errors = [], [], {}
    for i, program in enumerate(programs):
        try:
            encodings.append(encode(program, layout))
            positions.append(i)
        except Exception as err:  # noqa: BLE001 - whatever a program raises is its recorded failure
            errors[i] = failure(err)
    return (stack_encodings(encodings) if encodings else None), positions, errors


def _failure_message(failures: np.ndarray, steps: int) -> str | None:
    """The first failing step and what failed there, or None."""
    bad_steps = np.flatnonzero(failures.any(axis=0))
    if not bad_steps.size:
        return None
    step = int(bad_steps[0])
    what = FAILURES[int(np.flatnonzero(failures[:, step])[0])]
    return f"non-finite {what} at step {step + 1} of {steps}"


# Layout planning


@functools.lru_cache(maxsize=None)
def _slot_floats(bank: SlotBank) -> int:
    """Floats one slot of a bank carries through a call: parameters and Adam's two moments, or state."""
    state_type = STATE_TYPES[bank.state_type]
    shapes = jax.eval_shape(
        lambda key: init_state(bank.state_type, key, SIGNATURE_ENV, bank_element_type(bank)), jax.random.PRNGKey(0)
    )
    floats = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))
    return 3 * floats if state_type.trainable else floats


@functools.lru_cache(maxsize=None)
def _register_floats(kind: RegisterKind) -> int:
    return BATCH * int(np.prod(kind.row_shape(SIGNATURE_ENV)))


@functools.lru_cache(maxsize=None)
def instruction_floats(instruction: tuple[str, tuple[str, ...]]) -> int:
    """Floats an instruction reads and writes, its trainable parameters included: roughly what
    differentiating a dispatch over it keeps at every node position, taken or not."""
    name, kinds = instruction
    if name == NOP[0]:
        return 0
    op = get_op(name)
    out = instruction_output(name, kinds)
    floats = sum(_register_floats(k) for k in kinds) + (_register_floats(out) if out else 0)
    bank = state_bank(op, kinds)
    if bank and STATE_TYPES[op.state].trainable:
        floats += _slot_floats(bank) // 3
    return floats


@functools.lru_cache(maxsize=4096)
def run_cost(layout: Layout) -> float:
    """Modelled seconds per program signature in this layout (see RUN_SECONDS_*)."""
    dispatch = sum(instruction_floats(i) for i in layout.instructions)
    state = sum(count * _slot_floats(bank) for bank, count in layout.banks)
    per_node = RUN_SECONDS_PER_NODE + RUN_SECONDS_PER_DISPATCH_FLOAT * dispatch
    return layout.max_nodes * per_node + RUN_SECONDS_PER_FLOAT * state


def compile_cost(layout: Layout) -> float:
    """Modelled seconds to compile a layout's signature function."""
    return COMPILE_SECONDS + COMPILE_SECONDS_PER_INSTRUCTION * len(layout.instructions)


HEAVY_FLOATS = 10_000
"""Instructions at least this large (``instruction_floats``) define the groups the planner places."""


def plan_layouts(
    programs: Sequence[Program], weight: float = 1.0
) -> tuple[list[tuple[Layout, list[int]]], dict[int, str]]:
    """Split programs into layouts, trading one compile per layout against lighter runs.

    Programs are grouped by what dominates a call's cost (their heavy instructions and their
    state; nearly every program has its own full instruction set). Groups, largest first, join
    the layout where they add the least modelled time or start their own. Returns (layout,
    program indices) pairs and the programs that could not be laid out, with their errors.
    ``weight``: programs each one stands for (a benchmark plans a sample as the whole space).
    """
    grouped: dict[tuple, list] = {}
    errors: dict[int, str] = {}
    for index, program in enumerate(programs):
        try:
            needs = Layout.for_programs([program])
        except Exception as err:  # noqa: BLE001 - whatever a program raises is its recorded failure
            errors[index] = failure(err)
            continue
        key = (frozenset(i for i in needs.instructions if instruction_floats(i) >= HEAVY_FLOATS), needs.banks)
        if key in grouped:
            grouped[key][0] = grouped[key][0].union(needs)
            grouped[key][1].append(index)
        else:
            grouped[key] = [needs, [index]]
    plans: list[tuple[Layout, list[int]]] = []
    for needs, members in sorted(grouped.values(), key=lambda group: (-len(group[1]), group[1][0])):
        options = [(_plan_cost(needs, len(members), weight), len(plans), needs)]
        for k, (layout, planned) in enumerate(plans):
            merged = layout.union(needs)
            added = _plan_cost(merged, len(planned) + len(members), weight) - _plan_cost(layout, len(planned), weight)
            options.append((added, k, merged))
        _, best, layout = min(options, key=lambda option: option[:2])
        if best == len(plans):
            plans.append((layout, list(members)))
        else:
            plans[best] = (layout, plans[best][1] + members)
    return [(layout, sorted(members)) for layout, members in plans], errors


def _plan_cost(layout: Layout, count: int, weight: float) -> float:
    return compile_cost(layout) + weight * count * run_cost(layout)


# Classes


PROJECTIONS = 4
"""Random projections that index class representatives (a lookup touches at most 2^4 cells)."""


def equivalence_classes(signatures: np.ndarray, order: Sequence[int], rtol: float, atol: float) -> np.ndarray:
    """The representative row of every row in ``order`` (-1 for rows not in it).

    Rows are taken in ``order``; each joins the earliest representative it matches
    (|x − r| ≤ atol + rtol·|r| everywhere, numpy's ``isclose`` against the representative) or
    becomes a representative itself. Classes are therefore disjoint and do not depend on
    anything but the order. Candidates come from a grid over a few random projections: a
    matching representative differs from the row by at most ``reach`` in every coordinate,
    hence in every projection with unit L1 weights, so it lies in a neighbouring cell.
    """
    representative = np.full(len(signatures), -1)
    if not len(order):
        return representative
    order = np.asarray(order)
    rows = signatures[order]
    scale = float(np.max(np.abs(rows)))
    reach = atol + rtol * scale + 1e-9 * scale
    width = 2 * reach if reach > 0 else 1.0
    weights = np.random.default_rng(0).standard_normal((rows.shape[1], PROJECTIONS))
    weights /= np.abs(weights).sum(axis=0)
    projected = rows @ weights
    own = np.floor(projected / width).astype(np.int64)
    low = np.floor((projected - reach) / width).astype(np.int64)
    high = np.floor((projected + reach) / width).astype(np.int64)
    cells: dict[tuple, list[int]] = collections.defaultdict(list)
    kept: list[int] = []
    for position, row in enumerate(order):
        x = signatures[row]
        candidates = set()
        for cell in itertools.product(*({lo, hi} for lo, hi in zip(low[position], high[position]))):
            candidates.update(cells.get(cell, ()))
        match = next((k for k in sorted(candidates) if _close(x, signatures[kept[k]], rtol, atol)), None)
        if match is None:
            cells[tuple(own[position])].append(len(kept))
            kept.append(int(row))
            representative[row] = row
        else:
            representative[row] = kept[match]
    return representative


def _close(x: np.ndarray, reference: np.ndarray, rtol: float, atol: float) -> bool:
    return bool(np.all(np.abs(x - reference) <= atol + rtol * np.abs(reference)))


# Public entry points


def signatures(
    programs: Sequence[Program],
    steps: int = 8,
    seed: int = 0,
    chunk: int = DEFAULT_CHUNK,
    executor: str = "local",
    workers: int | None = None,
    address: str | None = None,
) -> tuple[np.ndarray, list[str | None]]:
    """(programs, steps·batch) normalised reward streams (float64, NaN rows for failures) and
    each program's error (None when its signature is complete).

    ``executor`` runs the batches (``search.executor.make_executor``): "local" in this process,
    "ray" on Ray actors (``workers``, ``address``) when the modelled work is worth starting them,
    else in this process too. Results do not depend on where they ran.
    """
    programs = list(programs)
    check_arguments(programs, steps, chunk)
    rows = np.full((len(programs), steps * BATCH), np.nan)
    plans, prepare_errors = plan_layouts(programs)
    errors: list[str | None] = [prepare_errors.get(i) for i in range(len(programs))]
    pool = make_executor(_executor_kind(executor, plans, workers), SignatureJob(steps, seed), workers, address)
    try:
        tasks = []
        for layout, members, layout_chunk in _tasks(plans, chunk, pool.workers):
            stacked, positions, encode_errors = encode_programs([programs[i] for i in members], layout)
            for j, error in encode_errors.items():
                errors[members[j]] = error
            if stacked is not None:
                tasks.append(SignatureTask(layout, layout_chunk, stacked, tuple(members[j] for j in positions)))
        for outcome in pool.map(tasks):
            indices = list(outcome.task.members)
            task_rows, task_errors = outcome.result or (None, [outcome.error] * len(indices))
            if task_rows is not None:
                rows[indices] = task_rows
            for i, error in zip(indices, task_errors):
                errors[i] = error
    finally:
        pool.close()
    return rows, errors


PARALLEL_MIN_SECONDS = 120.0
"""Modelled work below which starting worker processes (a JAX import and compiles each) does not pay."""


def _executor_kind(executor: str, plans: list[tuple[Layout, list[int]]], workers: int | None) -> str:
    """``executor``, unless the work runs on an accelerator, or is too small to pay for starting
    workers and no worker count was asked for."""
    if executor == "local" or jax.default_backend() != "cpu":
        return "local"
    if workers is not None:
        return executor
    modelled = sum(compile_cost(layout) + len(members) * run_cost(layout) for layout, members in plans)
    return executor if modelled >= PARALLEL_MIN_SECONDS else "local"


def _tasks(plans: list[tuple[Layout, list[int]]], chunk: int, workers: int):
    """(layout, program indices, chunk) batches in submission order.

    With several workers, layouts are cut into batches so that the workers stay balanced; all
    first batches go first, so a layout's later batches find its compile in the persistent cache.
    """
    total = sum(len(members) for _, members in plans)
    size = total if workers == 1 else max(chunk, -(-total // (4 * workers)))
    batches = []
    for layout, members in plans:
        layout_chunk = min(chunk, len(members))
        cost = compile_cost(layout) + len(members) * run_cost(layout)
        for k, start in enumerate(range(0, len(members), size)):
            batches.append(((k, -cost), (layout, members[start : start + size], layout_chunk)))
    return [task for _, task in sorted(batches, key=lambda item: item[0])]


def deduplicate(
    programs: Sequence[Program],
    steps: int = 8,
    seed: int = 0,
    rtol: float = 1e-3,
    atol: float = 1e-5,
    chunk: int = DEFAULT_CHUNK,
    executor: str = "local",
    workers: int | None = None,
    address: str | None = None,
) -> Dedup:
    """Drop failing programs and keep the smallest (fewest ops, then earliest) of each class;
    ``executor``, ``workers`` and ``address`` say where signatures run (``signatures``)."""
    if rtol < 0 or atol < 0:
        raise ValueError(f"tolerances must be non-negative, got rtol={rtol}, atol={atol}")
    programs = list(programs)
    rows, errors = signatures(programs, steps, seed, chunk, executor, workers, address)
    return dedup_from_signatures(programs, rows, errors, rtol, atol)


def dedup_from_signatures(programs: Sequence[Program], rows: np.ndarray, errors: Sequence[str | None], rtol: float, atol: float) -> Dedup:
    """Classes of programs from their signature rows and errors (``signatures``, or the
    combiners' ``search.combiner_signature``): failures dropped, the smallest of each class kept."""
    ok = [i for i, error in enumerate(errors) if error is None]
    representative = equivalence_classes(rows, sorted(ok, key=lambda i: (programs[i].size, i)), rtol, atol)
    unique = [p for i, p in enumerate(programs) if representative[i] == i]
    duplicate_of = {
        programs[i].id: programs[representative[i]].id for i in ok if representative[i] != i
    }
    failed = {programs[i].id: error for i, error in enumerate(errors) if error is not None}
    common = collections.Counter(failed.values()).most_common(1)
    funnel = [
        ("signature failed", len(failed), f"e.g. {common[0][0]}" if common else ""),
        ("duplicates", len(duplicate_of), ""),
        ("unique", len(unique), ""),
    ]
    return Dedup(unique=unique, duplicate_of=duplicate_of, failed=failed, funnel=funnel, signatures=rows)


def check_arguments(
    programs: list[Program],
    steps: int,
    chunk: int,
    kind: str = CURIOSITY,
    runs_on: str = "signatures run curiosity programs on gridworld transitions",
) -> None:
    """One-line refusals shared by every signature: bad steps or chunk, a program of another kind
    than ``kind`` (``runs_on`` says what the signature runs), a program given twice."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    seen: dict[str, int] = {}
    for i, program in enumerate(programs):
        if program.kind != kind:
            raise ValueError(f"program {program.id} (position {i}) is a {program.kind} program; {runs_on}")
        if program.id in seen:
            raise ValueError(f"program {program.id} appears twice (positions {seen[program.id]} and {i})")
        seen[program.id] = i
