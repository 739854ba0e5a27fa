"""Ray as users meet it: an unreachable address, a cluster already running, a driver killed or stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest
from helpers import ROOT

from metacurio.app import cli

ENV = dict(os.environ, PYTHONPATH=str(ROOT), RAY_AUTH_MODE="disabled")


@pytest.mark.parametrize("command", [["search", "--programs", "fast"], ["transfer", "fast", "--env", "CartPole-v1"]])
def test_nothing_listening_at_the_address_is_one_line_within_seconds(tmp_path, capsys, command):
    start = time.monotonic()
    out = tmp_path / "run"
    assert cli.main([*command, "--address", "127.0.0.1:1", "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["metacurio: error: no Ray cluster at 127.0.0.1:1: Connection refused (start one with 'ray start --head')"]
    assert time.monotonic() - start < 30
    assert not out.exists()


def test_a_malformed_address_is_refused():
    from search.executor import ExecutorError, check_reachable

    with pytest.raises(ExecutorError, match="--address must be HOST:PORT"):
        check_reachable("nowhere")


DRIVER = textwrap.dedent(
    """
    import sys, time
    import ray
    from search.executor import start_ray
    from search.interrupts import stop_on_signals

    stop = stop_on_signals()
    stop.__enter__()
    start_ray(1)

    class Sleeper:
        def pid(self):
            import os
            return os.getpid()

    actor = ray.remote(num_cpus=1)(Sleeper).remote()
    try:
        print(ray.get(actor.pid.remote()), flush=True)
        # Short sleeps, as a driver's wait loop: Python runs signal handlers in the main thread
        # only, between bytecodes, and Ray's threads may be the ones the kernel interrupts.
        for _ in range(6000):
            time.sleep(0.1)
    except KeyboardInterrupt:
        ray.shutdown()
        sys.exit(130)
    """
)


def _descendants(pid: int) -> list[psutil.Process]:
    return [p for p in psutil.Process(pid).children(recursive=True) if "search.reaper" not in " ".join(p.cmdline())]


def _wait_gone(processes: list[psutil.Process], seconds: float) -> list[psutil.Process]:
    _, alive = psutil.wait_procs(processes, timeout=seconds)
    return [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_a_stopped_driver_leaves_no_ray_process_behind(stop):
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, start_new_session=True
    )
    try:
        actor_pid = int(driver.stdout.readline())
        started = _descendants(driver.pid)
        assert actor_pid in {p.pid for p in started} or psutil.pid_exists(actor_pid)
        started.append(psutil.Process(actor_pid))
        os.kill(driver.pid, stop)
        _, err = driver.communicate(timeout=60)
        if stop == signal.SIGTERM:
            assert driver.returncode == 130, err
        # kill -9 leaves the reaper to end them (it polls every 0.5 s, then gives 3 s to exit).
        assert _wait_gone(started, 20) == []
    finally:
        if driver.poll() is None:
            driver.kill()


@pytest.fixture
def head_node(tmp_path):
    """A one-CPU Ray cluster started as a user would, with ``ray start --head``."""
    ray_cli = os.path.join(os.path.dirname(sys.executable), "ray")
    started = subprocess.run(
        [ray_cli, "start", "--head", "--num-cpus", "1", "--include-dashboard", "false", "--disable-usage-stats"],
        env=ENV, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        yield
    finally:
        subprocess.run([ray_cli, "stop", "--force"], env=ENV, capture_output=True, timeout=120, check=False)


PROBE = textwrap.dedent(
    """
    import json, sys
    import ray
    from search.executor import start_ray

    start_ray(2, sys.argv[1] or None)
    print(json.dumps({"cpus": ray.cluster_resources().get("CPU"), "nodes": len(ray.nodes())}))
    ray.shutdown()
    """
)


@pytest.mark.slow
def test_with_a_cluster_running_metacurio_starts_its_own_or_joins_on_request(head_node):
    def probe(address: str) -> dict:
        done = subprocess.run([sys.executable, "-c", PROBE, address], env=ENV, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    assert probe("") == {"cpus": 2.0, "nodes": 1}
    assert probe("auto") == {"cpus": 1.0, "nodes": 1}
