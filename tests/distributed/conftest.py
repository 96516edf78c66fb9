"""Launch helpers of the distributed tests: 2 local CPU ranks (gloo) on 127.0.0.1."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

HERE = Path(__file__).parent


def free_port() -> int:
    """A TCP port free on 127.0.0.1 at the time of the call."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(script: Path, args: list[str], world_size: int = 2, timeout_s: float = 120.0) -> None:
    """Run ``script args`` as ``world_size`` ranks with the variables torchrun would set.

    Raises ``AssertionError`` with the failing rank's stderr when a rank exits non-zero.
    """
    port = free_port()
    procs = []
    for rank in range(world_size):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size),
               "LOCAL_WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, str(script), *args], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    failures = []
    for rank, proc in enumerate(procs):
        try:
            _, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise AssertionError(f"rank {rank} did not finish within {timeout_s} s")
        if proc.returncode != 0:
            failures.append(f"rank {rank} exited {proc.returncode}:\n{err[-3000:]}")
    assert not failures, "\n".join(failures)


def load_worker(name: str = "worker.py") -> ModuleType:
    """Import a worker script of this directory by path (tests use --import-mode=importlib)."""
    spec = importlib.util.spec_from_file_location(f"_dist_{Path(name).stem}", HERE / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def launcher():
    """The :func:`launch` helper (test modules cannot import conftest under importlib mode)."""
    return launch


@pytest.fixture(scope="session", name="free_port")
def free_port_fixture():
    """The :func:`free_port` helper."""
    return free_port


@pytest.fixture(scope="session")
def worker() -> ModuleType:
    """The worker module (its single-process references and constants)."""
    return load_worker()
