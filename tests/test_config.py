"""Recipes: every shipped recipe round-trips, and every section is checked in full at load time.

The command-line tests run ``train``, ``sample`` and ``study`` against the real app with each bad
value, and check that each stops with one line before any work: no store, run folder or report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import pytest
import torch
import yaml
from cli_checks import one_line_error
from typer.testing import CliRunner

from emodiff.checkpoint import FORMAT
from emodiff.cli import app
from emodiff.config import (
    COMMON_SECTIONS,
    RECIPES,
    VOCODERS,
    ClassifierConfig,
    DenoiserConfig,
    SettingError,
    StudyConfig,
    TrainConfig,
    override,
    own_sections,
)
from emodiff.errors import EmodiffError
from emodiff.generators import family, load_recipe, recipe_from_dict


def _own(generator: str) -> tuple[str, ...]:
    """The sections of a family's own (its module declares them)."""
    return tuple(own_sections(family(generator)))


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_recipe_round_trips(path):
    recipe = load_recipe(path)
    again = recipe_from_dict(yaml.safe_load(yaml.safe_dump(recipe.to_dict())), "round trip")
    assert again == recipe


def test_unet_lists_are_read_as_tuples():
    recipe = load_recipe("ravdess")
    assert recipe.denoiser.channel_mult == (1, 2, 2) and recipe.denoiser.attention_levels == (2,)
    assert recipe.to_dict()["denoiser"]["channel_mult"] == [1, 2, 2]  # plain YAML lists back


@pytest.mark.parametrize("section,values,match", [
    ("denoiser", {"kind": "transformer"}, "not one of flat, unet"),
    ("denoiser", {"channel_mult": [1, "2"]}, "list of integers"),
    ("denoiser", {"channel_mult": 2}, "list of integers"),
    ("diffusion", {"parameterization": "x0"}, "not one of eps, v, edm"),
    ("diffusion", {"parameterization": "edm", "learn_sigma": True}, "learn_sigma"),
    ("diffusion", {"parameterization": "edm", "learn_sigma": False, "sigma_min": 5.0, "sigma_max": 1.0},
     r"diffusion\.sigma_max: expected a number > sigma_min \(5\.0\), got 1\.0"),
    ("diffusion", {"steps": 0}, r"diffusion\.steps: expected an integer >= 1, got 0"),
    ("diffusion", {"skip": "linear"}, "not one of scalar, wiener"),
    ("sample", {"sampler": "euler"}, "not one of ddpm, ddim, heun, dpmpp-2m, dpmpp-2m-sde"),
])
def test_bad_generator_settings_name_themselves(section, values, match):
    with pytest.raises(EmodiffError, match=match):
        recipe_from_dict({section: values}, "r.yaml")


def _demo(base: str = "demo") -> dict[str, Any]:
    return load_recipe(base).to_dict()


