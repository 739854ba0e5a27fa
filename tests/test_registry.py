"""Contract tests run over every registered operation."""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import IMAGE_ENV, ROOT, VECTOR_ENV, CONTINUOUS_ENV, random_value

from operations import kernels
from operations import types as T
from operations.base import OpDef, TypeRuleError, derive_facts
from operations.kernels import apply_fn, init_state
from operations.kernels.values import ListValue
from operations.registry import REGISTRY, ops_for_space
from operations.state_types import STATE_TYPES
from operations.types import GradFacts

GRAD_ENV = dataclasses.replace(IMAGE_ENV, batch_size=16)
"""Enough rows that max/min/clip send some gradient to every input."""
TYPE_POOL = [T.Real, T.NonNeg, T.Feature, T.Action, T.Obs, T.ListOf(T.Feature), T.ListOf(T.Action), T.ListOf(T.Real)]


def well_typed_inputs(op: OpDef, limit: int = 2) -> list[tuple[T.ValueType, ...]]:
    found = []
    for combo in itertools.product(TYPE_POOL, repeat=op.arity):
        try:
            op.output_type(combo)
        except TypeRuleError:
            continue
        found.append(combo)
        if len(found) == limit:
            break
    return found


def setup(op: OpDef, types, env, seed=0):
    key = jax.random.PRNGKey(seed)
    keys = jax.random.split(key, op.arity + 1)
    inputs = tuple(random_value(k, t, env) for k, t in zip(keys, types))
    params = state = None
    if op.state:
        elem = types[0] if types else None
        p, s = init_state(op.state, keys[-1], env, elem)
        if STATE_TYPES[op.state].read_only:
            params = p
        else:
            params, state = p, s
    return inputs, state, params


def expected_shape(t: T.ValueType, env) -> tuple:
    if t.is_scalar:
        return (env.batch_size,)
    if t.kind == T.FEATURE:
        return (env.batch_size, 32)
    if t.kind == T.ACTION:
        return (env.batch_size, env.action_dim)
    raise AssertionError(t)


CASES = [(op, types) for op in REGISTRY.values() for types in well_typed_inputs(op)]


def case_id(case):
    op, types = case
    return f"{op.name}-{'x'.join(t.ascii for t in types) or 'nullary'}"


def test_registry_sizes():
    assert len(ops_for_space("curiosity", enumerable_only=True)) >= 34
    assert len(ops_for_space("combiner", enumerable_only=True)) >= 14


FAMILIES = ("neural", "memory", "vectors", "lists", "scalars")


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_op_has_a_kernel(name):
    assert callable(apply_fn(name))


@pytest.mark.parametrize("name", list(kernels.KERNELS))
def test_every_kernel_names_a_registered_op(name):
    assert name in REGISTRY


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_implements_exactly_what_it_declares(family):
    """Together with the merge refusing duplicates, every op has exactly one kernel."""
    declared = importlib.import_module(f"operations.{family}").OPS
    implemented = importlib.import_module(f"operations.kernels.{family}").KERNELS
    assert sorted(op.name for op in declared) == sorted(implemented)


@pytest.mark.parametrize("name", list(STATE_TYPES))
def test_every_state_type_has_an_init(name):
    assert name in kernels.STATE_INITS


@pytest.mark.parametrize("name", list(kernels.STATE_INITS))
def test_every_state_init_names_a_state_type(name):
    assert name in STATE_TYPES


def test_declarations_import_without_jax():
    # A fresh interpreter: this test process has long since imported JAX.
    code = "import operations.registry, sys; print([m for m in ('jax', 'flax', 'optax') if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_every_op_has_a_well_typed_input():
    untested = [op.name for op in REGISTRY.values() if not well_typed_inputs(op)]
    assert not untested


