"""Shared fixtures: temporary workspaces, seeded synthetic data, a tiny trained model, the CLI."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest
import tqdm

from factory import api
from factory.datasets.synthetic import write_shapes
from factory.signal_stack import current as current_signal_stack
from factory.signal_stack import is_kept, signal_stack_problem

REPO = Path(__file__).resolve().parents[1]

# Converters run in this process by the target tests draw tqdm bars. tqdm's default lock includes a
# process-shared POSIX semaphore that forked children inherit: a child killed while holding it leaves this
# process blocked on its next bar (twice the default run ended aborted inside that acquire). The tests
# start many child processes, so tqdm gets a thread-only lock and no monitor thread here.
tqdm.tqdm.set_lock(threading.RLock())
tqdm.tqdm.monitor_interval = 0


def copy_home(src: Path, dest: Path) -> Path:
    """Copy workspace `src` to `dest`; the catalog through SQLite's backup API.

    Never copy a live catalog file with plain file reads: closing any file descriptor on catalog.sqlite
    drops every POSIX lock this process holds on it (a server thread's open connection included), and a
    child process that then closes its own connection believes it was the last one and removes the WAL
    under that connection ("disk I/O error").
    """
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("catalog.sqlite*"))
    source, target = sqlite3.connect(src / "catalog.sqlite"), sqlite3.connect(dest / "catalog.sqlite")
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    return dest


@pytest.fixture(autouse=True)
def signal_stack_kept() -> Iterator[None]:
    """Every test leaves this thread's alternate signal stack as it found it. Native code that moves it (an
    OpenVINO CPU plugin, see factory.signal_stack) can leave it unmapped, and the run then dies of SIGSEGV with
    no traceback at the next signal, tests later; this names the test whose code moved it."""
    before = current_signal_stack()
    yield
    problem, after = signal_stack_problem(), current_signal_stack()
    assert problem is None, problem
    assert is_kept(after, before), (f"the alternate signal stack moved from {before} to {after} during this test: wrap "
                                    "the native call that moved it in factory.signal_stack.kept_signal_stack()")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator:
    """A PostgreSQL server on a loopback port for this test session (Debian's package, a temporary cluster)."""
    from tests import postgres

    bin_dir = postgres.binaries()
    if bin_dir is None:
        pytest.skip("Debian's postgresql package is not installed (scripts/setup installs it from "
                    "scripts/debian-packages.txt)")
    server = postgres.Server(bin_dir).start()
    yield server
    server.stop()


@pytest.fixture
def postgres_catalog(postgres_server) -> str:
    """The URL of a fresh, empty PostgreSQL database."""
    return postgres_server.new_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_location(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """The catalog suite runs on both databases: a catalog.sqlite path, or a fresh PostgreSQL database's URL."""
    if request.param == "sqlite":
        return tmp_path / "catalog.sqlite"
    return request.getfixturevalue("postgres_catalog")


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_catalog(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Workspaces of this test keep their catalog in catalog.sqlite, or in a fresh PostgreSQL database
    (EDGEFACTORY_CATALOG, which child processes inherit). Returns the database's name."""
    if request.param == "postgresql":
        monkeypatch.setenv("EDGEFACTORY_CATALOG", request.getfixturevalue("postgres_catalog"))
    return request.param


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "ws"


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 classes x 30 seeded synthetic 64 px images, one folder per class."""
    return write_shapes(tmp_path_factory.mktemp("shapes") / "shapes", classes=3, per_class=30, seed=1)


@pytest.fixture(scope="session")
def trained_home(tmp_path_factory: pytest.TempPathFactory, shapes_dir: Path) -> Path:
    """A workspace with dataset shapes:v1 and model shapes-tiny:v1 (tiny_cls, 15 epochs: clear logit margins,
    so INT8 parity by top-1 agreement is not decided by near-ties)."""
    home = tmp_path_factory.mktemp("trained") / "ws"
    api.import_dataset(shapes_dir, "shapes", home=home)
    api.train({"dataset": "shapes", "model": "tiny_cls", "epochs": 15, "name": "shapes-tiny"}, home=home)
    return home


@pytest.fixture(scope="session")
def det_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with detection dataset scenes:v1 (60 seeded 160 px scenes) and detector scenes-tiny-det:v1
    (tiny_det trained at 128 px, 12 epochs), shared by the detection tests; tests that change it copy it."""
    from factory.tasks.detection.datasets import write_detection

    root = tmp_path_factory.mktemp("dettrain")
    home = root / "ws"
    # 160 px scenes trained at 128 px: predictions must be scaled back to the original pixels
    api.import_dataset(write_detection(root / "scenes", images=60, size=160, seed=0), "scenes", task="detection", home=home)
    api.train({"dataset": "scenes", "model": "tiny_det", "img_size": 128, "epochs": 12, "batch_size": 16, "lr": 0.003},
              home=home)
    return home


def run_cli(*args: str, home: Path | None = None, check: bool = True, timeout: float = 300) -> tuple[int, dict, str]:
    """Run `edgefactory ARGS --json` in a subprocess; returns (exit code, last-line JSON, stderr)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if home is not None:
        env["EDGEFACTORY_HOME"] = str(home)
    proc = subprocess.run([sys.executable, "-m", "factory.cli", *args, "--json", "--quiet"], capture_output=True,
                          text=True, env=env, timeout=timeout, cwd=REPO, stdin=subprocess.DEVNULL)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    out = json.loads(lines[-1]) if lines else {}
    if check and proc.returncode != 0:
        raise AssertionError(f"edgefactory {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc.returncode, out, proc.stderr
