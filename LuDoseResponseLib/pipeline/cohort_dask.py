"""The patients of a cohort on a Dask distributed cluster (``dask.distributed``), one task per patient.

Imported only when a scheduler address is given, so the library imports dask nowhere else. Each
patient is one task (:func:`cohort_run.run_patient_task`, submitted with ``pure=False`` under a key
unique to the run); results stream back as the tasks finish (``as_completed``) and each future is
released once its rows are taken. The workers use the kernel cache folder of the process that
submits (sent with each task), so a kernel is computed once per voxel size for the whole cluster
when that folder is shared (:mod:`physics.kernel_cache` locks concurrent computations).

A worker that is lost (killed, out of memory, its node gone) loses the tasks it was running; the
scheduler runs them again on other workers, up to its ``distributed.scheduler.allowed-failures``
(default 3) times, after which the patient is reported as failed. Resume works as for the local
pool: a patient whose outputs are up to date is not recomputed (see :mod:`cohort_run`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from LuDoseResponseLib import __version__
from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.pipeline.cohort_run import FAILED, PatientResult, PatientTask, run_patient_task

log = logging.getLogger(__name__)

#: how long to wait for the scheduler to answer and for a first worker to join
CONNECT_TIMEOUT_S = 60.0


def library_version() -> str:
    """The LuDoseResponseLib version a worker runs (checked against the submitting process's)."""
    return __version__


def _connect(scheduler: str):
    try:
        from distributed import Client
    except ImportError as exc:
        raise InputError("running patients on a Dask cluster needs the dask.distributed package, which is not "
                         "installed here") from exc
    try:
        return Client(scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise InputError(f"cannot connect to the Dask scheduler at {scheduler!r} ({exc}); check that the scheduler "
                         "runs and that this machine can reach it") from exc


def _check_workers(client, scheduler: str) -> None:
    """At least one worker, and every worker runs this version of the library."""
    try:
        client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
    except TimeoutError as exc:
        raise InputError(f"no worker joined the Dask scheduler at {scheduler!r} within {CONNECT_TIMEOUT_S:.0f} s; "
                         "start workers (dask worker ADDRESS) in an environment where LuDoseResponseLib is "
                         "installed") from exc
    try:
        versions = client.run(library_version)
    except Exception as exc:  # noqa: BLE001 - whatever the worker raised: it cannot run our tasks
        raise InputError(f"the workers of the Dask scheduler at {scheduler!r} cannot run LuDoseResponseLib "
                         f"({type(exc).__name__}: {exc}); install version {__version__} on every worker") from exc
    wrong = {w: v for w, v in versions.items() if v != __version__}
    if wrong:
        raise InputError(f"workers of the Dask scheduler at {scheduler!r} run other versions of LuDoseResponseLib "
                         f"than this one ({__version__}): {wrong}; install the same version on every worker")


def run_on_dask(tasks: list[PatientTask], scheduler: str, on_result: Callable[[PatientResult], None]) -> None:
    """Run ``tasks`` on the Dask cluster at ``scheduler``, calling ``on_result`` as each patient finishes."""
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    from LuDoseResponseLib.physics.kernel_cache import kernel_cache_dir

    cache = str(kernel_cache_dir())
    run_id = uuid.uuid4().hex[:12]
    with _connect(scheduler) as client:
        _check_workers(client, scheduler)
        futures = {client.submit(run_patient_task, t, cache, pure=False,
                                 key=f"ludoseresponse-patient-{t.index:05d}-{run_id}"): t for t in tasks}
        log.info("submitted %d patients to the Dask scheduler at %s", len(tasks), scheduler)
        for future in as_completed(list(futures), loop=client.loop):
            task = futures.pop(future)
            try:
                result = future.result()
            except KilledWorker as exc:
                result = PatientResult(task, FAILED, error=(
                    f"every worker that ran this patient was lost ({exc}); see the workers' logs (memory?) and run "
                    "the cohort again to resume"))
            except Exception as exc:  # noqa: BLE001 - raised on the cluster, not by the patient's own checks
                result = PatientResult(task, FAILED, error=f"internal error on the cluster: {type(exc).__name__}: "
                                       f"{exc}", internal=True)
            future.release()
            on_result(result)
