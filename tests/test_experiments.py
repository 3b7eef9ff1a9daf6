"""One vocabulary for experiments: ``--augment`` and experiment texts parse, print and compare one way everywhere."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from emodiff.classify_job import ClassifyJob, ClassifyRequest
from emodiff.errors import EmodiffError
from emodiff.experiments import Augment, Experiment
from emodiff.generators import load_recipe
from emodiff.records import Meta
from emodiff.report.collect import ResultInfo, augment_text
from emodiff.report.experiments import condition, trained_on
from emodiff.ser.classifier import ClassifierConfig
from emodiff.study_graph import experiment_job

# (text as written, canonical text, the report's label)
EXPERIMENTS = [
    ("real", "real", "real"),
    ("synthetic", "synthetic", "synthetic"),
    ("synthetic:demo", "synthetic:demo", "synthetic"),
    ("real+synthetic", "real+synthetic", "real+synthetic"),
    ("synthetic+real", "real+synthetic", "real+synthetic"),
    ("real+synthetic+mixup", "real+synthetic+mixup:0.2", "real+synthetic + mixup:0.2"),
    ("real+mixup:0.4+specaugment", "real+mixup:0.4+specaugment", "real + mixup:0.4 + specaugment"),
    ("real+synthetic:demo+mixup:0.4+specaugment+speed+noise", "real+synthetic:demo+mixup:0.4+specaugment+speed+noise",
     "real+synthetic + mixup:0.4 + specaugment + speed + noise"),
    ("real+noise+speed+noise", "real+noise+speed", "real + noise + speed"),
    ("synthetic + specaugment", "synthetic+specaugment", "synthetic + specaugment"),
    ("real+gan", "real+gan", "real+gan"),  # the GAN baseline's sets (emodiff/generators/gan.py)
    ("gan", "gan", "gan"),
    ("gan+real+mixup", "real+gan+mixup:0.2", "real+gan + mixup:0.2"),
    ("real+diffusion", "real+synthetic", "real+synthetic"),  # the method's own family, said explicitly
    # the shuffled-label control: the synthetic segments with their labels permuted
    ("real+synthetic+shuffle", "real+synthetic+shuffle", "real+synthetic + shuffle"),
    ("mixup+shuffle+gan+real", "real+gan+shuffle+mixup:0.2", "real+gan + shuffle + mixup:0.2"),
    ("synthetic:demo+shuffle", "synthetic:demo+shuffle", "synthetic + shuffle"),
    # the uniform-label control and extra real segments; SpecAugment's masks
    ("uniform+real+synthetic", "real+synthetic+uniform", "real+synthetic + uniform"),
    ("real+gan+uniform+shuffle", "real+gan+shuffle+uniform", "real+gan + shuffle + uniform"),
    ("real+real:400", "real+real:400", "real + real:400"),
    ("real:400+real+synthetic", "real+synthetic+real:400", "real+synthetic + real:400"),
    ("real+specaugment:4x10", "real+specaugment:4x10", "real + specaugment:4x10"),
    ("real+specaugment:8x20", "real+specaugment", "real + specaugment"),
    # the synthetic segments' loss weight (issue 20); a sweep's setting, the sets named PREFIX...
    ("real+synthetic+weight:0.5", "real+synthetic+weight:0.5", "real+synthetic + weight:0.5"),
    ("mixup+weight:2+gan+real", "real+gan+weight:2+mixup:0.2", "real+gan + weight:2 + mixup:0.2"),
    ("real+synthetic+weight:0.1234567", "real+synthetic+weight:0.1234567", "real+synthetic + weight:0.1234567"),
    ("real+synthetic:g0.5-*", "real+synthetic:g0.5-*", "real+synthetic:g0.5-*"),
    ("synthetic:g0.5-*", "synthetic:g0.5-*", "synthetic:g0.5-*"),
    ("weight:0.25+synthetic:g2*+real+mixup", "real+synthetic:g2*+weight:0.25+mixup:0.2",
     "real+synthetic:g2* + weight:0.25 + mixup:0.2"),
    ("real+synthetic:*", "real+synthetic:*", "real+synthetic:*"),
]
AUGMENTS = [
    ("", ""),
    ("synthetic", "synthetic"),
    ("synthetic:demo", "synthetic:demo"),
    ("mixup", "mixup:0.2"),
    ("mixup:0.4", "mixup:0.4"),
    ("specaugment", "specaugment"),
    ("speed", "speed"),
    ("noise", "noise"),
    ("synthetic:demo+mixup:0.4+specaugment", "synthetic:demo+mixup:0.4+specaugment"),
    ("speed+noise+speed+mixup", "mixup:0.2+speed+noise"),
    ("specaugment+synthetic+mixup:1e-3", "synthetic+mixup:0.001+specaugment"),
    ("gan", "gan"),
    ("mixup+gan", "gan+mixup:0.2"),
    ("speed+shuffle+synthetic", "synthetic+shuffle+speed"),
    ("uniform+synthetic", "synthetic+uniform"),
    ("real:16+specaugment:2x5", "real:16+specaugment:2x5"),
    ("weight:0.5+synthetic", "synthetic+weight:0.5"),
    ("mixup+weight:1e-3+gan", "gan+weight:0.001+mixup:0.2"),
    ("synthetic:g0.5-*+weight:3", "synthetic:g0.5-*+weight:3"),
]


@pytest.mark.parametrize(("text", "canonical", "label"), EXPERIMENTS)
def test_experiment_round_trip(text, canonical, label):
    e = Experiment.parse(text)
    assert (e.text, e.label) == (canonical, label)
    assert Experiment.parse(e.text) == e and Experiment.parse(canonical).text == canonical


@pytest.mark.parametrize(("text", "canonical"), AUGMENTS)
def test_augment_round_trip(text, canonical):
    a = Augment.parse(text)
    assert a.label() == canonical and Augment.parse(a.label()) == a
    assert Augment.from_config(asdict(a)) == a  # the form a result's config attr keeps


def test_equal_meanings_compare_equal():
    both = Experiment.parse("real+synthetic")
    assert Experiment.of("real", "synthetic") == both == Experiment("real+synthetic") == Experiment.of(
        "real+synthetic", Augment(synthetic=""))
    assert Experiment.of("synthetic", "synthetic:x") == Experiment.parse("synthetic:x") != Experiment.parse("synthetic")
    assert Experiment.parse("real+mixup") == Experiment.parse("mixup:0.2+real") != Experiment.parse("real+mixup:0.3")
    assert Augment.from_config({"synthetic": None, "mixup": 0.2, "specaugment": False}) == Augment.parse("mixup")
    assert Experiment.parse("real+gan") != Experiment.parse("real+synthetic")


def test_a_results_config_keeps_its_form_from_before_there_were_two_families():
    """Results recorded before the GAN family existed must match the same experiment now (the study skips them)."""
    old = {"synthetic": "", "mixup": 0.2, "specaugment": False, "offline": []}
    assert Augment.parse("synthetic+mixup").config() == old
    assert Augment.from_config(old) == Augment.parse("synthetic+mixup")
    assert Augment.parse("gan+mixup").config() == {**old, "generator": "gan"}
    assert Augment.from_config(Augment.parse("gan+mixup").config()) == Augment.parse("gan+mixup")
    with pytest.raises(EmodiffError, match="augment generator 'vae'"):
        Augment.from_config({**old, "generator": "vae"})
    # the control adds a key only when set, so the config (and hash) of every other result is unchanged
    assert Augment.parse("synthetic+shuffle+mixup").config() == {**old, "shuffle": True}
    assert Augment.from_config({**old, "shuffle": True}) == Augment.parse("synthetic+mixup+shuffle")
    # so does the synthetic segments' weight, and a sweep's prefix is its synthetic text as written
    assert Augment.parse("synthetic+mixup+weight:0.5").config() == {**old, "weight": 0.5}
    assert Augment.from_config({**old, "weight": 0.5}) == Augment.parse("weight:0.5+synthetic+mixup")
    assert Augment.parse("synthetic:g0.5-*+mixup").config() == {**old, "synthetic": "g0.5-*"}


def test_the_shuffled_control_is_its_own_experiment():
    plain, control = Experiment.parse("real+synthetic"), Experiment.parse("real+synthetic+shuffle")
    assert plain != control and control.augment.shuffle and not plain.augment.shuffle
    assert control.name_parts == ["real-synthetic", "shuffle"] and control.paper_key is None
    assert Experiment.parse("real+gan+shuffle").name_parts == ["real-gan", "shuffle"]


@pytest.mark.parametrize(("text", "part"), [
    ("real+pitch", "'pitch'"),
    ("real+mixup:x", "mixup:x"),
    ("real+mixup:0", "mixup:0"),
    ("real+mixup:-1", "mixup:-1"),
    ("real+mixup:nan", "mixup:nan"),
    ("real+speed:2", "'speed:2'"),
    ("mixup+specaugment", "'mixup+specaugment' names no data"),
    ("synthetic:a+synthetic:b", "synthetic:a, synthetic:b"),
    ("synthetic+noise", "noise augments real utterances"),
    ("real+gan+synthetic", "names synthetic data twice (gan, synthetic)"),
    ("real+gan:x", "gan takes no argument"),
    ("real+shuffle", "shuffle permutes the synthetic segments' labels; add synthetic"),
    ("real+synthetic+shuffle:1", "'shuffle:1'"),
    ("real+uniform", "uniform trains the synthetic segments towards uniform labels; add synthetic"),
    ("real+synthetic+uniform:1", "'uniform:1'"),
    ("real+real", "names real twice; extra real segments are real:N"),
    ("real+real:0", "expected real:N"),
    ("real+real:x", "expected real:N"),
    ("real+specaugment:4", "expected specaugment:FxT"),
    ("real+specaugment:4x", "expected specaugment:FxT"),
    ("real+weight:0.5", "weight:0.5 weighs each synthetic segment's loss against a real one's; add synthetic"),
    ("synthetic+weight:0.5", "weight:0.5 weighs each synthetic segment's loss against a real one's; add real"),
    ("real+synthetic+weight", "'weight:': expected weight:W with W > 0"),
    ("real+synthetic+weight:0", "'weight:0': expected weight:W with W > 0"),
    ("real+synthetic+weight:-1", "'weight:-1'"),
    ("real+synthetic+weight:x", "'weight:x'"),
    ("real+synthetic+weight:nan", "'weight:nan'"),
    ("real+synthetic+weight:inf", "'weight:inf'"),
    ("real+synthetic:g*0", "'synthetic:g*0': '*' may only end the name"),
    ("real+synthetic:*g", "'synthetic:*g'"),
    ("real+synthetic:g**", "'synthetic:g**'"),
])
def test_bad_text_is_one_line_naming_the_bad_part(text, part):
    with pytest.raises(EmodiffError) as err:
        Experiment.parse(text, where="study.experiments")
    message = str(err.value)
    assert message.startswith("study.experiments") and part in message and "\n" not in message


@pytest.mark.parametrize(("text", "part"), [("pitch", "--augment 'pitch'"), ("mixup:x", "--augment mixup:x"),
                                            ("specaugment:2", "--augment 'specaugment:2'")])
def test_bad_augment_names_the_flag_and_part(text, part):
    with pytest.raises(EmodiffError, match="^" + part.replace("+", r"\+")):
        Augment.parse(text)


def test_bad_train_on_and_config():
    with pytest.raises(EmodiffError, match="^--augment shuffle permutes the synthetic segments' labels; it needs"):
        Experiment.of("real", "shuffle+mixup")
    for train_on in ("real", "synthetic"):  # weighs synthetic against real: both are needed
        with pytest.raises(EmodiffError, match=r"^--augment weight:0.5 weighs .* it needs real and synthetic data "
                                               r"\(e.g. --augment synthetic\+weight:0.5\)$"):
            Experiment.of(train_on, "weight:0.5")
    assert Experiment.of("real+synthetic", "weight:0.5") == Experiment.parse("real+synthetic+weight:0.5")
    with pytest.raises(EmodiffError, match="--train-on 'fake': expected real, synthetic or real"):
        Experiment.of("fake")
    with pytest.raises(EmodiffError, match="unknown key"):
        Augment.from_config({"pitch": True})


def _result(job: ClassifyJob, augment: str) -> ResultInfo:
    return ResultInfo(name="r", corpus=job.corpus, train_corpus=job.corpus, protocol="loso", target_fraction=None,
                      train_on=job.effective_train_on, augment=augment, synthetic="", leaky=False, repeats=1,
                      uar=None, wa=None, f1=None, folds=[], classifier={}, meta=Meta(path="/results/r"))


@pytest.mark.parametrize(("text", "canonical", "label"), EXPERIMENTS)
def test_classify_study_and_report_agree(text, canonical, label):
    """The study's job, the CLI's flags for it, and the report reading back what classify stores: one experiment."""
    e = Experiment.parse(text)
    study = experiment_job(Path("s.h5"), load_recipe("demo"), "ravdess", text, "cpu")
    flags = ClassifyRequest(store=Path("s.h5"), corpus="ravdess", train_on=e.train_on, augment=e.augment.label())
    [cli] = flags.jobs(ClassifierConfig(), prepared=lambda: ["ravdess"])
    assert study.experiment == cli.experiment == e
    assert cli.default_name() == "ravdess-loso-" + "-".join(e.name_parts)
    # what classify writes (train_on and augment attrs, the config's dict) reads back as the same experiment
    for job in (study, cli):
        for stored in (job.augment.label(), augment_text(asdict(job.augment)), augment_text(job.config()["augment"])):
            assert condition(_result(job, stored)) == e and trained_on(_result(job, stored)) == label


@pytest.mark.parametrize(("text", "study", "default"), [
    ("real+synthetic:g0.5-*", "study-real-syntheticg0.5-all", "ravdess-loso-real-synthetic-g0.5-all"),
    ("real+synthetic:g0.5*+weight:0.5", "study-real-syntheticg0.5-all-weight0.5",
     "ravdess-loso-real-synthetic-g0.5-all-weight0.5"),
    ("real+synthetic:*", "study-real-synthetic-all", "ravdess-loso-real-synthetic-all"),
    ("real+synthetic+weight:2", "study-real-synthetic-weight2", "ravdess-loso-real-synthetic-weight2"),
])
def test_a_sweeps_prefix_and_a_weight_make_valid_result_names(text, study, default):
    """'*' is outside the store's name rule: the study's and classify's names say ``-all`` instead; settings of
    a sweep and weights get names of their own, not plain ``real-synthetic``'s."""
    from emodiff.records import check_name

    job = experiment_job(Path("s.h5"), load_recipe("demo"), "ravdess", text, "cpu")
    assert job.name == study and check_name(job.default_name()) == default


