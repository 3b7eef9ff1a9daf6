"""``emodiff study``: every step from audio to report on the bundled sample, leak-free, and resumable."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from miniature import make_crema_d
from toy import tiny_recipe

from emodiff import store as st
from emodiff.checkpoint import latest_checkpoint
from emodiff.config import StudyConfig
from emodiff.errors import EmodiffError
from emodiff.generators import load_recipe
from emodiff.ser.classifier import ClassifierConfig
from emodiff.study import StudyJob, plan_study, run_study
from emodiff.study_graph import experiment_job, generator_name

TINY_CLASSIFIER = ClassifierConfig(channels=16, lstm_hidden=16, epochs=1, lr=1e-3, batch_size=32)


@pytest.fixture(autouse=True)
def _jobs_in_this_process(monkeypatch):
    # As on a one-core machine: the local executor runs each job in this process (tests/test_study_executors.py
    # runs them side by side, and on Ray); spawning a process per job of these tiny studies would only add time.
    monkeypatch.setattr("emodiff.executors.available_cores", lambda: 1)


def _recipe(experiments: str, examples: int = 0):
    # No audio by default: vocoding the report's clips was most of a tiny study's time (tests/test_report.py tests it)
    study = StudyConfig(folds="groups:3", train_steps=3, samples=8, experiments=experiments, quality=False,
                        vocoder="griffin-lim", examples=examples)
    return dataclasses.replace(tiny_recipe(3), classifier=TINY_CLASSIFIER, study=study)


def test_study_runs_every_step_then_picks_up_where_it_stopped(tmp_path):
    store, runs, report = tmp_path / "s.h5", tmp_path / "runs", tmp_path / "report"
    first = run_study(StudyJob(store=store, recipe=_recipe("real", examples=1), runs=runs, report=report,
                               device="cpu"))
    assert [s for s, _, _ in first.steps] == ["prepare ravdess", "embed", "classify study-real", "report"]
    assert first.generators == [] and (report / "index.html").is_file()
    assert len(list((report / "audio").glob("real-ravdess-*.wav"))) == 4  # study.examples: one clip per emotion

    # A later run with more experiments skips what is done and adds the generators it now needs.
    second = run_study(StudyJob(store=store, recipe=_recipe("real, real+synthetic+mixup"), runs=runs, report=report,
                                device="cpu"))
    skipped = {s: done for s, _, done in second.steps}
    assert skipped["prepare ravdess"] and skipped["embed"] and skipped["classify study-real"]
    # groups:3 over 6 actors: fold i tests group i, validates on group i+1; each pair gets its own generator.
    assert second.generators == ["without-01-02-03-04", "without-01-02-05-06", "without-03-04-05-06"]
    assert not skipped["classify study-real-synthetic-mixup"]
    with st.open_store(store) as f:
        for name in second.generators:
            seen = set(json.loads(f[f"synthetic/{name}"].attrs["training_speakers"]))
            excluded = {f"ravdess:{s}" for s in name.removeprefix("without-").split("-")}
            assert len(seen) == 2 and not seen & excluded  # trained on the other two actors only
        g = f["results/study-real-synthetic-mixup"]
        assert not g.attrs["leaky"] and g.attrs["train_on"] == "real+synthetic"
        folds = {k: g[k].attrs["synthetic"] for k in g}
        assert folds == {"group=0": "without-01-02-03-04", "group=1": "without-03-04-05-06",
                         "group=2": "without-01-02-05-06"}
        # compared with the real-only run, fold by fold: d = this fold's UAR - the same fold's real UAR
        real = f["results/study-real"]
        diffs = [g[k].attrs["uar"] - real[k].attrs["uar"] for k in folds]
        assert g.attrs["paired_baseline"] == "study-real" and g.attrs["paired_n_folds"] == 3
        assert g.attrs["paired_mean_diff"] == pytest.approx(sum(diffs) / 3)
        assert g.attrs["paired_ci_low"] <= g.attrs["paired_mean_diff"] <= g.attrs["paired_ci_high"]
    html = (report / "index.html").read_text()
    assert "study-real-synthetic-mixup" in html and "Figure 5" in html and "paired UAR difference" in html

    third = run_study(StudyJob(store=store, recipe=_recipe("real, real+synthetic+mixup"), runs=runs, report=report,
                               device="cpu"))
    assert all(done for step, _, done in third.steps if step != "report")

    # study.samples changed: the stored sets are not silently reused, and the message says what a study user can do
    more = _recipe("real, real+synthetic+mixup")
    more = dataclasses.replace(more, study=dataclasses.replace(more.study, samples=9))
    with pytest.raises(EmodiffError) as err:
        run_study(StudyJob(store=store, recipe=more, runs=runs, report=report, device="cpu"))
    assert "study.samples is 9" in str(err.value) and "--name without-01-02-03-04 --overwrite" in str(err.value)
    with st.open_store(store) as f:
        assert len(f["synthetic/without-01-02-03-04/mel"]) == 8  # the set is kept as it was


def test_study_across_corpora_uses_a_generator_of_the_whole_source(tmp_path):
    make_crema_d(tmp_path / "crema")  # 3 actors, 5 files: enough to exercise both protocols
    study = StudyConfig(folds="groups:3", train_steps=3, samples=8, experiments="real, synthetic", quality=False,
                        cross_corpus="crema-d", cross_root=str(tmp_path / "crema"), adaptation="crema-d",
                        adaptation_root=str(tmp_path / "crema"), fractions="0, 1",
                        adaptation_experiments="real+synthetic", vocoder="griffin-lim", examples=0)
    recipe = dataclasses.replace(tiny_recipe(3), classifier=TINY_CLASSIFIER, study=study)
    store = tmp_path / "s.h5"
    result = run_study(StudyJob(store=store, recipe=recipe, runs=tmp_path / "runs", report=tmp_path / "report",
                                device="cpu"))
    # Within RAVDESS, "synthetic" needs the three per-fold generators; across corpora one saw all six actors.
    assert result.generators[0] == "all-ravdess" and len(result.generators) == 4
    with st.open_store(store) as f:
        assert len(json.loads(f["synthetic/all-ravdess"].attrs["training_speakers"])) == 6
        cross = f["results/study-ravdess-to-crema-d-synthetic"]
        assert cross.attrs["protocol"] == "cross-corpus" and cross.attrs["synthetic"] == "all-ravdess"
        assert not cross.attrs["leaky"]
        for x in ("0", "1"):
            adapt = f[f"results/study-ravdess-to-crema-d-adapt{x}-real-synthetic"]
            assert adapt.attrs["protocol"] == "adaptation" and adapt.attrs["target_fraction"] == float(x)
            assert adapt.attrs["synthetic"] == "all-ravdess"
        within = f["results/study-synthetic"]
        assert "all-ravdess" not in within.attrs["synthetic"] and not within.attrs["leaky"]
    page = (tmp_path / "report" / "index.html").read_text()
    assert "Table 3" in page and "Figure 4 —" in page


def _six_actors(path: Path) -> Path:
    """/corpora/ravdess with actors 01-06 (odd male, even female), one utterance per emotion, no audio: enough
    for fold plans."""
    import numpy as np

    actors = [f"{a:02d}" for a in range(1, 7) for _ in range(4)]
    n = len(actors)
    with st.write_group(path, "corpora/ravdess", config={"six": 1}) as g:
        st.write_table(g.create_group("utterances"), {
            "id": [f"u{i:02d}" for i in range(n)], "speaker": actors,
            "gender": ["M" if int(a) % 2 else "F" for a in actors], "session": [""] * n,
            "emotion": np.tile(np.arange(4), 6).astype(np.int8), "text": ["x"] * n})
        g.create_dataset("segments/mel", data=np.zeros((n, 80, 8), np.float16))
        g.create_dataset("segments/utt", data=np.arange(n, dtype=np.int32))
        g.create_dataset("segments/frames", data=np.full(n, 8, np.int32))
    return path


def test_repeated_partitions_plan_a_generator_per_held_out_set_and_each_fold_takes_its_own(tmp_path):
    """groups:3x2: 6 folds, each holding out 4 of the 6 actors; each gets the generator of the other two."""
    from emodiff.classify import choose_synthetic, held_out, plan_folds
    from emodiff.ser.folds import Candidate, read_corpora
    from emodiff.study import _family_recipes
    from emodiff.study_graph import GraphSettings, plan_experiments, plan_generators

    store = _six_actors(tmp_path / "s.h5")
    recipe = _recipe("real, real+synthetic")
    recipe = dataclasses.replace(recipe, study=dataclasses.replace(recipe.study, folds="groups:3x2"))
    job = StudyJob(store=store, recipe=recipe, runs=tmp_path / "runs", device="cpu")
    settings = GraphSettings(store, recipe, tmp_path / "runs", "cpu", threads=1, gpus=0)
    experiments = plan_experiments(settings, "ravdess", [])
    generators = plan_generators(settings, "ravdess", experiments, _family_recipes(job))
    # partition 0: groups 01-02, 03-04, 05-06; partition 1 (seed 1): 02-05, 01-04, 03-06 (one male, one female)
    assert [g.name for g in generators] == ["without-01-02-03-04", "without-01-02-04-05", "without-01-02-05-06",
                                            "without-01-03-04-06", "without-02-03-05-06", "without-03-04-05-06"]
    everyone = frozenset(f"ravdess:0{a}" for a in range(1, 7))
    sets = [Candidate(g.name, everyone - set(g.held_out), (80, 8), 8) for g in generators]
    synthetic = next(e for e in experiments if e.effective_train_on != "real")
    data = read_corpora(store, ["ravdess"], segments=False)
    folds = plan_folds(data, synthetic)
    assert [f.name for f in folds] == ["group=0", "group=1", "group=2", "r1.group=0", "r1.group=1", "r1.group=2"]
    chosen = [choose_synthetic(fold, data, sets, allow=False) for fold in folds]
    assert not any(leak for _, leak in chosen)
    assert [c.name for c, _ in chosen] == [generator_name(held_out(fold, data)) for fold in folds]
    assert len({c.name for c, _ in chosen}) == 6  # every fold of every partition its own generator


def test_experiments_are_parsed_into_classify_jobs():
    recipe = load_recipe("demo")
    job = experiment_job(Path("s.h5"), recipe, "ravdess", "real+synthetic+mixup", "cpu")
    assert (job.train_on, job.augment.synthetic, job.augment.mixup, job.name) == (
        "real+synthetic", "", 0.2, "study-real-synthetic-mixup")
    assert experiment_job(Path("s.h5"), recipe, "ravdess", "synthetic", "cpu").train_on == "synthetic"
    assert job.workers == recipe.study.workers == 1
    ravdess = load_recipe("ravdess")
    assert experiment_job(Path("s.h5"), ravdess, "ravdess", "real", "cpu").workers == ravdess.study.workers == 2
    with pytest.raises(EmodiffError, match="names no data"):
        experiment_job(Path("s.h5"), recipe, "ravdess", "mixup", "cpu")
    assert generator_name(["ravdess:01", "ravdess:02"]) == "without-01-02"
    # The controls are experiments like any other: inputs without labels, and more real segments.
    uniform = experiment_job(Path("s.h5"), recipe, "ravdess", "real+synthetic+uniform", "cpu")
    assert (uniform.train_on, uniform.augment.uniform, uniform.name) == (
        "real+synthetic", True, "study-real-synthetic-uniform")
    more = experiment_job(Path("s.h5"), recipe, "ravdess", "real+real:400", "cpu")
    assert (more.train_on, more.augment.extra_real, more.name) == ("real", 400, "study-real-real400")


def test_shipped_recipes_describe_a_study():
    demo, paper = load_recipe("demo").study, load_recipe("paper").study
    assert demo.corpus == "ravdess" and demo.train_steps > 0 and "real+synthetic+mixup" in demo.experiments
    assert paper.corpus == "iemocap" and paper.train_steps == 0 and paper.samples == 5000


def test_a_study_of_other_corpora_needs_their_folders(tmp_path):
    recipe = dataclasses.replace(_recipe("real"), study=StudyConfig(corpus="iemocap"))
    with pytest.raises(EmodiffError, match="give the iemocap folder with --root"):
        run_study(StudyJob(store=tmp_path / "s.h5", recipe=recipe))
    paper = load_recipe("paper")
    with pytest.raises(EmodiffError, match="the msp-improv folder is not given; pass --cross-root"):
        run_study(StudyJob(store=tmp_path / "s.h5", recipe=paper, root=tmp_path))
    assert not (tmp_path / "s.h5").exists()  # refused before any step ran


def test_study_makes_the_offline_copies_its_experiments_train_on(tmp_path):
    store = tmp_path / "s.h5"
    result = run_study(StudyJob(store=store, recipe=_recipe("real+noise, real"), runs=tmp_path / "runs",
                                report=tmp_path / "report", device="cpu"))
    steps = [s for s, _, _ in result.steps]
    assert steps[:4] == ["prepare ravdess", "embed", "augment noise", "classify study-real"]  # real runs first
    assert steps[4] == "classify study-real-noise" and result.generators == []
    with st.open_store(store) as f:
        assert f["augmented/ravdess/noise/segments/mel"].shape[0] == 2 * f["corpora/ravdess/segments/mel"].shape[0]
        assert f["results/study-real-noise"].attrs["paired_baseline"] == "study-real"


def test_study_makes_the_copies_its_generators_train_on(tmp_path):
    """A recipe with ``train.augmented: [speed]`` needs the speed copies before its generators, with no speed
    experiment asking for them."""
    recipe = _recipe("real, real+synthetic")
    recipe = dataclasses.replace(recipe, train=dataclasses.replace(recipe.train, augmented=("speed",)))
    plan = plan_study(StudyJob(store=tmp_path / "s.h5", recipe=recipe, runs=tmp_path / "runs",
                               report=tmp_path / "report", device="cpu"))
    assert [label for label, _ in plan.steps][:3] == ["prepare ravdess", "embed", "augment speed"]
    plain = plan_study(StudyJob(store=tmp_path / "s.h5", recipe=_recipe("real, real+synthetic"),
                                runs=tmp_path / "runs", report=tmp_path / "report", device="cpu"))
    assert "augment speed" not in [label for label, _ in plain.steps]


def test_study_trains_each_familys_generators_and_each_experiment_takes_its_own(tmp_path):
    """real+synthetic takes the diffusion model's per-fold sets and real+gan the GAN's, both leak-free, side by side."""
    import yaml
    from toy import gan_recipe

    gan_file = tmp_path / "gan.yaml"
    gan_file.write_text(yaml.safe_dump(gan_recipe(2, gan={"levels": 4}, checkpoint_every=2).to_dict()))
    recipe = _recipe("real+synthetic, real+gan")
    with pytest.raises(EmodiffError, match="'real\\+gan' needs gan generators.*study.recipes, e.g. gan=gan"):
        run_study(StudyJob(store=tmp_path / "s.h5", recipe=recipe, runs=tmp_path / "runs"))
    assert not (tmp_path / "s.h5").exists()  # refused before any step ran

    recipe = dataclasses.replace(recipe, study=dataclasses.replace(recipe.study, recipes=f"gan={gan_file}",
                                                                   comparisons="real+synthetic vs real+gan"))
    store = tmp_path / "s.h5"
    result = run_study(StudyJob(store=store, recipe=recipe, runs=tmp_path / "runs", report=tmp_path / "report",
                                device="cpu"))
    folds = ["01-02-03-04", "01-02-05-06", "03-04-05-06"]
    assert result.generators == [f"without-{f}" for f in folds] + [f"gan-without-{f}" for f in folds]
    # study.train_steps (3) is the study recipe's; the GAN recipe trains for its own train.steps (2)
    assert latest_checkpoint(tmp_path / "runs" / "gan" / "gan-without-01-02-03-04").name == "ckpt-0000002.pt"
    assert latest_checkpoint(tmp_path / "runs" / "tiny" / "without-01-02-03-04").name == "ckpt-0000003.pt"
    with st.open_store(store) as f:
        for name, family in (("real-synthetic", "diffusion"), ("real-gan", "gan")):
            g = f[f"results/study-{name}"]
            assert not g.attrs["leaky"]
            for fold in g:
                chosen = g[fold].attrs["synthetic"]
                assert f[f"synthetic/{chosen}"].attrs["generator"] == family
                assert chosen.startswith("gan-" if family == "gan" else "without-")
        # the direct comparison, from the two results' folds
        c = f["comparisons/study-real-synthetic--vs--study-real-gan"].attrs
        diffs = [g[k].attrs["uar"] - f[f"results/study-real-gan/{k}"].attrs["uar"]
                 for g in [f["results/study-real-synthetic"]] for k in g]
        assert c["experiment"] == "study-real-synthetic" and c["baseline"] == "study-real-gan"
        assert c["paired_mean_diff"] == pytest.approx(sum(diffs) / 3)
    assert [s for s, _, _ in result.steps][-2:] == ["compare real+synthetic vs real+gan", "report"]
    html = (tmp_path / "report" / "index.html").read_text()
    assert "real+gan" in html and "real+synthetic" in html


def test_a_study_takes_its_own_sets_when_the_store_holds_others(tmp_path):
    """A sweep's set from the same generator sorts first by name; the study's folds still take the study's own
    sets. A result stored before studies named their sets is kept when its folds took the study's sets, and
    refused as different when a fold took another."""
    from emodiff.classify import classify
    from emodiff.sample import SampleJob, sample

    store, runs = tmp_path / "s.h5", tmp_path / "runs"

    def study(experiments: str):
        return run_study(StudyJob(store=store, recipe=_recipe(experiments), runs=runs, report=tmp_path / "report",
                                  device="cpu"))

    first = study("real+synthetic")
    own = set(first.generators)
    job = experiment_job(store, _recipe("real+synthetic"), "ravdess", "real+synthetic", "cpu")
    assert job.sets == () and "sets" not in job.config()
    classify(dataclasses.replace(job, overwrite=True))  # as an older study stored it: no sets in its config
    sample(SampleJob(store=store, n=8, run=str(runs / "tiny" / "without-01-02-03-04"), name="a-sweep", device="cpu"))

    second = study("real+synthetic, real+synthetic+mixup")
    skipped = {s: done for s, _, done in second.steps}
    assert skipped["classify study-real-synthetic"] and not skipped["classify study-real-synthetic-mixup"]
    with st.open_store(store) as f:
        g = f["results/study-real-synthetic-mixup"]
        assert {g[k].attrs["synthetic"] for k in g} == own
        assert json.loads(g.attrs["config"])["sets"] == sorted(own)

    classify(dataclasses.replace(job, overwrite=True))  # without sets, a fold now takes a-sweep
    with st.open_store(store) as f:
        assert "a-sweep" in {g.attrs["synthetic"] for g in f["results/study-real-synthetic"].values()}
    with pytest.raises(EmodiffError, match="study-real-synthetic exists with other settings"):
        study("real+synthetic")
