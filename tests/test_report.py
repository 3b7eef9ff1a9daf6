"""``emodiff report``: a full store rendered in headless Chromium, a partial store, the numbers, bad input."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import re
import shutil
import subprocess
import sys
import types
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.stats
import soundfile as sf
import torch
from toy import make_toy_store, tiny_recipe
from typer.testing import CliRunner

from emodiff import store as st
from emodiff.classify import ClassifyJob, classify
from emodiff.cli import app
from emodiff.data import ravdess_sample
from emodiff.emotions import EMOTIONS
from emodiff.prepare import PrepareJob, prepare
from emodiff.report import ReportJob, build_report
from emodiff.report.collect import ResultInfo
from emodiff.report.examples import MIN_FRAMES
from emodiff.report.experiments import ResultTable
from emodiff.report.quality_table import PAIRED
from emodiff.sample import SampleJob, sample
from emodiff.ser.classifier import ClassifierConfig
from emodiff.train import TrainJob, train

TINY = ClassifierConfig(channels=16, lstm_hidden=16, epochs=1, lr=1e-3, batch_size=32)
CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
runner = CliRunner()


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    # The tiny LSTMs are thousands of times slower when two OpenMP threads fight over busy cores.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class FakeVocoder:
    """The emodiff.vocoder API with a 440 Hz tone as long as the mel: fast, and records what it was given."""

    name = "fake-tone"
    sample_rate = 22050

    def __init__(self) -> None:
        self.widths: list[int] = []

    def __call__(self, mel: np.ndarray) -> np.ndarray:
        assert mel.shape[0] == 80 and mel.dtype == np.float32
        self.widths.append(mel.shape[1])
        t = np.arange(mel.shape[1] * 256) / self.sample_rate
        return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


@pytest.fixture()
def fake_vocoder(monkeypatch) -> FakeVocoder:
    voc = FakeVocoder()
    module = types.ModuleType("emodiff.vocoder")
    module.load_vocoder = lambda kind="auto", device="cpu": voc  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "emodiff.vocoder", module)
    return voc


def _copy_corpus(store: Path, source: str, name: str) -> None:
    """A second corpus (same segments, its own name) so that cross-corpus and adaptation runs have a target."""
    with st.write_group(store, f"corpora/{name}", config={"copy_of": source}) as g, h5py.File(store, "r") as f:
        for key in ("utterances", "segments"):
            f.copy(f[f"corpora/{source}/{key}"], g, name=key)
        g.attrs["corpus"] = name


def _legacy_result(store: Path) -> None:
    """A result as the first `classify` wrote it: no protocol, train_corpus, augment, repeats, WA or F1 attrs."""
    conf = np.array([[3, 1, 0, 0], [0, 2, 1, 0], [1, 0, 4, 0], [0, 0, 0, 2]])
    with st.write_group(store, "results/legacy", config={"corpus": "toy", "folds": "groups:2", "train_on": "real",
                                                         "augment": {"synthetic": None, "mixup": 0.2,
                                                                     "specaugment": False}}) as g:
        for name, uar in (("group=1", 0.5), ("group=2", 0.7)):
            fold = g.create_group(name)
            fold.create_dataset("confusion", data=conf)
            fold.attrs.update(uar=uar, wa=uar + 0.01, macro_f1=uar - 0.01, best_epoch=1, val_uar=0.5)
        g.attrs.update(uar_mean=0.6, uar_std=0.1414, leaky=False, corpus="toy", folds="groups:2", train_on="real",
                       synthetic="")


@pytest.fixture(scope="module")
def full_store(tmp_path_factory) -> Path:
    """Every step through the real code: toy corpus (+ a copy as a second corpus), embeddings, a run, a synthetic
    set, within-corpus results (one leaky), cross-corpus with two repeats, adaptation at three fractions."""
    root = tmp_path_factory.mktemp("full")
    store = make_toy_store(root / "toy.h5")
    _copy_corpus(store, "toy", "toyb")
    with one_thread():
        train(TrainJob(store=store, recipe=tiny_recipe(3), corpora=("toy",), out=root / "runs" / "tiny",
                       device="cpu"))
        sample(SampleJob(store=store, n=8, options={"steps": 3}, device="cpu"))
        job = ClassifyJob(store=store, corpus="toy", classifier=TINY, device="cpu")
        classify(job)
        classify(dataclasses.replace(job, train_on="real+synthetic", allow_leak=True))
        classify(dataclasses.replace(job, corpus="toyb", train_corpus="toy", repeats=2))
        for fraction in (0.0, 0.5, 1.0):
            classify(dataclasses.replace(job, corpus="toyb", train_corpus="toy", target_fraction=fraction))
    _legacy_result(store)
    return store


@pytest.fixture(scope="module")
def prepared_only(tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("partial") / "s.h5"
    prepare(PrepareJob(store, "ravdess", ravdess_sample(), limit=8))
    return store


class _Dom(HTMLParser):
    """Tables (caption, header cells, body rows), and every src / href / id of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict] = []
        self.refs: list[str] = []
        self.ids: set[str] = set()
        self.tags: set[str] = set()
        self._cell: list[str] | None = None
        self._where = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.add(tag)
        self.refs += [a[k] for k in ("src", "href") if a.get(k)]
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "table":
            self.tables.append({"caption": "", "head": [], "rows": []})
        elif tag == "caption":
            self._where, self._cell = "caption", []
        elif tag == "tr" and self.tables:
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th"):
            self._where, self._cell = tag, []

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if self._cell is None or tag not in ("td", "th", "caption"):
            return
        text = " ".join("".join(self._cell).split())
        if tag == "caption":
            self.tables[-1]["caption"] = text
        else:
            self.tables[-1]["rows"][-1].append(text)
        self._cell = None


