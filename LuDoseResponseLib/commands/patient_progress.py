"""How `cohort` and `demo` show patients finishing: a tqdm bar on a terminal, plain log lines elsewhere,
and the exit code of a cohort run (cli.py: 0 all patients done, 4 some skipped, 3 a program fault)."""

from __future__ import annotations

import contextlib
import sys
from collections import Counter
from collections.abc import Iterator

from LuDoseResponseLib.cli import EXIT_INTERNAL_ERROR, EXIT_PARTIAL
from LuDoseResponseLib.cli import _one_line as one_line


@contextlib.contextmanager
def patient_progress(args) -> Iterator:
    """A progress callback for ``run_cohort``: a bar when stderr is a terminal (and not ``--quiet``),
    else None (the library then logs one line per patient)."""
    if args.quiet or not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    counts: Counter = Counter()
    with contextlib.ExitStack() as stack:
        bar = None

        def update(result, done: int, total: int) -> None:
            nonlocal bar
            if bar is None:
                bar = stack.enter_context(tqdm(total=total, unit="patient", desc="patients", file=sys.stderr,
                                               dynamic_ncols=True))
            counts[result.status] += 1
            if result.error:
                bar.write(f"failed {result.task.manifest}: {one_line(result.error)}", file=sys.stderr)
            bar.set_postfix_str(", ".join(f"{n} {s}" for s, n in sorted(counts.items())), refresh=False)
            bar.update(1)

        stack.enter_context(logging_redirect_tqdm())
        yield update


def cohort_exit_code(command: str, cohort) -> int:
    """0 when every patient is done; EXIT_PARTIAL (one stderr line) when some were skipped and the cohort was
    analysed without them (see failures.json); EXIT_INTERNAL_ERROR when a patient hit a fault of the program."""
    for manifest, error in cohort.failures.items():
        print(f"skipped {manifest}: {one_line(error)}", file=sys.stderr)
    n, total = len(cohort.failures), len(cohort.status)
    if not n:
        return 0
    where = cohort.cohort_csv.parent / "failures.json"
    if cohort.internal_failures:
        print(f"ludoseresponse {command}: internal error in {len(cohort.internal_failures)} of {total} patients "
              f"(see {where} and the log); the other patients were analysed. Please report it.",
              file=sys.stderr)
        return EXIT_INTERNAL_ERROR
    print(f"ludoseresponse {command}: {n} of {total} patients failed and were skipped (see {where}); the "
          f"analysis used the other {total - n}", file=sys.stderr)
    return EXIT_PARTIAL
