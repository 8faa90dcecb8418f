"""Classic members fitted side by side: one forked process per idle core, one BLAS thread each.

A classic fit is many small scikit-learn problems (folds x grid points), each too small for BLAS
threads to pay (``ser.threads``) and held by the GIL between its numpy calls, so threads in one
process do not overlap them (measured: 20 RAVDESS folds took 3.4 s on 2 threads against 2.9 s on
one). Processes do: the members' grid searches run in a pool of forked workers, as many as the
machine has idle cores (1 on a busy machine: then nothing is forked). Forking shares the loaded
data and the imported scikit-learn with the workers at no cost; each worker returns its member's
chosen estimator, scaler, validation scores and (``train.refit``) the estimator refitted on train +
validation; the parent tests it. The
numbers are those of the sequential loop (each member's search is the same deterministic code).

Forking is safe here because the workers run only numpy and scikit-learn code on one thread, and
the parent has not started any thread pool of its own before the fork (BLAS pools are capped at one
thread for the whole fit; the progress bar runs without its monitor thread).
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
from collections.abc import Sequence

from ser.fusion import progress
from ser.fusion.classic import ClassicSelection
from ser.fusion.train import (
    MemberSpec,
    Selection,
    check_validation,
    progress_units,
    search_classic,
    select_classic_member,
)
from ser.threads import idle_cores

logger = logging.getLogger(__name__)


_MEMBERS: Sequence[MemberSpec] = ()
"""The members of the pool being run, read by the forked workers (inherited, never pickled)."""


def pool_size(n_members: int) -> int:
    """Worker processes for ``n_members`` classic members: the idle cores, at most one per member;
    1 (no pool) where processes cannot be forked."""
    if n_members < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return max(1, min(n_members, idle_cores()))


def _search(index: int) -> tuple[int, ClassicSelection]:
    """In a worker: member ``index``'s grid search, reporting to nobody (the parent counts it)."""
    progress.silence()
    member = _MEMBERS[index]
    chosen = search_classic(member, refit_now=True)
    return index, chosen


def fit_classic_members(members: Sequence[MemberSpec]) -> list[Selection]:
    """Every member selected on validation (in the order given), in a pool of forked workers when the
    machine has two or more idle cores, else one after the other in this process. Each member's line
    reaches the progress reporter as it finishes."""
    global _MEMBERS
    for member in members:
        check_validation(member.fold, member.rows)
    workers = pool_size(len(members))
    if workers < 2:
        return [select_classic_member(member) for member in members]
    logger.info("classic members: %d fitted in %d worker processes", len(members), workers)
    for module in ("sklearn.linear_model", "sklearn.preprocessing", "sklearn.svm"):
        importlib.import_module(module)  # once here, not once per worker

    reporter = progress.current()
    out: dict[int, Selection] = {}
    _MEMBERS = members
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for index, chosen in pool.imap_unordered(_search, range(len(members))):
                member = members[index]
                reporter.advance(progress_units(member))
                out[index] = select_classic_member(member, chosen)
    finally:
        _MEMBERS = ()
    return [out[index] for index in range(len(members))]