def test_report_shows_what_it_cannot_parse():
    job = ClassifyJob(store=Path("s.h5"), corpus="ravdess")
    odd = _result(job, "pitch")
    assert condition(odd) is None and trained_on(odd) == "real + pitch"
    assert augment_text({"pitch": True}) == '{"pitch": true}'


def test_request_expands_fractions_and_picks_the_corpus():
    asked = []

    def prepared():
        asked.append(1)
        return ["ravdess"]

    sweep = ClassifyRequest(store=Path("s.h5"), train="crema-d", test="ravdess", target_fraction="0,0.5",
                            name="x").jobs(ClassifierConfig(), prepared)
    assert [(j.corpus, j.train_corpus, j.target_fraction, j.name) for j in sweep] == [
        ("ravdess", "crema-d", 0.0, "x-0"), ("ravdess", "crema-d", 0.5, "x-0.5")]
    assert not asked  # cross-corpus names its corpora
    [within] = ClassifyRequest(store=Path("s.h5"), loso=True).jobs(ClassifierConfig(), prepared)
    assert (within.corpus, within.protocol, asked) == ("ravdess", "loso", [1])
    with pytest.raises(EmodiffError, match="holds ravdess, crema-d; choose one with --corpus"):
        ClassifyRequest(store=Path("s.h5")).jobs(ClassifierConfig(), lambda: ["ravdess", "crema-d"])


@pytest.mark.parametrize(("flags", "message"), [
    ({"loso": True, "folds": "session"}, "--loso and --folds session disagree"),
    ({"train": "crema-d"}, "cross-corpus needs both --train SOURCE and --test TARGET"),
    ({"train": "crema-d", "test": "ravdess", "folds": "session"}, "its own protocol"),
    ({"train": "crema-d", "test": "ravdess", "target_fraction": "x"}, "--target-fraction x: expected comma-separated"),
    ({"train": "crema-d", "test": "ravdess", "target_fraction": ","}, "expected comma-separated numbers"),
    ({"target_fraction": "0.5"}, "--target-fraction needs --train"),
])
def test_request_protocol_rules(flags, message):
    with pytest.raises(EmodiffError, match=message):
        ClassifyRequest(store=Path("s.h5"), **flags)
