"""`emodiff compare` and `study.comparisons`: one result against another, the fold as the unit."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from emodiff import store as st
from emodiff.compare import CompareJob, run_compare
from emodiff.config.settings import SettingError
from emodiff.config.study import StudyConfig
from emodiff.errors import EmodiffError
from emodiff.records import Comparison

# UAR per fold (rows) and seed (columns); n_test 8, n_train 32 in every fold.
UARS = {
    "speed": [[0.50, 0.52], [0.40, 0.44], [0.60, 0.58]],
    "speed-synth": [[0.55, 0.55], [0.41, 0.45], [0.64, 0.60]],  # d per fold: +4, +1, +3 pp
    "short": [[0.50, 0.52], [0.40, 0.44]],  # one fold fewer
}


def write_result(store: Path, name: str, uars: list[list[float]], tag: str = "",
                 val: list[list[float]] | None = None) -> None:
    """A result of UAR ``uars`` [fold][seed]; with ``val`` each run's validation UAR too (n_val 16)."""
    with st.write_group(store, f"results/{name}", config={"name": name, "tag": tag}, overwrite=True) as g:
        for j, per_seed in enumerate(uars):
            for seed, uar in enumerate(per_seed):
                run = g.create_group(f"group={j}@seed{seed}")
                run.attrs.update(uar=uar, seed=seed, n_train=32, n_test=8)
                if val is not None:
                    run.attrs.update(val_uar=val[j][seed], n_val=16)
        g.attrs.update(corpus="ravdess", train_corpus="ravdess", protocol="groups:3", folds="groups:3",
                       train_on="real", augment="", repeats=2)


@pytest.fixture()
def results(tmp_path: Path) -> Path:
    store = tmp_path / "s.h5"
    for name, uars in UARS.items():
        write_result(store, name, uars)
    return store


def test_compare_stores_the_fold_level_comparison(results):
    """The stored attrs are the corrected t-test over the 3 fold differences (seeds averaged), checked against
    scipy's one-sample t with the Nadeau-Bengio factor applied by hand."""
    res = run_compare(CompareJob(results, "speed-synth", "speed"))
    assert res.path == "/comparisons/speed-synth--vs--speed" and not res.already_there
    with st.open_store(results) as f:
        c = Comparison.read(f, "speed-synth--vs--speed")
    d = np.array([0.04, 0.01, 0.03])
    t = scipy.stats.ttest_1samp(d, 0.0).statistic * math.sqrt(1 / 3) / math.sqrt(1 / 3 + 8 / 32)
    assert (c.experiment, c.baseline) == ("speed-synth", "speed")
    assert c.attrs["paired_mean_diff"] == pytest.approx(d.mean())
    assert c.attrs["paired_p_t"] == pytest.approx(2 * scipy.stats.t.sf(abs(t), 2))
    assert c.attrs["paired_n_folds"] == 3 and c.attrs["paired_n_seeds"] == 2 and c.attrs["paired_wins"] == 3
    assert c.attrs["paired_p_perm"] == pytest.approx(2 / 8)  # 8 sign patterns; all-plus and all-minus reach it


def test_compare_on_validation_pairs_the_validation_uars_and_stores_nothing(tmp_path):
    """--on validation: the fold differences of val_uar (not uar), the corrected t with n_val / n_train, the fold
    means; nothing written; a result without validation UARs is refused."""
    store = tmp_path / "s.h5"
    write_result(store, "base", UARS["speed"], val=[[0.60, 0.62], [0.50, 0.50], [0.70, 0.66]])
    write_result(store, "exp", UARS["speed"], val=[[0.62, 0.62], [0.56, 0.52], [0.69, 0.67]])  # d +1, +4, 0 pp
    res = run_compare(CompareJob(store, "exp", "base", on="validation"))
    d = np.array([0.01, 0.04, 0.0])
    t = scipy.stats.ttest_1samp(d, 0.0).statistic * math.sqrt(1 / 3) / math.sqrt(1 / 3 + 16 / 32)
    assert res.path == "" and res.comparison.mean_diff == pytest.approx(d.mean())
    assert res.comparison.corrected.p == pytest.approx(2 * scipy.stats.t.sf(abs(t), 2))
    assert (res.comparison.wins, res.comparison.losses, res.comparison.ties) == (2, 0, 1)
    assert res.means == pytest.approx((np.mean([0.62, 0.54, 0.68]), np.mean([0.61, 0.50, 0.68])))
    on_test = run_compare(CompareJob(store, "exp", "base"))
    assert on_test.comparison.mean_diff == pytest.approx(0.0)  # the same test UARs: validation was read above
    with st.open_store(store) as f:
        assert Comparison.names(f) == ["exp--vs--base"]  # only the test comparison
    write_result(store, "no-val", UARS["speed"])
    with pytest.raises(EmodiffError, match="lack the n_val and n_train attrs"):
        run_compare(CompareJob(store, "no-val", "base", on="validation"))
    with pytest.raises(EmodiffError, match="expected test .* or validation"):
        CompareJob(store, "exp", "base", on="val")
    with pytest.raises(EmodiffError, match="--on validation stores nothing"):
        CompareJob(store, "exp", "base", on="validation", name="mine")


