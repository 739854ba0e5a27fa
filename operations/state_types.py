"""State types: the data structures a program owns (networks, memories, statistics).

A state type's initial ``(params, state)`` is built by its init in ``operations.kernels``:
params are trained by the program's optimizer, state is updated functionally by the
operations. Every array has a fixed shape (buffers and memories are ring arrays with a fill
count), so that a compiled interpreter can hold any program's state without value-dependent
shapes.
"""

from __future__ import annotations

import dataclasses

BUFFER_CAPACITY = 100
"""Entries (past calls) a FIFO buffer keeps; the original's 2-96 experiment used 100."""
KNN_CAPACITY = 1000
"""Rows a nearest-neighbour memory keeps (the original's KNN_BUFFER_SIZE_LARGE)."""
KNN_NEIGHBOURS = 5
"""Neighbours averaged by a nearest-neighbour lookup."""


@dataclasses.dataclass(frozen=True)
class StateType:
    name: str
    signature: str
    doc: str
    trainable: bool = False
    single_use: bool = False
    """Mutable state that only one node may own (memories, buffers, statistics)."""
    read_only: bool = False
    """Supplied from outside at every call (the agent's policy)."""

    @property
    def is_network(self) -> bool:
        return self.trainable or self.read_only


STATE_TYPES: dict[str, StateType] = {
    st.name: st
    for st in [
        StateType("ObsNet", "𝕊→𝔽", "observation encoder: small CNN for images, MLP for vectors", trainable=True),
        StateType("FeatNet", "𝔽→𝔽", "MLP 32→[32,32]→32", trainable=True),
        StateType("PairNet", "𝔽×𝔽→𝔽", "MLP on the concatenation, 64→[32,32]→32", trainable=True),
        StateType("FeatToActionNet", "𝔽→𝔸", "MLP 32→[32,32]→A", trainable=True),
        StateType("PairToActionNet", "𝔽×𝔽→𝔸", "MLP 64→[32,32]→A", trainable=True),
        StateType("ActionToFeatNet", "𝔸→𝔽", "MLP A→[32,32]→32", trainable=True),
        StateType("ObsEnsemble", "𝕊→[𝔽]", "5 independent observation encoders", trainable=True),
        StateType("FeatEnsemble", "𝔽→[𝔽]", "5 independent MLPs 32→32", trainable=True),
        StateType("FeatActionEnsemble", "𝔽×𝔸→[𝔽]", "5 independent MLPs (32+A)→32", trainable=True),
        StateType("RunningStats", "stats", "Welford mean and sample std of a scalar stream", single_use=True),
        StateType("Buffer", "fifo", f"FIFO of the last {BUFFER_CAPACITY} calls' values", single_use=True),
        StateType("KnnMemory", "knn", f"nearest-neighbour memory of {KNN_CAPACITY} feature rows", single_use=True),
        StateType("NoiseSource", "rng", "a PRNG key advanced at every call", single_use=True),
        StateType("AgentPolicy", "policy", "the agent's actor-critic (read-only)", read_only=True),
    ]
}