def check_output(op: OpDef, types, env, out, new_state, state, losses):
    out_type = op.output_type(types)
    if out_type == T.Void:
        assert out is None
    elif out_type.is_list:
        assert isinstance(out, ListValue)
        assert out.items.shape[0] == env.batch_size
        assert out.items.shape[2:] == expected_shape(out_type.elem, env)[1:]
        assert out.mask.shape == (out.items.shape[1],)
    else:
        assert out.shape == expected_shape(out_type, env)
        assert bool(jnp.all(jnp.isfinite(out)))
        if T.is_subtype(out_type, T.NonNeg):
            assert bool(jnp.all(out >= 0)), "a ℝ≥0 output went negative"
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    assert len(losses) == (1 if op.produces_loss else 0)
    for term in losses:
        assert term.shape == (env.batch_size,)


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_op_contract_jit_and_vmap(case):
    """Declared output type and shape under jit; vmap over two seeds equals two single runs."""
    op, types = case
    env = IMAGE_ENV
    kernel = apply_fn(op.name)
    apply = jax.jit(lambda i, s, p: kernel(i, s, p, env))
    runs = [setup(op, types, env, seed) for seed in (0, 1)]
    singles = [apply(*run) for run in runs]
    out, new_state, losses = singles[0]
    check_output(op, types, env, out, new_state, runs[0][1], losses)
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *runs)
    batched = jax.vmap(lambda i, s, p: kernel(i, s, p, env))(*stacked)
    for seed, single in enumerate(singles):
        for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(batched)):
            np.testing.assert_allclose(a, b[seed], rtol=2e-5, atol=2e-5)


ENV_CASES = [
    (op, types)
    for op, types in CASES
    if op.state is not None or any(t.kind in (T.OBS, T.ACTION) or (t.is_list and t.elem.kind == T.ACTION) for t in types)
]


@pytest.mark.parametrize("case", ENV_CASES, ids=[case_id(c) for c in ENV_CASES])
@pytest.mark.parametrize("env", [VECTOR_ENV, CONTINUOUS_ENV], ids=["vector", "continuous"])
def test_op_contract_other_spaces(case, env):
    """Vector observations and continuous actions reach these ops: same contract there."""
    op, types = case
    inputs, state, params = setup(op, types, env)
    kernel = apply_fn(op.name)
    out, new_state, losses = jax.jit(lambda i, s, p: kernel(i, s, p, env))(inputs, state, params)
    check_output(op, types, env, out, new_state, state, losses)


def _gradient_magnitudes(op: OpDef, types, env):
    inputs, state, params = setup(op, types, env)
    weights_key = jax.random.PRNGKey(7)

    def projected(inputs, params):
        out, _, losses = apply_fn(op.name)(inputs, state, params, env)
        if out is None:
            return sum(jnp.sum(t) for t in losses)
        if isinstance(out, ListValue):
            leaf = out.items * out.mask.reshape((1, -1) + (1,) * (out.items.ndim - 2))
        else:
            leaf = out
        return jnp.sum(leaf * jax.random.normal(weights_key, leaf.shape))

    in_grads, param_grads = jax.grad(projected, argnums=(0, 1), allow_int=True)(inputs, params)
    per_input = [
        max((float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grad) if jnp.issubdtype(g.dtype, jnp.floating)), default=0.0)
        for grad in in_grads
    ]
    param_mag = max((float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(param_grads)), default=0.0)
    return per_input, param_mag


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_gradient_facts_match_autodiff(case):
    op, types = case
    per_input, param_mag = _gradient_magnitudes(op, types, GRAD_ENV)
    for slot, magnitude in zip(op.inputs, per_input):
        assert (magnitude > 0) == slot.passes_gradient, f"input {slot.name}: |grad| = {magnitude}"
    trainable = op.state is not None and STATE_TYPES[op.state].trainable
    assert (param_mag > 0) == (op.grad_from_params and trainable), f"params: |grad| = {param_mag}"

    # derive_facts must agree: an output carries a gradient exactly when autodiff finds one
    # from gradient-carrying inputs or from the op's own trainable parameters.
    out_type = op.output_type(types)
    carrying = tuple(GradFacts(carries_gradient=True) for _ in types)
    facts = derive_facts(op, carrying, out_type)
    assert facts.carries_gradient == (any(m > 0 for m in per_input) or param_mag > 0)
    quiet = derive_facts(op, tuple(GradFacts() for _ in types), out_type)
    assert quiet.carries_gradient == (param_mag > 0)
    assert facts.bounded_below == (out_type.is_scalar and T.is_subtype(out_type, T.NonNeg))