def _write(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _load_error(tmp_path: Path, data: Any) -> str:
    """load_recipe's message for ``data`` written to a file: one line that starts with the file."""
    path = _write(tmp_path / "bad.yaml", data)
    with pytest.raises(EmodiffError) as err:
        load_recipe(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}:"), message
    return message


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_recipe_round_trips_through_a_file(path, tmp_path):
    recipe = load_recipe(path)
    assert load_recipe(_write(tmp_path / "again.yaml", recipe.to_dict())) == recipe
    own = {*_own(recipe.generator), *COMMON_SECTIONS}
    assert own == set(yaml.safe_load(path.read_text())) - {"name", "generator"}  # each states its family's sections


# every section, each in a recipe of its family
OWN_SECTIONS = [("demo", s) for s in (*_own("diffusion"), *COMMON_SECTIONS)] + [("gan", "gan")]


@pytest.mark.parametrize(("base", "section"), OWN_SECTIONS)
def test_unknown_keys_are_errors(tmp_path, base, section):
    data = _demo(base)
    data[section]["colour"] = 1
    assert f"bad.yaml:{section}: unknown setting(s) colour; known: " in _load_error(tmp_path, data)


def test_unknown_sections_and_a_bad_name_are_errors(tmp_path):
    data = _demo()
    data["vocoder"] = {"kind": "hifigan"}
    assert "unknown section(s) vocoder; known: name" in _load_error(tmp_path, data)
    assert "bad.yaml:name: expected a string, got 3" in _load_error(tmp_path, {**_demo(), "name": 3})
    assert "expected a mapping with sections diffusion" in _load_error(tmp_path, [1, 2])
    assert "bad.yaml:train: expected a mapping of settings, got list" in _load_error(
        tmp_path, {**_demo(), "train": [1, 2]})


def test_a_recipe_path_that_is_no_yaml_text_is_one_line(tmp_path):
    """A folder, a device, a binary file, a broken YAML file: each names the path and what was expected."""
    binary = tmp_path / "model.pt"
    binary.write_bytes(b"PK\x03\x04\xd0\xff\x00")
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [1, 2\n")
    for path, expected in ((tmp_path, "a directory (expected a recipe YAML file; shipped recipes: demo,"),
                           (Path("/dev/null"), "not a regular file (expected a recipe YAML file"),
                           (binary, "not UTF-8 text (expected a recipe YAML file)"),
                           (tmp_path / "gone.yaml", "no such recipe file (expected a recipe YAML file"),
                           (broken, "not valid YAML (")):
        with pytest.raises(EmodiffError) as err:
            load_recipe(path)
        assert str(err.value).startswith(f"{path}: {expected}") and "\n" not in str(err.value), str(err.value)


@pytest.mark.parametrize(("section", "key", "value", "expected"), [
    ("diffusion", "steps", "4000", "expected an integer, got '4000'"),
    ("diffusion", "learn_sigma", "no", "expected true or false, got 'no'"),
    ("diffusion", "sigma_min", [0.1], "expected a number, got [0.1]"),
    ("denoiser", "channels", 48.0, "expected an integer, got 48.0"),
    ("denoiser", "channel_mult", "1,2,2", "expected a list of integers, got '1,2,2'"),
    ("denoiser", "attention_levels", [1.5], "expected a list of integers, got [1.5]"),
    ("train", "lr", "fast", "expected a number, got 'fast'"),
    ("train", "bf16", 1, "expected true or false, got 1"),
    ("train", "batch_size", True, "expected an integer, got True"),
    ("sample", "sampler", 3, "3 is not one of ddpm, ddim, heun, dpmpp-2m, dpmpp-2m-sde"),
    ("classifier", "epochs", None, "expected an integer, got None"),
    ("classifier", "schedule", "step", "'step' is not one of constant, cosine"),
    ("train", "schedule", "linear", "'linear' is not one of constant, cosine"),
    ("classifier", "normalize", "yes", "expected true or false, got 'yes'"),
    ("study", "folds", 5, "expected a string, got 5"),
])
def test_wrong_types_are_errors(tmp_path, section, key, value, expected):
    data = _demo()
    data[section][key] = value
    assert f"bad.yaml:{section}.{key}: {expected}" in _load_error(tmp_path, data)


# (recipe, section, key, bad value, what the message says was expected); every section, every kind of range.
RANGES = [
    ("demo", "diffusion", "steps", 0, "an integer >= 1"),
    ("demo", "diffusion", "wiener_block", 0, "an integer >= 1"),
    ("demo", "diffusion", "lambda_vb", -0.1, "a number >= 0"),
    ("demo", "diffusion", "sigma_data", -1.0, "a number >= 0"),
    ("demo", "diffusion", "min_snr_gamma", -1.0, "a number >= 0"),
    ("demo", "diffusion", "p_std", 0.0, "a number > 0"),
    ("demo", "diffusion", "sigma_min", 0.0, "a number > 0"),
    ("demo", "diffusion", "sigma_max", 0.001, "a number > sigma_min (0.002)"),
    ("demo", "diffusion", "rho", 0.0, "a number > 0"),
    ("demo", "diffusion", "learn_sigma", True, "false with parameterization edm"),
    ("demo", "denoiser", "kernel_size", 4, "an odd integer"),
    ("demo", "denoiser", "channels", 0, "an integer >= 1"),
    ("demo", "denoiser", "emb_dim", 0, "an integer >= 1"),
    ("demo", "denoiser", "heads", 5, "a number that every level's width (channels x channel_mult: 48, 96, 96) is "
     "divisible by"),
    ("demo", "denoiser", "norm_groups", 7, "a number that every level's width"),
    ("demo", "denoiser", "channel_mult", [], "a non-empty list of integers >= 1"),
    ("demo", "denoiser", "attention_levels", [3], "levels of channel_mult, each in 0..2"),
    ("demo", "denoiser", "dropout", 1.0, "a probability in [0, 1)"),
    ("paper", "denoiser", "heads", 3, "a divisor of channels (1536) and of text_hidden (256)"),
    ("paper", "denoiser", "norm_groups", 5, "a divisor of channels (1536)"),
    ("paper", "denoiser", "time_dim", 1, "an integer >= 2"),
    ("paper", "denoiser", "blocks_before", -1, "an integer >= 0"),
    ("demo", "train", "lr", -1, "a number > 0"),
    ("demo", "train", "batch_size", 0, "an integer >= 1"),
    ("demo", "train", "steps", 0, "an integer >= 1"),
    ("demo", "train", "val_fraction", 2, "a fraction in [0, 1)"),
    ("demo", "train", "ema_decay", 1.0, "a fraction in [0, 1)"),
    ("demo", "train", "cond_dropout", -0.1, "a fraction in [0, 1)"),
    ("demo", "train", "grad_clip", 0, "a number > 0"),
    ("demo", "train", "weight_decay", -1, "a number >= 0"),
    ("demo", "train", "warmup_steps", -1, "an integer >= 0"),
    ("demo", "train", "crop_frames", -128, "an integer >= 0"),
    ("demo", "train", "checkpoint_every", 0, "an integer >= 1"),
    ("demo", "train", "seed", -1, "an integer >= 0"),
    ("demo", "sample", "steps", 0, "an integer >= 1"),
    ("demo", "sample", "batch_size", 0, "an integer >= 1"),
    ("demo", "sample", "eta", -1, "a number in [0, 1]"),
    ("demo", "sample", "guidance", 21, "a number in [0, 20]"),
    ("demo", "classifier", "kernel_size", 4, "an odd integer"),
    ("demo", "classifier", "n_classes", 1, "an integer >= 2"),
    ("demo", "classifier", "lr", 0, "a number > 0"),
    ("demo", "classifier", "epochs", 0, "an integer >= 1"),
    ("demo", "classifier", "conv_dropout", 1.0, "a probability in [0, 1)"),
    ("demo", "classifier", "time_pool", 0, "an integer >= 1"),
    ("demo", "classifier", "patience", -1, "an integer >= 0"),
    ("demo", "classifier", "select_from", 0, "an integer >= 1"),
    ("demo", "study", "samples", 0, "an integer >= 1"),
    ("demo", "study", "repeats", 0, "an integer >= 1"),
    ("demo", "study", "workers", 0, "an integer >= 1"),
    ("demo", "study", "train_steps", -1, "an integer >= 0"),
    ("demo", "study", "examples", -1, "an integer >= 0"),
    ("demo", "study", "folds", "groups:2", "loso, session or groups:K with an integer K >= 3"),
    ("demo", "study", "folds", "kfold", "loso, session or groups:K"),
    ("demo", "study", "experiments", "real, mixup", "an experiment ('mixup' names no data; expected real"),
    ("demo", "study", "adaptation_experiments", "real+speed:2", "an experiment ('real+speed:2': 'speed:2': "
     "speed takes no argument)"),
    ("demo", "study", "experiments", "", "comma-separated experiments"),
    ("demo", "study", "fractions", "0, 1.5", "comma-separated fractions in [0, 1]"),
    ("demo", "study", "vocoder", "wavenet", "one of auto, hifigan, griffin-lim"),
    ("demo", "study", "corpus", "", "a non-empty string"),
]


@pytest.mark.parametrize(("base", "section", "key", "value", "expected"), RANGES,
                         ids=[f"{b}-{s}.{k}={v}" for b, s, k, v, _ in RANGES])
def test_out_of_range_values_name_file_key_value_and_what_was_expected(tmp_path, base, section, key, value,
                                                                       expected):
    data = _demo(base)
    data[section][key] = value
    message = _load_error(tmp_path, data)
    assert f"bad.yaml:{section}.{key}: expected {expected}" in message, message
    assert ", got " in message


@pytest.mark.parametrize(("base", "change", "key", "expected"), [
    ("paper", {"diffusion": {"parameterization": "v", "learn_sigma": False}}, "diffusion.parameterization",
     "eps with denoiser.kind flat (the paper's IDDPM), v or edm with denoiser.kind unet"),
    ("demo", {"diffusion": {"parameterization": "eps"}}, "diffusion.parameterization",
     "eps with denoiser.kind flat (the paper's IDDPM), v or edm with denoiser.kind unet"),
    ("paper", {"sample": {"sampler": "heun"}}, "sample.sampler", "ddpm or ddim with diffusion.parameterization eps"),
    ("paper", {"sample": {"steps": 5000}}, "sample.steps", "at most diffusion.steps (4000)"),
    ("paper", {"sample": {"guidance": 1.0}}, "sample.guidance", "0 with diffusion.parameterization eps"),
    ("demo", {"train": {"crop_frames": 102}}, "train.crop_frames", "0 or a multiple of 4"),
    ("demo", {"diffusion": {"wiener_block": 3}}, "diffusion.wiener_block", "a divisor of train.crop_frames (128)"),
])
def test_settings_that_must_agree_across_sections(tmp_path, base, change, key, expected):
    data = _demo(base)
    for section, values in change.items():
        data[section].update(values)
    message = _load_error(tmp_path, data)
    assert f"bad.yaml:{key}: expected {expected}" in message and ", got " in message


@pytest.mark.parametrize(("base", "section"), OWN_SECTIONS)
def test_a_missing_section_is_an_error(tmp_path, base, section):
    data = _demo(base)
    del data[section]
    family = data["generator"]
    assert f"bad.yaml: no {section} section; a {family} recipe states every section" in _load_error(tmp_path, data)
    data[section] = None  # `section:` with nothing under it
    assert f"no {section} section" in _load_error(tmp_path, data)


@pytest.mark.parametrize(("base", "foreign"), [("demo", "gan"), ("gan", "denoiser"), ("gan", "diffusion")])
def test_another_familys_section_is_an_error(tmp_path, base, foreign):
    """A section nothing reads would be settings that silently do nothing."""
    data = {**_demo(base), foreign: {}}
    assert f"a {data['generator']} recipe has no {foreign} section" in _load_error(tmp_path, data)


def test_a_run_folders_recipe_loads_as_a_recipe_file(tmp_path):
    """``runs/NAME/recipe.yaml`` (Recipe.to_dict) is what a user resumes with: it holds its family's sections."""
    for base in ("demo", "gan"):
        recipe = load_recipe(base)
        assert load_recipe(_write(tmp_path / f"{base}.yaml", recipe.to_dict())) == recipe


# What the shipped recipes recorded before sampling options were each family's own (issue 22): the config hash of
# Recipe.to_dict() (in every /runs group's config and checkpoint) and the sha256 of runs/NAME/recipe.yaml. Stored
# runs and sets are recognised as done by these; a change here would train and draw them all again.
RECORDED = {
    # Changed on purpose (issue 20): its study section became the final study's (groups:6x2, eight experiments);
    # study.samples went 400 -> 1600 -> 400 (the paired quantity curve on validation actors), the hash of 400 again.
    "ravdess": ("3317f4bb581a698b2a40799d39b0b3d9f72bd1eac10da6c1b71ddf98ccd60502",
                "6c7017c9c69c637c41e513a525d84ac27016a2c40fc55cef9ec17c1a7503bf35"),
    "demo": ("8eaebc4a2a7ac0e3ef0d1891bda9e41ab7cac43d0bef87833cf78812691dc112",
             "2b9dafdde08135c272da6e7a96fa03566b7c5098b64b47b922d3a8447f71fecf"),
    "gan": ("724cc144c8df749522989c20c266fe4370f3b54f11bf573408ffcd9a1c0e9259",
            "32ede78d932f85503c77b6961b9e64c186503ea43de3f3f4253b3779580c03ae"),
    "gan-hinge": ("51a79190bce1f7dac1db9f23992a2f6a6a90d2541b46e56c9a3c80e4d1098df6",
                  "b513320d3dc458b7ad528b31151139fb834f8a54bb033bb6f8ecfb466ed7e7c2"),
    "paper": ("11e8a527bb8694b554e3e0dd640c76c7d4018cf8860e03de97a3970c0d3b4c8d",
              "1ab94be1a028a46d1dbef9d8ec5a52bffb5e56953366c8bb9d613158c0d3a7ea"),
}


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_what_a_shipped_recipe_records_is_unchanged(name):
    import hashlib

    from emodiff.store import config_hash
    from emodiff.train import _yaml

    recipe = load_recipe(name)
    assert (config_hash(recipe.to_dict())[1], hashlib.sha256(_yaml(recipe).encode()).hexdigest()) == RECORDED[name]


def test_a_gan_recipe_carries_no_sampling_option_of_another_family(tmp_path):
    """The GAN draws in one pass: a diffusion sampling option in its sample section would do nothing."""
    data = _demo("gan")
    assert set(yaml.safe_load((RECIPES / "gan.yaml").read_text())["sample"]) == {"batch_size"}
    for key, value in (("guidance", 1.0), ("steps", 24), ("sampler", "ddim")):
        message = _load_error(tmp_path, {**data, "sample": {"batch_size": 64, key: value}})
        assert (f"bad.yaml:sample.{key}: a gan recipe has no sample.{key} (that is the diffusion family's); its "
                "sample settings are batch_size, voices") in message
    recipe = load_recipe("gan")
    assert not hasattr(recipe.sample, "steps") and not hasattr(recipe, "diffusion")
    # what a GAN run recorded (and records) of those settings reads back: runs/NAME/recipe.yaml, a checkpoint
    assert recipe.to_dict()["sample"] == {"steps": 1, "sampler": "ddpm", "eta": 0.0, "batch_size": 64,
                                          "guidance": 0.0, "voices": "training"}
    older = {**data, "sample": {"steps": 100, "sampler": "ddpm", "eta": 0.0, "batch_size": 64, "guidance": 0.0}}
    assert recipe_from_dict(older, "ckpt.pt:recipe") == recipe


def test_the_generator_is_one_the_registry_holds(tmp_path):
    assert "bad.yaml:generator: 'vae' is not one of diffusion, gan" in _load_error(tmp_path,
                                                                                   {**_demo(), "generator": "vae"})


def test_an_empty_recipe_file_is_an_error(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n")
    with pytest.raises(EmodiffError, match="no diffusion, denoiser, train, sample, classifier, study section"):
        load_recipe(path)


def test_a_recipe_stored_before_a_section_existed_still_loads():
    data = _demo()
    del data["study"]  # a checkpoint from before the study section: only files must be complete
    assert recipe_from_dict(data, "ckpt.pt:recipe").study == StudyConfig()


def test_study_held_out_auc_is_recorded_only_when_on(tmp_path):
    """A switch added later: off, a recipe records what it recorded before it existed (the hashes above); on, it is
    recorded, read back and checked as a boolean."""
    data = _demo()
    assert "held_out_auc" not in load_recipe("demo").to_dict()["study"]
    on = load_recipe(_write(tmp_path / "on.yaml", {**data, "study": {**data["study"], "held_out_auc": True}}))
    assert on.study.held_out_auc is True and on.to_dict()["study"]["held_out_auc"] is True
    assert recipe_from_dict(on.to_dict(), "ckpt.pt:recipe") == on
    assert "study.held_out_auc" in _load_error(tmp_path, {**data, "study": {**data["study"], "held_out_auc": "yes"}})


def test_configs_made_in_code_are_checked_too():
    with pytest.raises(SettingError, match=r"^denoiser\.kernel_size: expected an odd integer .*, got 4$"):
        DenoiserConfig(kernel_size=4)
    with pytest.raises(ValueError, match=r"^train\.batch_size: expected an integer >= 1, got 0$"):
        TrainConfig(batch_size=0)
    from emodiff.diffusion.denoiser import validate
    from emodiff.diffusion.unet import validate_unet
    from emodiff.ser.classifier import ClassifierConfig as FromTheModel

    assert FromTheModel is ClassifierConfig  # re-exported where the model lives
    with pytest.raises(ValueError, match="denoiser.heads"):
        validate(DenoiserConfig(kind="unet", channels=48, heads=4, norm_groups=8, text_hidden=18))
    validate_unet(load_recipe("demo").denoiser)


def test_study_vocoders_are_the_vocoder_modules():
    from emodiff.vocoder import VocoderKind

    assert get_args(VocoderKind) == VOCODERS


def test_flags_beat_the_recipe_and_are_checked_like_it():
    train = load_recipe("demo").train
    assert override(train, "--steps", steps=None) is train
    flagged = override(train, "--steps", steps=7)
    assert flagged.steps == 7 and flagged == TrainConfig(**{**train.__dict__, "steps": 7})
    with pytest.raises(EmodiffError, match=r"^--steps: train\.steps: expected an integer >= 1, got 0$"):
        override(train, "--steps", steps=0)
    with pytest.raises(EmodiffError, match=r"^--epochs: classifier\.epochs: expected an integer >= 1, got -2$"):
        override(load_recipe("demo").classifier, "--epochs", epochs=-2)
    with pytest.raises(EmodiffError, match=r"^--steps: train\.steps: expected an integer, got 'many'$"):
        override(train, "--steps", steps="many")


runner = CliRunner()


# The bad values. heads 3 divides the demo U-Net's widths (48, 96), so it is tried on the paper's
# flat denoiser (text_hidden 256), and heads 5 on the demo.
BAD = [("demo", "denoiser", "kernel_size", 4, "got 4"), ("demo", "diffusion", "steps", 0, "got 0"),
       ("demo", "train", "lr", -1, "got -1.0"), ("demo", "train", "batch_size", 0, "got 0"),
       ("demo", "sample", "steps", 0, "got 0"), ("demo", "train", "val_fraction", 2, "got 2.0"),
       ("paper", "denoiser", "heads", 3, "got 3"), ("demo", "denoiser", "heads", 5, "got 5")]
BAD_IDS = [f"{b}-{s}.{k}={v}" for b, s, k, v, _ in BAD]


def _bad_recipe(base: str, section: str, key: str, value: Any) -> dict[str, Any]:
    data = _demo(base)
    data[section][key] = value
    # A study of IEMOCAP without --root stops at its first step: were the value not checked up front,
    # the test would fail on that message in a second rather than prepare and train for minutes.
    data["study"]["corpus"] = "iemocap"
    return data


@pytest.mark.parametrize("command", ["train", "study"])
@pytest.mark.parametrize(("base", "section", "key", "value", "got"), BAD, ids=BAD_IDS)
def test_train_and_study_stop_on_a_bad_recipe_value_before_any_work(tmp_path, monkeypatch, command, base,
                                                                     section, key, value, got):
    monkeypatch.chdir(tmp_path)
    recipe = _write(tmp_path / "bad.yaml", _bad_recipe(base, section, key, value))
    store = tmp_path / "s.h5"
    args = {"train": ["train", "--corpus", "toy", "--out", str(tmp_path / "run")],
            "study": ["study", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "report")]}[command]
    result = runner.invoke(app, [*args, "--recipe", str(recipe), "--store", str(store), "--device", "cpu"])
    one_line_error(result, f"bad.yaml:{section}.{key}: expected", got, first=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]  # no store, run, runs or report


@pytest.mark.parametrize(("base", "section", "key", "value", "got"), BAD, ids=BAD_IDS)
def test_sample_stops_on_a_bad_value_in_the_runs_recipe_before_any_work(tmp_path, monkeypatch, base, section,
                                                                        key, value, got):
    """``sample`` reads the recipe the checkpoint holds (the run's own), not a file."""
    monkeypatch.chdir(tmp_path)
    ckpt = tmp_path / "run" / "ckpt-0000001.pt"
    ckpt.parent.mkdir()
    torch.save({"format": FORMAT, "step": 1, "model": {}, "ema": {}, "training_speakers": ["toy:s1"],
                "recipe": _bad_recipe(base, section, key, value)}, ckpt)
    result = runner.invoke(app, ["sample", "--run", str(ckpt), "--n", "4", "--store", str(tmp_path / "s.h5"),
                                 "--device", "cpu"])
    one_line_error(result, f"ckpt-0000001.pt:recipe:{section}.{key}: expected", got, first=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"] and not (tmp_path / "s.h5").exists()


def test_a_train_flag_beats_the_recipe_and_is_checked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    jobs = []

    def fake_train(job: Any, progress: Any = None) -> None:  # the outermost effect: the training itself
        jobs.append(job)
        raise EmodiffError("stopped by the test")

    monkeypatch.setattr("emodiff.train.train", fake_train)
    args = ["train", "--recipe", "demo", "--corpus", "toy", "--store", str(tmp_path / "s.h5"), "--out",
            str(tmp_path / "run")]
    one_line_error(runner.invoke(app, [*args, "--steps", "7"]), "stopped by the test", first=True)
    assert [job.recipe.train.steps for job in jobs] == [7]
    assert jobs[0].recipe.train.lr == load_recipe("demo").train.lr  # the rest stays the recipe's
    one_line_error(runner.invoke(app, [*args, "--steps", "0"]), "--steps: train.steps: expected an integer >= 1, got 0",
                   first=True)
    assert len(jobs) == 1