def parse(html: str) -> _Dom:
    dom = _Dom()
    dom.feed(html)
    for t in dom.tables:  # the first row is the header
        if t["rows"]:
            t["head"], t["rows"] = t["rows"][0], t["rows"][1:]
    return dom


def table(dom: _Dom, caption_part: str) -> dict:
    found = [t for t in dom.tables if caption_part in t["caption"]]
    assert found, (caption_part, [t["caption"] for t in dom.tables])
    return found[0]


def row_of(t: dict, result: str) -> dict[str, str]:
    rows = [r for r in t["rows"] if result in r]
    assert len(rows) == 1, (result, t["rows"])
    return dict(zip(t["head"], rows[0], strict=True))


def pm(mean: float, std: float) -> str:
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def check_refs(out: Path, dom: _Dom) -> None:
    """Every src / href names a file in the report folder, or an anchor on the page; nothing from the network."""
    assert dom.refs
    for ref in dom.refs:
        if ref.startswith("#"):
            assert ref[1:] in dom.ids, ref
            continue
        assert "://" not in ref and not ref.startswith("//"), ref
        path = (out / ref).resolve()
        assert path.is_file() and out.resolve() in path.parents, ref


@pytest.fixture(scope="module")
def full_report(full_store, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reports") / "report"
    mp = pytest.MonkeyPatch()
    voc = FakeVocoder()
    module = types.ModuleType("emodiff.vocoder")
    module.load_vocoder = lambda kind="auto", device="cpu": voc  # type: ignore[attr-defined]
    mp.setitem(sys.modules, "emodiff.vocoder", module)
    try:
        done = runner.invoke(app, ["report", "--store", str(full_store), "--out", str(out), "--examples", "2",
                                   "--device", "cpu"], env={"COLUMNS": "200"})
    finally:
        mp.undo()
    assert done.exit_code == 0, done.output
    assert "index.html" in done.stdout
    return out


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium, chromium-browser or google-chrome on PATH")
def test_full_report_renders_in_headless_chromium(full_report, tmp_path):
    index = (full_report / "index.html").resolve()
    shot = tmp_path / "shot.png"
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1280,4000", "--hide-scrollbars"]
    subprocess.run([*base, f"--screenshot={shot}", index.as_uri()], check=True, timeout=120, capture_output=True)
    dom_text = subprocess.run([*base, "--dump-dom", index.as_uri()], check=True, timeout=120, capture_output=True,
                              text=True).stdout

    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[:2] == (4000, 1280)
    colours = np.unique((pixels[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 200 and pixels[..., :3].std() > 0.05  # text, tables and figures, not a blank page

    dom = parse(dom_text)
    assert "script" not in dom.tags and "link" not in dom.tags  # styles inline, nothing to fetch or run
    check_refs(full_report, dom)
    imgs = [r for r in dom.refs if r.endswith(".png")]
    assert len([r for r in imgs if "confusion-" in r]) == 7  # one per result
    assert any("mels-" in r for r in imgs) and any("adaptation-" in r for r in imgs)
    for ref in imgs:
        assert (full_report / ref).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    wavs = [r for r in dom.refs if r.endswith(".wav")]
    # 4 emotions x 2 examples x (real toy + synthetic tiny), where the 8-segment set has 2 per emotion
    assert len(wavs) == 4 * 2 * 2
    for caption in ("Corpora", "Synthetic sets", "Training runs", "Table 2", "Table 3", "Adaptation",
                    "Checkpoints", "Software"):
        table(dom, caption)
    t2 = table(dom, "Table 2 — UAR %, toy, within corpus, loso")
    assert t2["head"][:4] == ["trained on", "result", "UAR %", "WA %"] and t2["head"][-1] == "paper UAR %"
    assert row_of(t2, "toy-loso-real")["paper UAR %"] == "ref. 58.62"
    assert row_of(t2, "toy-loso-real-synthetic")["paper UAR %"] == "ref. 61.22"
    assert "fake-tone" in dom_text and "Griffin" not in dom_text


def test_numbers_and_leak_marks_equal_the_store(full_store, full_report):
    html = (full_report / "index.html").read_text()
    md = (full_report / "report.md").read_text()
    dom = parse(html)
    with h5py.File(full_store, "r") as f:
        results = {k: dict(f["results"][k].attrs) for k in f["results"]}
        folds = {k: [g for g in f["results"][k].values() if "confusion" in g] for k in f["results"]}
        conf = {k: sum(g["confusion"][()] for g in v) for k, v in folds.items()}
        n_folds = {k: len(v) for k, v in folds.items()}
    assert results["toy-loso-real-synthetic"]["leaky"] and not results["toy-loso-real"]["leaky"]
    for name, a in results.items():
        rows = [r for t in dom.tables for r in t["rows"] if name in r]
        assert rows, name
        uar = pm(a["uar_mean"], a["uar_std"])
        assert any(uar in r for r in rows), (name, uar, rows)  # summary and Table 2/3 both show it
        if "wa_mean" in a:
            assert any(pm(a["wa_mean"], a["wa_std"]) in r for r in rows)
            assert any(pm(a["f1_mean"], a["f1_std"]) in r for r in rows)
        repeats = int(a.get("repeats", 1))
        assert any(f"{n_folds[name] // repeats} × {repeats}" in r for r in rows)
        # every table row, figure caption and legend of a leaky result carries the mark, and only those
        for r in rows:
            marked = any("⚠ leaky" in cell for cell in r)
            assert marked == bool(a["leaky"]), (name, r)
        caption = re.search(rf"<figcaption>Figure 3 — <code>{re.escape(name)}</code>.*?</figcaption>", html)
        assert caption and ("⚠ leaky" in caption.group(0)) == bool(a["leaky"])
        assert f"({int(conf[name].sum())} test utterances)" in caption.group(0)
        assert uar in md
    # the legacy result: protocol from `folds`, WA/F1 from its folds, augment from the config dict
    legacy = row_of(table(dom, "toy, within corpus, groups:2"), "legacy")
    assert legacy["trained on"] == "real + mixup:0.2" and legacy["WA %"] == pm(0.61, np.std([0.51, 0.71], ddof=1))
    cross = row_of(table(dom, "Table 3 — UAR %, toy -> toyb, cross-corpus"), "toy-to-toyb-real")
    assert cross["folds × repeats"] == "1 × 2" and cross["paper UAR %"] == "ref. 45.81"
    adapt = table(dom, "Adaptation — UAR %, toy -> toyb, adaptation")
    assert [row_of(adapt, f"toy-to-toyb-adapt{x}-real")["target %"] for x in ("0", "0.5", "1")] == ["0", "50", "100"]
    assert "ours: toy (24 utterances, 3 speakers), leave-one-speaker-out over 3 speakers" in " ".join(html.split())
    # the summary's corpus and synthetic rows
    with h5py.File(full_store, "r") as f:
        emotion = f["synthetic/tiny/emotion"][()]
        drawn_with = f["synthetic/tiny"].attrs["drawn_with"]
    synth = row_of(table(dom, "Synthetic sets"), "tiny")
    assert [synth[e] for e in EMOTIONS] == [str((emotion == k).sum()) for k in range(4)]
    assert synth["generator"] == "diffusion" and synth["drawn with"] == drawn_with
    assert drawn_with.startswith("eps ddpm, ") and drawn_with.endswith(" steps")
    assert row_of(table(dom, "Corpora"), "toy")["hours"] == f"{24 * 2.97 / 3600:.2f}"


def test_partial_store_says_what_is_missing(prepared_only, tmp_path, fake_vocoder):
    out = tmp_path / "rep"
    done = runner.invoke(app, ["report", "--store", str(prepared_only), "--out", str(out), "--device", "cpu"],
                         env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    said = " ".join(done.stdout.split())
    assert "index.html" in said and "run `emodiff embed`" in said
    html = (out / "index.html").read_text()
    flat = " ".join(re.sub(r"<[^>]+>", "", html).split())
    for sentence in ("No text embeddings: run emodiff embed.", "No training run: run emodiff train --recipe demo.",
                     "No synthetic set: run emodiff sample --n N", "No classification results: run emodiff classify",
                     "No quality metrics:", "No adaptation results", "No confusion matrices"):
        assert sentence in flat, sentence
    dom = parse(html)
    check_refs(out, dom)
    corpora = row_of(table(dom, "Corpora"), "ravdess")
    with h5py.File(prepared_only, "r") as f:
        speakers = len(set(f["corpora/ravdess/utterances/speaker"].asstr()[()]))
    assert corpora["utterances"] == "8" and corpora["speakers"] == str(speakers)
    # one vocoded real clip per emotion, chosen as documented and trimmed to its valid frames
    with h5py.File(prepared_only, "r") as f:
        g = f["corpora/ravdess"]
        seg_utt, frames = g["segments/utt"][()], g["segments/frames"][()]
        emo = g["utterances/emotion"][()]
        ids = g["utterances/id"].asstr()[()]
    wavs = sorted(out.glob("audio/*.wav"))
    for k, name in enumerate(EMOTIONS):
        segs = [i for i in range(len(seg_utt)) if emo[seg_utt[i]] == k]
        if not segs:
            continue
        pick = next((i for i in segs if frames[i] >= MIN_FRAMES), max(segs, key=lambda i: frames[i]))
        wav = [w for w in wavs if f"-{name}-" in w.name]
        assert len(wav) == 1 and ids[seg_utt[pick]] in wav[0].name
        info = sf.info(str(wav[0]))
        assert info.subtype == "PCM_16" and info.samplerate == 22050 and info.frames == 256 * frames[pick]
    assert (out / "report.md").read_text().startswith("# emodiff report")


def test_damaged_groups_are_named_not_fatal(prepared_only, tmp_path):
    store = tmp_path / "s.h5"
    shutil.copy(prepared_only, store)
    with st.write_group(store, "results/broken", config={}) as g:
        g.create_group("fold1").create_dataset("confusion", data=np.ones((3, 3), int))
    with st.write_group(store, "synthetic/empty", config={}) as g:
        g.attrs["sampler"] = "ddim"
    res = build_report(ReportJob(store, tmp_path / "rep", examples=0))
    html = res.index.read_text()
    assert "/results/broken could not be read" in html and "expected (4, 4)" in html
    assert row_of(table(parse(html), "Synthetic sets"), "empty")["segments"] == "0"
    assert any("could not be read" in note for note in res.missing)


# UAR per fold and seed of three results on the same 3 folds x 2 seeds (groups:3, 2 repeats).
FOLD_SEED_UAR = {
    "r-real": ("real", "", [[0.50, 0.54], [0.40, 0.42], [0.60, 0.58]]),
    "r-synth": ("real+synthetic", "", [[0.55, 0.57], [0.41, 0.45], [0.63, 0.61]]),  # d = 4, 2, 3 pp
    "r-mixup": ("real", "mixup:0.2", [[0.49, 0.53], [0.43, 0.41], [0.60, 0.60]]),  # d = -1, 1, 1 pp
}
OLD_PAIRED = {"paired_mean_diff": 0.03, "paired_ci_low": 0.01, "paired_ci_high": 0.05, "paired_level": 0.95,
              "paired_p_wilcoxon": 0.03, "paired_n": 6, "paired_wins": 6, "paired_losses": 0, "paired_ties": 0}


def _compared_results(store: Path) -> None:
    """Results as classify writes them, with the pair-level `paired_*` attrs of a store written before the
    fold was the unit; `orphan`'s baseline is not in the store."""
    for name, (train_on, augment, uars) in {**FOLD_SEED_UAR, "orphan": FOLD_SEED_UAR["r-synth"]}.items():
        with st.write_group(store, f"results/{name}", config={"name": name}) as g:
            for j, per_seed in enumerate(uars):
                for seed, uar in enumerate(per_seed):
                    g.create_group(f"group={j}@seed{seed}").attrs.update(uar=uar, seed=seed, n_train=32, n_test=8)
            flat = np.array(uars)
            g.attrs.update(corpus="ravdess", train_corpus="ravdess", protocol="groups:3", folds="groups:3",
                           train_on=train_on, augment=augment, repeats=2, leaky=False, synthetic="",
                           uar_mean=flat.mean(), uar_std=np.std(flat.mean(axis=1), ddof=1))
            if name != "r-real":
                g.attrs.update(OLD_PAIRED, paired_baseline="gone" if name == "orphan" else "r-real")


def _corrected_p(d: list[float], ratio: float) -> float:
    """scipy's one-sample t over the folds, scaled by sqrt(1/J) / sqrt(1/J + ratio); two-sided p."""
    t = scipy.stats.ttest_1samp(d, 0.0).statistic * math.sqrt(1 / len(d)) / math.sqrt(1 / len(d) + ratio)
    return float(2 * scipy.stats.t.sf(abs(t), len(d) - 1))


def test_comparisons_are_fold_level_with_holm_and_a_fold_seed_table(prepared_only, tmp_path):
    """An older store's pair-level comparison is recomputed over folds from the stored UARs; the table shows
    the corrected p, Holm over the table's two comparisons and the permutation p; the fold x seed table the
    numbers it rests on; a comparison whose baseline is gone is named, not shown and not fatal."""
    from emodiff.ser.paired import format_p

    store = tmp_path / "s.h5"
    shutil.copy(prepared_only, store)
    _compared_results(store)
    res = build_report(ReportJob(store, tmp_path / "rep", examples=0))
    html = res.index.read_text()
    dom = parse(html)
    t2 = table(dom, "Table 2 — UAR %, ravdess, within corpus, groups:3")
    p_synth, p_mixup = _corrected_p([0.04, 0.02, 0.03], 8 / 32), _corrected_p([-0.01, 0.01, 0.01], 8 / 32)
    assert p_synth < p_mixup
    synth, mixup, real = row_of(t2, "r-synth"), row_of(t2, "r-mixup"), row_of(t2, "r-real")
    assert synth["p, corrected t"] == format_p(p_synth) == "0.06"
    assert mixup["p, corrected t"] == format_p(p_mixup)
    assert synth["p, Holm"] == format_p(2 * p_synth) and mixup["p, Holm"] == format_p(max(2 * p_synth, p_mixup))
    assert synth["p, permutation"] == "0.25" and mixup["p, permutation"] == "1.00"  # 2/8; every pattern reaches 1/3
    assert synth["vs baseline: pp [95 % CI]"].startswith("+3.0 pp [") and real["p, Holm"] == "—"
    assert "Wilcoxon" not in html

    fs = table(dom, "Fold × seed UAR % — r-synth")
    assert fs["head"] == ["fold", "seed 0", "seed 1", "mean over seeds", "r-real: mean over seeds", "difference pp"]
    assert fs["rows"] == [["group=0", "55.00", "57.00", "56.00", "52.00", "+4.00"],
                          ["group=1", "41.00", "45.00", "43.00", "41.00", "+2.00"],
                          ["group=2", "63.00", "61.00", "62.00", "59.00", "+3.00"],
                          ["mean over folds", "53.00", "54.33", "53.67", "50.67", "+3.00"]]
    flat = " ".join(html.split())
    assert "Folds better / worse / equal: 3 / 0 / 0." in flat and "(3 folds × 2 seeds)" in flat
    assert "the percentile bootstrap over folds (each resampled whole, with its seeds) gives [+2.0, +4.0]" in flat
    assert table(dom, "Fold × seed UAR % — r-mixup")["rows"][0][-1] == "−1.00"
    assert "Fold × seed UAR % — `r-synth`" in res.markdown.read_text()
    assert any("/results/orphan: holds a comparison over (fold, seed) pairs" in note for note in res.missing)
    assert "Fold × seed UAR % — orphan" not in " ".join(t["caption"] for t in dom.tables)
    assert any(f.name.startswith("paired-ravdess-ravdess-groups") for f in res.figures)
    assert "Figure 5 — ravdess, within corpus, groups:3: paired UAR difference to" in flat


def test_store_that_does_not_exist_is_one_line(tmp_path):
    missing = tmp_path / "nope.h5"
    done = runner.invoke(app, ["report", "--store", str(missing), "--out", str(tmp_path / "rep")])
    assert done.exit_code == 1 and "Traceback" not in done.output
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "nope.h5" in lines[0], lines
    assert not (tmp_path / "rep").exists()


def test_out_that_is_not_a_report_is_refused(prepared_only, tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    done = runner.invoke(app, ["report", "--store", str(prepared_only), "--out", str(tmp_path), "--examples", "0"])
    assert done.exit_code == 1 and "is not an emodiff report" in " ".join(done.stderr.split())
    assert (tmp_path / "keep.txt").read_text() == "mine"
    bad = runner.invoke(app, ["report", "--store", str(prepared_only), "--out", str(tmp_path / "r"),
                              "--vocoder", "wavenet"])
    assert bad.exit_code == 1 and "--vocoder 'wavenet'" in bad.stderr


def test_report_replaces_an_earlier_report(prepared_only, tmp_path):
    out = tmp_path / "rep"
    first = build_report(ReportJob(prepared_only, out, examples=0))
    (out / "figures" / "stale.png").write_bytes(b"old")  # a figure an earlier report wrote and this one does not
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "files": [*manifest["files"], "figures/stale.png"]}))
    second = build_report(ReportJob(prepared_only, out, examples=0))
    assert second.index.is_file() and not (out / "figures" / "stale.png").exists()
    assert first.figures == second.figures and second.clips == [] and second.vocoder == ""
    assert "No audio: the report was made with `--examples 0`." in second.index.read_text().replace(
        "<code>", "`").replace("</code>", "`")


def test_quality_flag_fills_table_1(full_store, tmp_path, monkeypatch):
    store = tmp_path / "s.h5"
    shutil.copy(full_store, store)
    res = build_report(ReportJob(store, tmp_path / "a", quality=False, examples=0, device="cpu"))
    assert "No quality metrics for tiny" in res.index.read_text()

    def assess(job: types.SimpleNamespace, progress: object = None) -> list:
        # the /quality layout of emodiff.quality: a per_emotion table, set-level attrs
        with st.write_group(job.store, "quality/tiny", config={"fake": True}) as g:
            st.write_table(g.create_group("per_emotion"), {
                "emotion": list(EMOTIONS), "mad": np.array([0.1, 0.2, 0.3, 0.25]),
                "frechet": np.array([1.5, np.nan, 2.0, 3.25]), "n_real": np.array([6, 6, 6, 6]),
                "note": ["", "too few segments", "", ""]})
            g.attrs.update(corpus="toy", classifier=json.dumps({"channels": 16}), mad_mean=0.2125, seed=0)
        return []

    fake = types.ModuleType("emodiff.quality")
    fake.QualityJob = types.SimpleNamespace  # type: ignore[attr-defined]
    fake.assess = assess  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "emodiff.quality", fake)
    res = build_report(ReportJob(store, tmp_path / "b", quality=True, examples=0, device="cpu"))
    dom = parse(res.index.read_text())
    t1 = table(dom, "Table 1 — quality of tiny")
    paired = [header for header, *_ in PAIRED]  # written before these metrics: a dash, and how to add them
    assert t1["head"] == ["emotion", "MAD", "Fréchet distance", "n real", *paired, "note"]
    assert row_of(t1, "happy") == {"emotion": "happy", "MAD": "0.2", "Fréchet distance": "—", "n real": "6",
                                   **dict.fromkeys(paired, "—"), "note": "too few segments"}
    assert "mad_mean 0.2125" in res.index.read_text()
    assert "emodiff quality --synthetic tiny --overwrite</code> adds them" in res.index.read_text()


def _result(name: str, corpus: str, train_corpus: str, protocol: str, train_on: str, augment: str) -> ResultInfo:
    from emodiff.records import Meta

    return ResultInfo(name=name, corpus=corpus, train_corpus=train_corpus, protocol=protocol, target_fraction=None,
                      train_on=train_on, augment=augment, synthetic="", leaky=False, repeats=1, uar=(0.5, 0.1),
                      wa=None, f1=None, folds=[], classifier={}, meta=Meta(path=f"/results/{name}"))


@pytest.mark.parametrize(("corpus", "train", "protocol", "train_on", "augment", "paper", "exact"), [
    ("iemocap", "iemocap", "loso", "real", "", 58.62, True),
    ("iemocap", "iemocap", "loso", "synthetic", "", 57.96, True),
    ("iemocap", "iemocap", "loso", "real", "synthetic:demo", 61.22, True),
    ("iemocap", "iemocap", "loso", "real+synthetic", "mixup:0.4", 61.38, True),
    ("iemocap", "iemocap", "loso", "real", "mixup:0.2", None, True),
    ("iemocap", "iemocap", "session", "real", "", 58.62, False),
    ("ravdess", "ravdess", "groups:6", "real+synthetic", "synthetic+mixup:0.2", 61.38, False),
    ("msp-improv", "iemocap", "cross-corpus", "real+synthetic", "", 48.22, True),
    ("crema-d", "iemocap", "cross-corpus", "synthetic", "", 43.53, False),
])
def test_paper_numbers_match_rows(corpus, train, protocol, train_on, augment, paper, exact):
    from emodiff.report.experiments import experiments

    [exp] = experiments([_result("r", corpus, train, protocol, train_on, augment)])
    assert isinstance(exp, ResultTable)
    assert exp.paper_uar(exp.results[0]) == paper and exp.matches_paper == exact


def test_real_vocoder_writes_audible_clips(prepared_only, tmp_path):
    from emodiff.vocoder import GriffinLimVocoder  # the real module (Griffin-Lim: no weights, seconds on a CPU)

    res = build_report(ReportJob(prepared_only, tmp_path / "rep", vocoder="griffin-lim", examples=1, device="cpu"))
    assert res.vocoder == GriffinLimVocoder.name and len(res.clips) >= 2
    assert f"Vocoded with {res.vocoder} at 22050 Hz" in res.index.read_text()
    with h5py.File(prepared_only, "r") as f:
        frames = set(f["corpora/ravdess/segments/frames"][()].tolist())
    for clip in res.clips:
        info = sf.info(str(clip))
        assert info.subtype == "PCM_16" and info.samplerate == 22050
        assert info.frames % 256 == 0 and info.frames // 256 in frames  # F frames -> F hops, padding trimmed
        wave, _ = sf.read(str(clip), dtype="float32")
        assert np.sqrt(np.mean(wave**2)) > 1e-3  # speech, not silence


def test_direct_comparisons_join_the_tables_holm_family(prepared_only, tmp_path):
    """A /comparisons group between two rows of a table gets its own table (Table 2b) and a fold x seed table;
    Holm runs over the table's two comparisons against real and the direct one together."""
    from emodiff.compare import CompareJob, run_compare
    from emodiff.ser.paired import format_p

    store = tmp_path / "s.h5"
    shutil.copy(prepared_only, store)
    _compared_results(store)
    run_compare(CompareJob(store, "r-synth", "r-mixup"))
    dom = parse(build_report(ReportJob(store, tmp_path / "rep", examples=0)).index.read_text())
    p = {"r-synth": _corrected_p([0.04, 0.02, 0.03], 8 / 32), "r-mixup": _corrected_p([-0.01, 0.01, 0.01], 8 / 32),
         "direct": _corrected_p([0.05, 0.01, 0.02], 8 / 32)}
    order = sorted(p, key=p.get)  # Holm by hand: the k-th smallest p times (3 - k), running maximum, at most 1
    running, holm = 0.0, {}
    for k, key in enumerate(order):
        running = max(running, min(1.0, (3 - k) * p[key]))
        holm[key] = running
    t2 = table(dom, "Table 2 — UAR %, ravdess, within corpus, groups:3")
    assert row_of(t2, "r-synth")["p, Holm"] == format_p(holm["r-synth"])
    assert row_of(t2, "r-mixup")["p, Holm"] == format_p(holm["r-mixup"])
    direct = table(dom, "Table 2b — direct comparisons, ravdess, within corpus, groups:3")
    assert len(direct["rows"]) == 1
    row = dict(zip(direct["head"], direct["rows"][0], strict=True))
    assert row["experiment"].endswith("(r-synth)") and row["against"].endswith("(r-mixup)")
    assert row["difference: pp [95 % CI]"].startswith("+2.7 pp [")
    assert row["p, corrected t"] == format_p(p["direct"]) and row["p, Holm"] == format_p(holm["direct"])
    assert row["folds better / worse / equal"] == "3 / 0 / 0"
    fs = table(dom, "against r-mixup")
    assert [r[-1] for r in fs["rows"]][:3] == ["+5.00", "+1.00", "+2.00"]