def test_compare_skips_what_is_done_and_refuses_a_stale_comparison(results):
    run_compare(CompareJob(results, "speed-synth", "speed"))
    assert run_compare(CompareJob(results, "speed-synth", "speed")).already_there
    write_result(results, "speed", [[0.50, 0.50], [0.40, 0.40], [0.60, 0.60]], tag="rerun")
    with pytest.raises(EmodiffError, match="exists with other settings; one of the two results was rerun"):
        run_compare(CompareJob(results, "speed-synth", "speed"))
    fresh = run_compare(CompareJob(results, "speed-synth", "speed", refresh=True))
    assert not fresh.already_there and fresh.comparison.mean_diff == pytest.approx(np.mean([0.05, 0.03, 0.02]))


@pytest.mark.parametrize(("experiment", "baseline", "message"), [
    ("speed-synth", "short", "different \\(fold, seed\\) pairs"),
    ("speed-synth", "gone", "no /results/gone; results: short, speed, speed-synth"),
    ("speed", "speed", "a result against itself"),
    ("a/b", "speed", "EXPERIMENT 'a/b': expected the name of a /results group"),
    ("speed-synth", "x" * 90, "the comparison's default name .* expected a name of"),
])
def test_compare_errors_are_one_line(results, experiment, baseline, message):
    with pytest.raises(EmodiffError, match=message) as err:
        run_compare(CompareJob(results, experiment, baseline))
    assert "\n" not in str(err.value)
    with st.open_store(results) as f:
        assert Comparison.names(f) == []


def test_study_comparisons_name_two_of_its_experiments():
    study = StudyConfig(experiments="real, real+speed, real+speed+synthetic, real+gan, real+synthetic",
                        comparisons="real+speed+synthetic vs real+speed, synthetic+real vs gan+real")
    assert study.comparison_pairs() == [("real+speed+synthetic", "real+speed"), ("real+synthetic", "real+gan")]
    for bad, why in (("real+speed vs real+noise", "'real\\+noise' is not one of"), ("real vs real", "two different"),
                     ("real, real+speed", "'A vs B'")):
        with pytest.raises(SettingError, match=why):
            StudyConfig(experiments="real, real+speed", comparisons=bad)


def test_the_compare_command_prints_stores_and_inspect_lists_it(results):
    from cli_checks import one_line_error
    from typer.testing import CliRunner

    from emodiff.cli import app

    runner = CliRunner()
    args = ["compare", "speed-synth", "speed", "--store", str(results)]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    out = " ".join(first.stdout.split())
    assert "speed-synth vs speed: +2.7 pp [" in out and "(3 folds × 2 seeds)" in out
    assert "folds better / worse / equal 3 / 0 / 0" in out and "wrote /comparisons/speed-synth--vs--speed" in out
    assert "already in /comparisons/speed-synth--vs--speed" in " ".join(runner.invoke(app, args).stdout.split())
    listed = " ".join(runner.invoke(app, ["inspect", "--store", str(results)]).stdout.split())
    assert "+2.7 pp, p" in listed
    write_result(results, "v-base", UARS["speed"], val=UARS["speed"])
    write_result(results, "v-exp", UARS["speed"], val=UARS["speed-synth"])
    shown = runner.invoke(app, ["compare", "v-exp", "v-base", "--on", "validation", "--store", str(results)])
    assert shown.exit_code == 0, shown.output
    out = " ".join(shown.stdout.split())
    assert "on validation: v-exp 53.3 % vs v-base 50.7 %" in out and "+2.7 pp [" in out and "not stored" in out
    one_line_error(runner.invoke(app, ["compare", "v-exp", "v-base", "--on", "tests", "--store", str(results)]),
                   "--on 'tests': expected test")
    one_line_error(runner.invoke(app, ["compare", "speed-synth", "short", "--store", str(results)]),
                   "compare speed-synth short:", "different (fold, seed) pairs")
