"""Transfer speed: env-steps/s of PPO alone and PPO + curiosity programs on gymnasium environments.

For each environment (paper agent settings, a shortened lifetime): gymnasium alone with random
actions, plain PPO, and PPO + each program with the paper's combiner. Prints compile and run
time separately, env-steps per second of wall time and per CPU-second of this process (the
machines are shared, so CPU time is the steadier figure), each program's cost per env step
over plain PPO, and the ratios. ``--append`` adds the table to benchmarks/RESULTS.md under
"Transfer".

    python benchmarks/transfer.py [--envs LunarLander-v3,Ant-v5] [--programs fast,rnd] [--append]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import sys
import time
from pathlib import Path

from metacurio.jax_setup import SINGLE_THREAD_XLA  # noqa: E402

os.environ.setdefault("XLA_FLAGS", SINGLE_THREAD_XLA)

import numpy as np  # noqa: E402

from envs import gymnasium_envs  # noqa: E402
from metacurio.agent import gym_presets, gym_trainer  # noqa: E402
from metacurio.core import program_io  # noqa: E402
from metacurio.core.compiler import compile_program  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PROGRAMS = ROOT / "results" / "programs"
UPDATES = {"LunarLander-v3": 10, "Ant-v5": 2}
"""PPO updates timed per environment: 10 × 5 envs × 256 steps on Lunar Lander, 2 × 2,048 on Ant."""


@dataclasses.dataclass(frozen=True)
class Timing:
    label: str
    pipeline_seconds: float
    """CPU-seconds of the reward pipeline (program, combiner, normalisation) per env step, alone."""
    compile_seconds: float
    wall_seconds: float
    cpu_seconds: float
    env_steps: int
    score: float

    @property
    def per_cpu_second(self) -> float:
        return self.env_steps / self.cpu_seconds

    @property
    def per_second(self) -> float:
        return self.env_steps / self.wall_seconds


def shortened(env_id: str, updates: int) -> gym_presets.GymPreset:
    preset = gym_presets.preset(env_id, "paper")
    ppo = dataclasses.replace(preset.ppo, lifetime_steps=updates * preset.ppo.rollout_steps)
    return dataclasses.replace(preset, ppo=ppo, seeds=preset.seeds[:1])


def random_actions(preset: gym_presets.GymPreset, steps: int) -> Timing:
    """Gymnasium alone: the same vector env stepped with random actions."""
    import gymnasium as gym

    envs = gym.vector.SyncVectorEnv(
        [lambda: gymnasium_envs.make_env(preset.env_id, preset.max_episode_steps) for _ in range(preset.ppo.num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    envs.reset(seed=0)
    envs.action_space.seed(0)
    actions = [envs.action_space.sample() for _ in range(steps)]
    wall, cpu = time.perf_counter(), time.process_time()
    for action in actions:
        envs.step(action)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    envs.close()
    return Timing("gymnasium, random actions", 0.0, 0.0, wall, cpu, steps * preset.ppo.num_envs, float("nan"))


def lifetime(preset: gym_presets.GymPreset, label: str, curiosity=None, combiner=None, repeats: int = 2) -> Timing:
    """Compile, then the fastest of ``repeats`` lifetimes (the first run in a process warms caches up)."""
    trainer = gym_trainer.GymTrainer(gymnasium_envs.inspect_env(preset.env_id), preset.ppo, curiosity, combiner)
    compile_seconds = trainer.compile()
    runs = []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = trainer.run(preset.seeds[0], preset.max_episode_steps)
        runs.append((time.process_time() - cpu, time.perf_counter() - wall))
    cpu, wall = min(runs)
    return Timing(label, pipeline_cost(trainer, preset), compile_seconds, wall, cpu, result.env_steps, result.score)


def pipeline_cost(trainer: gym_trainer.GymTrainer, preset: gym_presets.GymPreset, repeats: int = 20) -> float:
    """CPU-seconds per env step of the reward pipeline alone, on a zero rollout."""
    state = trainer.init(0)
    rollout = gym_trainer.empty_rollout(preset.ppo, trainer.env_spec)
    start = np.zeros((), np.int32)
    cpu = time.process_time()
    for _ in range(repeats):
        float(trainer.reward_pipeline(state, rollout, start)[1].sum())
    return (time.process_time() - cpu) / repeats / (preset.ppo.rollout_steps * preset.ppo.num_envs)


def agent_calls(preset: gym_presets.GymPreset, repeats: int = 200) -> tuple[float, float]:
    """CPU-seconds of one policy call (all N envs) and of one PPO update, on zero inputs."""
    spaces = gymnasium_envs.inspect_env(preset.env_id)
    spec = spaces.env_spec(preset.ppo.num_envs)
    agent = gym_trainer.compiled_agent(spec, preset.ppo)
    state = gym_trainer.GymTrainer(spaces, preset.ppo).init(0)
    obs = np.zeros((preset.ppo.num_envs,) + spec.obs_shape, np.float32)
    cpu = time.process_time()
    for _ in range(repeats):
        np.asarray(agent.act(state.params, obs, state.key)[0])
    act = (time.process_time() - cpu) / repeats
    host = gym_trainer.empty_rollout(preset.ppo, spec)
    rewards = np.zeros((preset.ppo.rollout_steps, preset.ppo.num_envs), np.float32)
    updates = max(2, repeats // 50)
    cpu = time.process_time()
    for _ in range(updates):
        float(agent.learn(state.params, state.opt_state, state.updates, state.key, host, rewards)[3]["policy_loss"])
    return act, (time.process_time() - cpu) / updates


def measure(preset: gym_presets.GymPreset, program_names: list[str]) -> list[Timing]:
    combiner = compile_program(program_io.load(PROGRAMS / "combiner_paper.json"))
    steps = preset.ppo.num_updates * preset.ppo.rollout_steps
    timings = [random_actions(preset, steps), lifetime(preset, "PPO alone")]
    for name in program_names:
        program = program_io.load(PROGRAMS / f"{name}.json")
        timings.append(lifetime(preset, f"PPO + {program.name}", compile_program(program), combiner))
    return timings


def table(preset: gym_presets.GymPreset, timings: list[Timing]) -> list[str]:
    gym_alone, plain = timings[0], timings[1]
    lines = [
        f"### {preset.env_id}: {preset.ppo.num_envs} env(s) × {preset.ppo.num_updates} updates of {preset.ppo.rollout_steps} steps "
        f"({plain.env_steps:,} env steps)",
        "",
        "| run | compile | run (wall) | env-steps/s | env-steps per CPU-s | time vs PPO alone | reward pipeline per env step |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in timings:
        ratio = "–" if t is gym_alone else f"{plain.per_cpu_second / t.per_cpu_second:.2f}"
        pipeline = "–" if t is gym_alone else f"{t.pipeline_seconds * 1e6:.0f} µs"
        compile_text = "–" if t is gym_alone else f"{t.compile_seconds:.1f} s"
        lines.append(
            f"| {t.label} | {compile_text} | {t.wall_seconds:.1f} s | {t.per_second:,.0f} | {t.per_cpu_second:,.0f} | {ratio} | {pipeline} |"
        )
    act, update = agent_calls(preset)
    per_step = 1e6 / plain.per_cpu_second
    env = 1e6 / gym_alone.per_cpu_second
    act_share = act * 1e6 / preset.ppo.num_envs
    update_share = update * 1e6 / (preset.ppo.rollout_steps * preset.ppo.num_envs)
    lines += [
        "",
        f"PPO alone runs at {plain.per_cpu_second / gym_alone.per_cpu_second:.2f}× gymnasium's own random-action speed "
        f"(per CPU-second): {per_step:.0f} µs per env step, of which the environment takes {env:.0f} µs, the jitted policy "
        f"call {act_share:.0f} µs ({act * 1e6:.0f} µs per call on all {preset.ppo.num_envs} envs), the PPO update "
        f"{update_share:.0f} µs ({update:.2f} s per update of {preset.ppo.num_epochs} epochs × "
        f"{preset.ppo.num_minibatches} minibatches); each part is timed on its own. A program adds its reward "
        "pipeline's cost (last column, CPU time per env step, plain PPO's being the combiner and return "
        "normalisation alone) to every step. Whole lifetimes of different programs also differ in how often "
        "episodes end and environments reset, which costs more than the programs do.",
    ]
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", default="LunarLander-v3,Ant-v5")
    parser.add_argument("--programs", default="fast,rnd")
    parser.add_argument("--append", action="store_true", help="append the tables to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    from metacurio.jax_setup import enable_compilation_cache

    enable_compilation_cache()
    load = os.getloadavg()[0]
    lines = [
        f"# Transfer (measured {datetime.date.today()}, `python benchmarks/transfer.py --envs {args.envs} --programs {args.programs}`)",
        "",
        f"This machine, {os.cpu_count()} cores, single-threaded XLA; load average {load:.1f} when the run started, so "
        "wall-clock figures depend on the other jobs and the CPU-second figures are the comparable ones. Compile "
        "times include the persistent XLA cache when it already held an entry.",
        "",
    ]
    for env_id in args.envs.split(","):
        preset = shortened(env_id, UPDATES.get(env_id, 4))
        section = table(preset, measure(preset, args.programs.split(",")))
        lines += section + [""]
        print("\n".join(section), flush=True)
    if args.append:
        with open(ROOT / "benchmarks" / "RESULTS.md", "a", encoding="utf-8") as f:
            f.write("\n" + "\n".join(lines))
        print("appended to benchmarks/RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
