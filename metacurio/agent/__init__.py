"""The agent layer: PPO on the JAX gridworld, the host-loop PPO trainer for gymnasium, and the evaluator that scores a program over trials."""
