"""``emodiff compare``: one classify result against another, the fold as the unit, into /comparisons/NAME.

``classify --compare-with real`` compares each experiment with real data alone. The claims that
matter next compare two experiments directly: does ``real+speed+synthetic`` beat ``real+speed``,
is ``real+synthetic`` at least as good as ``real+gan``? Both results must have been scored on the
same (fold, seed) pairs; the seeds are averaged within each fold and the fold differences tested
with the corrected resampled t-test, the sign-flip permutation test and the fold bootstrap
(:func:`emodiff.ser.paired.compare`). The report adjusts every comparison of a table, these and the
ones against ``real``, together by Holm.

``--on validation`` pairs the validation UARs instead (each run's best, the one its weights were kept
for) and stores nothing: it is how a setting is chosen without reading test actors (docs/classify.md),
and the report's tables hold test comparisons only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from emodiff import store as st
from emodiff.errors import EmodiffError
from emodiff.records import Absent, Comparison, Different, Results, Same, check_name, existing
from emodiff.ser.paired import PairedComparison, compare


@dataclass(frozen=True)
class CompareJob:
    store: Path
    experiment: str  # a /results name: the one whose gain is measured
    baseline: str  # a /results name on the same folds and seeds
    name: str | None = None  # /comparisons/NAME; default EXPERIMENT--vs--BASELINE
    overwrite: bool = False
    refresh: bool = False  # rewrite a comparison made from earlier versions of the two results (the study's way)
    on: str = "test"  # or "validation": the validation UARs, printed and not stored

    def __post_init__(self) -> None:
        if self.on not in ("test", "validation"):
            raise EmodiffError(f"--on {self.on!r}: expected test (the stored comparison) or validation (printed only)")
        if self.on == "validation" and (self.name or self.overwrite):
            raise EmodiffError("--name and --overwrite are for a stored comparison; --on validation stores nothing")
        for flag, value in (("EXPERIMENT", self.experiment), ("BASELINE", self.baseline)):
            if not value or "/" in value:  # a name is read, not written: only what would leave /results is refused
                raise EmodiffError(f"{flag} {value!r}: expected the name of a /results group (no '/')")
        if self.experiment == self.baseline:
            raise EmodiffError(f"compare {self.experiment} {self.baseline}: a result against itself; name two "
                               "different /results groups")
        check_name(self.comparison_name, where="--name" if self.name else "the comparison's default name (give "
                   "a shorter one with --name)")

    @property
    def comparison_name(self) -> str:
        return self.name or f"{self.experiment}--vs--{self.baseline}"


@dataclass(frozen=True)
class CompareResult:
    path: str  # /comparisons/NAME; "" for a comparison on validation (not stored)
    comparison: PairedComparison
    already_there: bool
    means: tuple[float, float] = (float("nan"), float("nan"))  # (experiment, baseline): fold means, seeds averaged


def run_compare(job: CompareJob) -> CompareResult:
    """Compare the two stored results and write ``/comparisons/<name>``.

    Skipped when the group is there and was made from the same two results (their config hashes in its
    config); one made from earlier versions of them is refused, unless ``overwrite`` or ``refresh``.
    """
    experiment, baseline = _read(job.store, job.experiment), _read(job.store, job.baseline)
    validation = job.on == "validation"
    sizes = experiment.fold_sizes(validation)
    if sizes is None:
        held = "n_val" if validation else "n_test"
        raise EmodiffError(f"{job.store}: /results/{job.experiment}'s folds lack the {held} and n_train attrs the "
                           "corrected t-test needs; rerun it with this version of emodiff")
    a, b = baseline.uar_by_key(validation), experiment.uar_by_key(validation)
    if validation:
        for name, result, uars in ((job.baseline, baseline, a), (job.experiment, experiment, b)):
            if len(uars) < len(result.folds):
                raise EmodiffError(f"{job.store}: /results/{name} has folds without a validation UAR (trained with "
                                   "no validation speakers); compare it on test")
    try:
        paired = compare(a, b, sizes, experiment=job.experiment, baseline=job.baseline)
    except EmodiffError as err:
        raise EmodiffError(f"compare {job.experiment} {job.baseline}: {str(err).removeprefix('paired: ')}; run "
                           "both with the same protocol and --repeats") from None
    if validation:
        return CompareResult("", paired, False, (_fold_mean(b), _fold_mean(a)))
    config = {"experiment": job.experiment, "baseline": job.baseline,
              "experiment_hash": experiment.meta.config_hash, "baseline_hash": baseline.meta.config_hash}
    path = Comparison.path(job.comparison_name)
    found = existing(job.store, path, config)
    if isinstance(found, Same) and not job.overwrite:
        return CompareResult(f"/{path}", paired, True)
    if isinstance(found, Different) and not (job.overwrite or job.refresh):
        raise found.error(job.store, fix="one of the two results was rerun since; pass --overwrite to compare "
                                         "them afresh")
    Comparison.write(job.store, job.comparison_name, experiment=job.experiment, baseline=job.baseline,
                     paired=paired.as_attrs(), config=config, overwrite=not isinstance(found, Absent))
    return CompareResult(f"/{path}", paired, False)


def _fold_mean(uars: dict[tuple[str, int], float]) -> float:
    """The mean over folds of each fold's mean over its seeds."""
    folds: dict[str, list[float]] = {}
    for (fold, _), value in uars.items():
        folds.setdefault(fold, []).append(value)
    return sum(sum(v) / len(v) for v in folds.values()) / len(folds)


def _read(store: Path, name: str) -> Results:
    with st.open_store(store) as f:
        if not Results.exists(f, name):
            names = Results.names(f)
            raise EmodiffError(f"{store}: no /results/{name}; results: {', '.join(names) or 'none'}")
        return Results.read(f, name)
