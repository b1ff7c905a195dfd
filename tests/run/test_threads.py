"""Each cell's torch threads follow the CPUs it was given (mribench.train.threads): --threads,
BENCHMARK_THREADS, Ray's cpus_per_cell, OMP_NUM_THREADS, else the machine's cores; the number
is logged as the cell's `torch_threads`."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from mlflow.tracking import MlflowClient

from invocations import env_for, runs_of, tiny_suite
from mribench.train import precision, threads


@pytest.fixture(autouse=True)
def keep_threads(monkeypatch):
    """A test's cells set torch's threads and the process's request: put both back."""
    before = torch.get_num_threads()
    yield
    threads.request(None)
    threads._share = None
    torch.set_num_threads(before)


def test_share_is_decided_in_order(monkeypatch):
    monkeypatch.delenv("BENCHMARK_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads.decide() == (threads.machine_cores(), "machine cores")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.decide() == (3, "OMP_NUM_THREADS")
    assert threads.decide(1.0) == (1, "cpus_per_cell")
    assert threads.decide(0.5) == (1, "cpus_per_cell")  # a fraction of a CPU still gets a thread
    assert threads.decide(4.0) == (4, "cpus_per_cell")
    monkeypatch.setenv("BENCHMARK_THREADS", "2")
    assert threads.decide(4.0) == (2, "BENCHMARK_THREADS")
    threads.request(5)
    assert threads.decide(4.0) == (5, "--threads")


def test_cuda_loader_workers_follow_the_share():
    threads.apply(1)
    assert precision.workers("auto", "cuda") == 0  # one CPU: the training process has it
    threads.apply(4)
    assert precision.workers("auto", "cuda") == 3 and torch.get_num_threads() == 4
    assert precision.workers("auto", "cpu") == 0


def _threads_of(env: dict) -> list[tuple[str, str]]:
    return [(r.data.params.get("torch_threads"), r.data.params.get("torch_threads_from"))
            for r in runs_of(env) if r.data.tags.get("role") == "cell"]


def _command(args: list[str], env: dict, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mribench", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_side_by_side_shard_logs_its_share(tmp_path, smoke_data_dir):
    """A shard told its share through BENCHMARK_THREADS (cores / shards on the node) trains
    with that many threads and logs it; run from outside the repository."""
    suite = tiny_suite(tmp_path, seeds=[0, 1])
    env = {k: v for k, v in env_for(tmp_path, smoke_data_dir).items() if k != "OMP_NUM_THREADS"}
    env["BENCHMARK_THREADS"] = "1"
    done = _command(["suite", str(suite), "--shard", "0/2"], env, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _threads_of(env) == [("1", "BENCHMARK_THREADS")]
    # --threads beats the variable, for the other shard
    done = _command(["suite", str(suite), "--shard", "1/2", "--threads", "2"], env, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(_threads_of(env)) == [("1", "BENCHMARK_THREADS"), ("2", "--threads")]


def test_bad_thread_count_is_refused_before_any_work(tmp_path, smoke_data_dir):
    env = env_for(tmp_path, smoke_data_dir) | {"BENCHMARK_THREADS": "two"}
    done = _command(["suite", str(tiny_suite(tmp_path, seeds=[0]))], env, tmp_path)
    assert done.returncode == 2 and "BENCHMARK_THREADS='two'" in done.stderr
    assert not runs_of(env)
    done = _command(["suite", "smoke", "--threads", "0"], env_for(tmp_path, smoke_data_dir),
                    tmp_path)
    assert done.returncode == 2 and "--threads" in done.stderr


@pytest.mark.services
def test_ray_cell_with_one_cpu_logs_one_thread(tmp_path, smoke_data_dir):
    """A Ray task given one CPU (resources.cpus_per_cell: 1) trains with one torch thread,
    whatever the node's cores and OMP_NUM_THREADS say."""
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'brain-mri-benchmark[ray]'")
    from servers import ray_cluster

    suite = tiny_suite(tmp_path, seeds=[0])
    env = env_for(tmp_path, smoke_data_dir) | {
        "OMP_NUM_THREADS": str(os.cpu_count() or 2), "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": os.urandom(32).hex()}
    env.pop("RAY_ADDRESS", None)
    with ray_cluster(env, tmp_path, nodes=1) as address:
        done = _command(["suite", str(suite), "--executor", "ray", "--address", address,
                         "--set", "resources.cpus_per_cell=1"], env, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _threads_of(env) == [("1", "cpus_per_cell")]
    run = next(r for r in runs_of(env) if r.data.tags.get("role") == "cell")
    assert MlflowClient(env["MLFLOW_TRACKING_URI"]).get_run(run.info.run_id).info.status \
        == "FINISHED"
