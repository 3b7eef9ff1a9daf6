"""``emodiff report``: a store -> a self-contained folder (index.html, report.md, PNG figures, WAV clips).

The folder needs no network to view: inline CSS, no scripts, figures and clips by relative
path. It is built beside ``out`` under a temporary name and renamed into place at the end, so
an interrupted run leaves any earlier report as it was. Each section appears only when the
store holds its data; otherwise the page says which command makes it (docs/report.md).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from emodiff import __version__
from emodiff import store as st
from emodiff.emotions import EMOTIONS
from emodiff.errors import EmodiffError
from emodiff.paths import checked_path
from emodiff.progress import QUIET, Progress
from emodiff.report import figures
from emodiff.report.audio import write_clip
from emodiff.report.blocks import AudioGrid, Clip
from emodiff.report.collect import StoreContents, collect
from emodiff.report.comparisons import holm_family
from emodiff.report.document import (
    LEAKY,
    Artifacts,
    MelFigure,
    PairedFigures,
    document,
    missing_notes,
)
from emodiff.report.examples import real_examples, synthetic_examples
from emodiff.report.experiments import experiments, trained_on
from emodiff.report.html import GENERATOR, render_html
from emodiff.report.markdown import render_markdown
from emodiff.report.optional import VOCODER_KINDS, VocoderKind, assess_quality, vocoder_with_note

__all__ = ["MANIFEST", "TMP_ROOM", "ReportJob", "ReportResult", "build_report", "check_out", "own_files",
           "VOCODER_KINDS"]

TMP_ROOM = len(".partial-") + 8  # what the temporary folder's name, .<out>.partial-<pid>, adds to --out's name


@dataclass(frozen=True)
class ReportJob:
    """One report: the store, the folder ``out`` (an earlier report there is replaced) and the settings.

    ``quality`` first computes the quality metrics the store lacks (``emodiff.quality``);
    ``examples`` clips per emotion and source are vocoded with ``vocoder`` on ``device`` (0: no audio).
    """

    store: Path
    out: Path
    quality: bool = False
    vocoder: VocoderKind = "auto"
    examples: int = 1
    device: str = "auto"

    def __post_init__(self) -> None:
        checked_path(self.out, "--out", room=TMP_ROOM)
        if self.vocoder not in VOCODER_KINDS:
            raise EmodiffError(f"--vocoder {self.vocoder!r}: expected one of {', '.join(VOCODER_KINDS)}")
        if self.examples < 0:
            raise EmodiffError(f"--examples must be 0 or more, got {self.examples}")


@dataclass
class ReportResult:
    out: Path  # the report folder
    index: Path  # out/index.html
    markdown: Path  # out/report.md
    figures: list[Path]
    clips: list[Path]
    missing: list[str]  # the page's sentences about parts of the pipeline not run yet
    vocoder: str  # the vocoder's name, "" when there is no audio
    seconds: float


def build_report(job: ReportJob, progress: Progress = QUIET) -> ReportResult:
    """Write the report of ``job.store`` into the folder ``job.out`` (replacing an earlier report there).

    ``progress`` hears a note as each stage starts (quality, figures, audio, pages). Raises
    EmodiffError for a missing or unreadable store, or an ``out`` that exists and is not an
    emodiff report.
    """
    start = time.perf_counter()
    store, out = Path(job.store), Path(job.out)
    with st.open_store(store):  # a missing or non-HDF5 store fails here, before anything is written
        pass
    check_out(out)
    art = Artifacts()
    if job.quality:
        progress.note("quality metrics the store lacks")
        assess_quality(store, _device(job.device))
    contents = collect(store)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        (tmp / "figures").mkdir(parents=True)
        (tmp / "audio").mkdir()
        progress.note("figures")
        pngs = _draw_figures(contents, tmp, art)
        progress.note("audio clips")
        clips, voc_name = _write_audio(contents, tmp, art, job.vocoder, job.examples, job.device)
        art.facts = [("store", str(store.resolve())),
                     ("made", datetime.now(timezone.utc).isoformat(timespec="seconds")),
                     ("emodiff", __version__), ("vocoder", voc_name or "none (no audio)")]
        progress.note("pages")
        doc = document(contents, art, _versions())
        (tmp / "index.html").write_text(render_html(doc), encoding="utf-8")
        (tmp / "report.md").write_text(render_markdown(doc), encoding="utf-8")
        _write_manifest(tmp)
        if out.exists():
            check_out(out)  # again: a file may have been put there while the report was built
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ReportResult(out=out, index=out / "index.html", markdown=out / "report.md",
                        figures=[out / p.relative_to(tmp) for p in pngs],
                        clips=[out / p.relative_to(tmp) for p in clips], missing=missing_notes(doc),
                        vocoder=voc_name, seconds=time.perf_counter() - start)


def check_out(out: Path) -> None:
    """``out`` may be new, an empty folder, or a folder holding only what an earlier report wrote (:func:`own_files`);
    anything else is refused, naming the first file a report did not write (the whole folder is replaced)."""
    if out.name in ("", ".."):  # ".", "..", "/": no name to build the new report beside it under
        raise EmodiffError(f"--out {out}: expected a folder by name (e.g. report, or its full path): a report is "
                           "built beside it and replaces it whole")
    if out.is_symlink():
        raise EmodiffError(f"--out {out}: a symbolic link (to {os.readlink(out)}); give the folder itself")
    if not out.exists():
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise EmodiffError(f"{out}: cannot create the report folder there ({err.strerror})") from None
        if not os.access(out.parent, os.W_OK):
            raise EmodiffError(f"{out.parent}: not writable; choose another --out")
        return
    if not out.is_dir():
        raise EmodiffError(f"{out}: exists and is not a folder; choose another --out")
    own = own_files(out)
    foreign = sorted(_members(out) - own)
    if not foreign:
        return
    more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
    if not own:
        raise EmodiffError(f"{out}: exists and is not an emodiff report (no {MANIFEST} or index.html written by "
                           f"`emodiff report`), and holds {foreign[0]}{more}; choose another --out")
    raise EmodiffError(f"{out / foreign[0]}: not written by `emodiff report`{more}; a new report replaces the whole "
                       f"folder {out}, so move it away or choose another --out")


MANIFEST = "manifest.json"  # in a report folder: the files that report wrote, which the next one may replace
_LEGACY = re.compile(r"index\.html|report\.md|figures|audio|figures/[A-Za-z0-9._-]+\.png|audio/[A-Za-z0-9._-]+\.wav")


def own_files(out: Path) -> set[str]:
    """The files and folders of the report folder ``out`` (relative, '/'-separated) that a report wrote.

    Those its :data:`MANIFEST` lists (files and folders). A report made before manifests existed,
    recognised by the generator mark of its index.html, owns the names a report writes: index.html,
    report.md, figures/, audio/, figures/*.png and audio/*.wav. Anything else is the user's. Empty when ``out`` holds no
    report.
    """
    try:
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        manifest = None
    if isinstance(manifest, dict) and manifest.get("emodiff_report") == 1 and isinstance(manifest.get("files"), list):
        files = {str(f) for f in [*manifest["files"], *manifest.get("folders", [])]} | {MANIFEST}
    else:
        index = out / "index.html"
        if index.is_symlink() or not index.is_file() or GENERATOR not in index.read_text(errors="replace")[:2000]:
            return set()
        files = {m for m in _members(out) if _LEGACY.fullmatch(m)}
    return files | {parent.as_posix() for f in files for parent in Path(f).parents if parent != Path(".")}


def _members(out: Path) -> set[str]:
    """Every file and folder under ``out``, relative and '/'-separated; a link counts as a file (never followed)."""
    found: set[str] = set()
    for folder, dirs, files in os.walk(out):
        rel = Path(folder).relative_to(out)
        for name in [*dirs, *files]:
            found.add((rel / name).as_posix())
    return found


def _write_manifest(folder: Path) -> None:
    """``folder``'s :data:`MANIFEST`: the files and folders of the report just built there."""
    members = sorted(_members(folder))
    listing = {"emodiff_report": 1, "emodiff_version": __version__,
               "files": [m for m in members if not (folder / m).is_dir()],
               "folders": [m for m in members if (folder / m).is_dir()]}
    (folder / MANIFEST).write_text(json.dumps(listing, indent=1) + "\n", encoding="utf-8")


def _device(device: str) -> str:
    from emodiff.devices import resolve_device  # imports torch: only when quality or audio needs a device

    return str(resolve_device(device))


def _slug(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "x"
    slug, k = base, 2
    while slug in taken:
        slug, k = f"{base}-{k}", k + 1
    taken.add(slug)
    return slug


def _draw_figures(c: StoreContents, tmp: Path, art: Artifacts) -> list[Path]:
    taken: set[str] = set()
    pngs: list[Path] = []

    def png(stem: str) -> tuple[Path, str]:
        rel = f"figures/{_slug(stem, taken)}.png"
        pngs.append(tmp / rel)
        return tmp / rel, rel

    for r in c.results:
        if r.confusion is not None:
            path, rel = png(f"confusion-{r.name}")
            uar = f": UAR {100 * r.uar[0]:.2f} %" if r.uar else ""
            figures.confusion_png(path, r.confusion, f"{r.name}{uar}" + (f"  {LEAKY}" if r.leaky else ""))
            art.confusion[r.name] = rel
    with st.open_store(c.path) as f:
        for s in c.synthetic:
            corpus = next((k for k in s.provenance.corpora if c.corpus(k)), "")
            rows = [(corpus, [_first(real_examples(f, corpus, e, 1)) for e in range(len(EMOTIONS))])] if corpus else []
            rows.append((s.name, [_first(synthetic_examples(f, s.name, e, 1)) for e in range(len(EMOTIONS))]))
            path, rel = png(f"mels-{s.name}")
            figures.mels_png(path, rows, f"real ({corpus}) and synthetic ({s.name})" if corpus else s.name)
            art.mels.append(MelFigure(rel, s.name, corpus))
        if not c.synthetic and c.corpora:
            rows = [(x.name, [_first(real_examples(f, x.name, e, 1)) for e in range(len(EMOTIONS))])
                    for x in c.corpora]
            path, rel = png("mels-real")
            figures.mels_png(path, rows, "real segments per emotion")
            art.mels += [MelFigure(rel, "", ", ".join(x.name for x in c.corpora))]
    for e in experiments(c.results):
        if e.kind != "adaptation":
            continue
        lines: dict[str, figures.Curve] = {}
        for r in sorted(e.results, key=lambda r: r.target_fraction or 0.0):
            if r.uar is None or r.target_fraction is None:
                continue
            label = trained_on(r)
            curve = lines.setdefault(label, figures.Curve(label, [], [], []))
            curve.fraction.append(r.target_fraction)
            curve.mean.append(100 * r.uar[0])
            curve.std.append(100 * r.uar[1])
            if r.leaky and LEAKY not in curve.label:
                curve.label += f" {LEAKY}"
        path, rel = png(f"adaptation-{e.train_corpus}-{e.test_corpus}")
        figures.adaptation_png(path, list(lines.values()), e.title)
        art.adaptation[e.title] = rel
    for e in experiments(c.results):
        compared = [r for r in e.results if r.paired is not None]
        if e.kind == "adaptation" or not compared:
            continue
        baseline = compared[0].paired.baseline  # type: ignore[union-attr]
        adjusted = holm_family(e, c.directs)[0]
        rows = [figures.Interval(trained_on(r), pc.mean_diff, pc.corrected.low, pc.corrected.high, pc.corrected.p,
                                 adjusted[r.name], pc.n_folds, pc.n_seeds)
                for r in compared if (pc := r.paired) is not None]
        path, forest = png(f"paired-{e.train_corpus}-{e.test_corpus}-{e.protocol}")
        figures.forest_png(path, rows, baseline, level=compared[0].paired.level)  # type: ignore[union-attr]
        base = next((r for r in e.results if r.name == baseline), None)
        best = max(compared, key=lambda r: r.paired.mean_diff)  # type: ignore[union-attr]
        recall = ""
        if base is not None and base.confusion is not None and best.confusion is not None:
            path, recall = png(f"recall-{e.train_corpus}-{e.test_corpus}-{e.protocol}")
            figures.recall_png(path, [(trained_on(base), np.diag(figures.row_normalised(base.confusion))),
                                      (trained_on(best), np.diag(figures.row_normalised(best.confusion)))],
                               f"per-emotion recall: {trained_on(base)} and {trained_on(best)}")
        art.paired[e.title] = PairedFigures(forest, recall, baseline, trained_on(best))
    return pngs


def _first(items: list) -> object:
    return items[0].mel if items else None


def _write_audio(c: StoreContents, tmp: Path, art: Artifacts, kind: VocoderKind, k: int,
                 device: str) -> tuple[list[Path], str]:
    """Vocoded real and synthetic clips per emotion -> art.audio; (files, vocoder name)."""
    real = list(dict.fromkeys(x for s in c.synthetic for x in s.provenance.corpora if c.corpus(x)))
    if not real and c.corpora:
        real = [c.corpora[0].name]
    sources = [("real", name) for name in real] + [("synthetic", s.name) for s in c.synthetic]
    if not sources:
        art.audio_note = "No audio: the store holds no mels yet; run `emodiff prepare CORPUS ROOT`."
        return [], ""
    if k == 0:
        art.audio_note = "No audio: the report was made with `--examples 0`."
        return [], ""
    voc, art.audio_note = vocoder_with_note(kind, _device(device))
    files: list[Path] = []
    taken: set[str] = set()
    rows = []
    with st.open_store(c.path) as f:
        for e, emotion in enumerate(EMOTIONS):
            columns = []
            for what, name in sources:
                picks = real_examples(f, name, e, k) if what == "real" else synthetic_examples(f, name, e, k)
                clips = []
                for ex in picks:
                    rel = f"audio/{_slug(f'{what}-{name}-{emotion}-{ex.key}', taken)}.wav"
                    write_clip(tmp / rel, voc, ex.mel)
                    files.append(tmp / rel)
                    clips.append(Clip(rel, ex.label))
                columns.append(clips)
            rows.append((emotion, columns))
    headers = [f"real: {name}" if what == "real" else f"synthetic: {name}" for what, name in sources]
    art.audio = AudioGrid(f"Vocoded with {voc.name} at {voc.sample_rate} Hz: up to {k} clip(s) per emotion and "
                          "source, chosen as in Figure 2 (labels: utterance id, or #row and speaker of a synthetic "
                          "segment).", headers, rows)
    return files, voc.name


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "emodiff": __version__}
    for pkg in ("torch", "numpy", "h5py", "matplotlib", "soundfile"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[pkg] = importlib.metadata.version(pkg)
    out["HDF5"] = h5py.version.hdf5_version
    return out
