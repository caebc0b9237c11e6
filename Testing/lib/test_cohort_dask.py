"""Patients on a Dask cluster (issue 16): a 6-patient phantom cohort through a 2-worker LocalCluster
(processes) gives the same cohort table, byte for byte, as the local process pool; so does a run in which
a worker is killed while it runs a patient (the scheduler runs that patient again elsewhere). The truth
for the table is the local pool's run of the same phantoms; its own correctness is checked against
phantom truth in test_pipeline.py and test_demo_phantoms.py."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from distributed import Client, LocalCluster

from LuDoseResponseLib.pipeline.cohort_run import COMPUTED, UP_TO_DATE, run_cohort
from LuDoseResponseLib.pipeline.phantom_anatomy import make_patient
from LuDoseResponseLib.pipeline.phantoms import write_patient

TINY = {"n_tumours": 2, "n_cycles": 1, "shape_zyx": (24, 40, 64), "scan_hours": (24.0, 96.0, 168.0)}
N_PATIENTS = 6


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantoms")
    return [write_patient(make_patient(f"P{i}", seed=60 + i, **TINY), root / f"P{i}") for i in range(N_PATIENTS)]


@pytest.fixture(scope="module")
def local_table(manifests, tmp_path_factory) -> bytes:
    run = run_cohort(manifests, tmp_path_factory.mktemp("local") / "out", jobs=2)
    assert not run.failures and run.count(COMPUTED) == N_PATIENTS
    return run.cohort_csv.read_bytes()


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as local_cluster:
        yield local_cluster


def test_cluster_and_local_pool_give_the_same_table(manifests, local_table, cluster, tmp_path):
    seen = []
    run = run_cohort(manifests, tmp_path / "out", scheduler=cluster.scheduler_address,
                     progress=lambda result, done, total: seen.append((done, total)))
    assert not run.failures and run.count(COMPUTED) == N_PATIENTS
    assert run.cohort_csv.read_bytes() == local_table
    assert seen == [(i + 1, N_PATIENTS) for i in range(N_PATIENTS)]       # each patient streamed back once
    again = run_cohort(manifests, tmp_path / "out", scheduler=cluster.scheduler_address)
    assert again.count(UP_TO_DATE) == N_PATIENTS and again.cohort_csv.read_bytes() == local_table


class _WorkerKiller(threading.Thread):
    """Kills (SIGKILL) the first worker seen running a task, and records what it was running."""

    def __init__(self, address: str):
        super().__init__(daemon=True)
        self.address, self.stop, self.killed = address, threading.Event(), {}

    def run(self) -> None:
        with Client(self.address, set_as_default=False) as client:
            pids = client.run(os.getpid)
            while not self.stop.is_set():
                busy = {w: keys for w, keys in client.processing().items() if keys}
                if busy:
                    worker, keys = next(iter(busy.items()))
                    os.kill(pids[worker], signal.SIGKILL)
                    self.killed = {"worker": worker, "keys": list(keys)}
                    return
                time.sleep(0.01)


def test_a_killed_worker_loses_no_patient(manifests, local_table, cluster, tmp_path):
    killer = _WorkerKiller(cluster.scheduler_address)
    killer.start()
    try:
        run = run_cohort(manifests, tmp_path / "out", scheduler=cluster.scheduler_address)
    finally:
        killer.stop.set()
        killer.join()
    assert killer.killed["keys"], "no worker was killed while running a patient"
    lost = killer.killed["keys"][0]
    story = cluster.scheduler.story(lost)
    assert any(t[1] == "processing" and t[2] == "released" for t in story)   # taken from the dead worker ...
    assert [t[2] for t in story].count("processing") >= 2                    # ... and run again
    assert not run.failures and run.count(COMPUTED) == N_PATIENTS
    assert run.cohort_csv.read_bytes() == local_table


def test_the_library_imports_dask_only_for_a_cluster(tmp_path):
    code = ("import sys; import LuDoseResponseLib.cli as cli; cli.build_parser(); "
            "from LuDoseResponseLib.pipeline.cohort_run import PatientTask, run_patient_task; "
            f"r = run_patient_task(PatientTask(0, {str(tmp_path / 'none.toml')!r}, {str(tmp_path / 'o')!r})); "
            "assert r.status == 'failed', r; print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('dask', 'distributed')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=os.getcwd())
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