def test_trivially_minimisable_rules():
    dist = REGISTRY["L2Distance"]
    trained = GradFacts(carries_gradient=True, trivially_minimisable=True)
    fixed = GradFacts()
    assert derive_facts(dist, (trained, trained), T.NonNeg).trivially_minimisable
    assert not derive_facts(dist, (trained, fixed), T.NonNeg).trivially_minimisable
    assert derive_facts(REGISTRY["Dot"], (trained, fixed), T.Real).trivially_minimisable
    assert not derive_facts(REGISTRY["Detach"], (trained,), T.Feature).trivially_minimisable
    assert derive_facts(REGISTRY["Detach"], (trained,), T.Feature).detached


def test_fixed_original_bugs():
    env = IMAGE_ENV
    a, b = jnp.array([1.0, -2.0, 3.0, 0.0, 5.0]), jnp.array([2.0, -3.0, 1.0, 4.0, -5.0])
    assert REGISTRY["Add"].commutative
    np.testing.assert_allclose(apply_fn("Add")((a, b), None, None, env)[0], a + b)
    np.testing.assert_allclose(apply_fn("Max")((a, b), None, None, env)[0], jnp.maximum(a, b))
    np.testing.assert_allclose(apply_fn("Min")((a, b), None, None, env)[0], jnp.minimum(a, b))
    assert REGISTRY["Noise"].arity == 0
    assert REGISTRY["Detach"].enumerable and REGISTRY["EncodeDetached"].enumerable
    x = jnp.ones((5, 32))
    np.testing.assert_allclose(apply_fn("L2Norm")((x,), None, None, env)[0], 1.0, rtol=1e-5)
    items = ListValue(items=jnp.stack([x, -x], axis=1), mask=jnp.array([True, True]))
    np.testing.assert_allclose(apply_fn("ListNorms")((items,), None, None, env)[0].items, 1.0, rtol=1e-5)
    np.testing.assert_allclose(apply_fn("ListAverageDistance")((items, 0 * x), None, None, env)[0], 1.0, rtol=1e-5)
    np.testing.assert_allclose(apply_fn("ListVariance")((items,), None, None, env)[0], 1.0, rtol=1e-5)
    ramp = ListValue(items=jnp.tile(jnp.array([0.0, 0.0, 1.0, 3.0, 5.0]), (5, 1)), mask=jnp.arange(5) >= 2)
    np.testing.assert_allclose(apply_fn("Slope")((ramp,), None, None, env)[0], 2.0, rtol=1e-5)


def test_memory_ops_hand_counts():
    env = IMAGE_ENV
    knn = apply_fn("NearestNeighbour")
    _, memory = init_state("KnnMemory", jax.random.PRNGKey(0), env, None)
    first = jnp.eye(5, 32)
    out, memory, _ = knn((first, first), memory, None, env)
    np.testing.assert_allclose(out, 0.0)
    assert int(memory.filled) == 5
    out, memory, _ = knn((first * 0, first), memory, None, env)
    # five stored rows, five neighbours: every query gets the mean of all stored rows
    np.testing.assert_allclose(out, jnp.tile(jnp.mean(first, axis=0), (5, 1)), atol=1e-6)
    assert int(memory.filled) == 10

    buffer = apply_fn("Buffer")
    _, fifo = init_state("Buffer", jax.random.PRNGKey(0), env, T.Real)
    for step in range(3):
        out, fifo, _ = buffer((jnp.full((5,), float(step)),), fifo, None, env)
    assert int(out.mask.sum()) == 3
    np.testing.assert_allclose(out.items[0, -3:], [0.0, 1.0, 2.0])

    norm = apply_fn("RunningNorm")
    _, stats = init_state("RunningStats", jax.random.PRNGKey(0), env, None)
    x = jnp.array([1.0, 2.0, 3.0, 4.0, 5.0])
    out, stats, _ = norm((x,), stats, None, env)
    np.testing.assert_allclose(out, (x - 3.0) / np.std(np.asarray(x), ddof=1), rtol=1e-5)
    out, stats, _ = norm((x + 5,), stats, None, env)
    both = np.concatenate([x, x + 5])
    np.testing.assert_allclose(out, (x + 5 - both.mean()) / both.std(ddof=1), rtol=1e-5)
