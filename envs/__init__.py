"""Environments: the JAX gridworld used for meta-training and gymnasium adapters for transfer."""
