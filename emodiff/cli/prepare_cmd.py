"""``emodiff prepare``: its flags, the manifest ones among them, in a module of their own (registered by
:mod:`emodiff.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from emodiff.cli.common import OverwriteOpt, StoreOpt, ThreadsOpt, _Bar, _friendly, _threads, console
from emodiff.errors import EmodiffError

MANIFEST = "manifest"  # the CORPUS word that reads ROOT as a manifest file


@_friendly
def prepare(
    corpus: Annotated[str, typer.Argument(help="iemocap, msp-improv, crema-d, ravdess or nemo; or manifest: any other "
                                               "corpus, listed in a TSV or CSV file (see --name, --labels, --columns, "
                                               "--audio-root).", show_default=False)],
    root: Annotated[Path, typer.Argument(help="The corpus folder as distributed (see docs/corpora.md); for manifest, "
                                              "the manifest file.", show_default=False)],
    store: StoreOpt = None,
    workers: Annotated[int | None, typer.Option(help="Threads decoding audio and computing mels, each with one torch "
                                                     "thread (at least 1). Default: --threads.",
                                                show_default=False)] = None,
    overwrite: OverwriteOpt = False,
    limit: Annotated[int | None, typer.Option(help="Prepare only N utterances, spread over the corpus (for a quick "
                                                   "try).", show_default=False)] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Stop at the first bad file instead of skipping "
                                                          "it.")] = False,
    calm: Annotated[str, typer.Option(help="RAVDESS only: 'drop' leaves calm out (672 utterances), 'neutral' merges "
                                           "it into neutral (864).")] = "drop",
    dtype: Annotated[str, typer.Option(help="Storage type of the mels: float16 (half the disk) or "
                                            "float32.")] = "float16",
    name: Annotated[str | None, typer.Option(help="manifest only: the corpus's name in the store, for --corpus and "
                                                  "study.corpus later (letters, digits, - and _; lower-cased). "
                                                  "Default: the manifest's file name without extension. The names of "
                                                  "the corpora with readers of their own are refused.",
                                             show_default=False)] = None,
    labels: Annotated[str, typer.Option(help="manifest only: the corpus's labels to the four emotions, LABEL=EMOTION "
                                             "comma-separated, any case, e.g. anger=angry,happiness=happy,sadness=sad. "
                                             "A label spelt neutral, happy, sad or angry maps to itself. Rows of any "
                                             "other label are left out and counted.", show_default=False)] = "",
    columns: Annotated[str, typer.Option(help="manifest only: which column holds what, FIELD=COLUMN comma-separated, "
                                              "e.g. audio=file_id,text=raw_text. Else each field takes the one column "
                                              "with a usual name (any case): audio (required; path, audio, file, "
                                              "file_id or wav), emotion (required; emotion or label), speaker "
                                              "(required; speaker, speaker_id or actor), text (text, transcript), "
                                              "gender (gender, sex; F, M, female or male), session (session), id (id, "
                                              "utterance_id; default: the audio file's name without extension).",
                                         show_default=False)] = "",
    audio_root: Annotated[Path | None, typer.Option(help="manifest only: the folder that relative audio paths start "
                                                         "from (they must stay below it). Default: the manifest's "
                                                         "folder.", show_default=False)] = None,
    threads: ThreadsOpt = None,
) -> None:
    """Audio and labels of a corpus -> /corpora/CORPUS: 80x256 mel segments and the utterance table.

    `emodiff prepare manifest FILE` prepares any other corpus from a TSV or CSV file with a header and one row per
    utterance (tab or comma after the extension .tsv or .csv, else sniffed); docs/corpora.md shows two.
    """
    n_threads = _threads(threads)
    from emodiff.cli.render import prepare_summary
    from emodiff.prepare import PrepareJob
    from emodiff.prepare import prepare as run_prepare
    from emodiff.store import resolve_store

    manifest = None
    if corpus.strip().lower() == MANIFEST:
        from emodiff.corpora.manifest import ManifestSpec, manifest_name

        manifest = ManifestSpec.parse(labels, columns, audio_root)
        corpus = manifest_name(root, name)
    elif name is not None or labels or columns or audio_root is not None:
        raise EmodiffError(f"--name, --labels, --columns and --audio-root are for `emodiff prepare {MANIFEST} FILE`, "
                           f"not for {corpus}")
    path = resolve_store(store)
    job = PrepareJob(store=path, corpus=corpus, root=root, workers=n_threads if workers is None else workers,
                     limit=limit, strict=strict, overwrite=overwrite, dtype=dtype, calm=calm,  # type: ignore[arg-type]
                     manifest=manifest)
    with _Bar(f"prepare {corpus}") as bar:
        result = run_prepare(job, bar)
    if result.already_there:
        s = result.stats
        console.print(f"{path} already holds /corpora/{s.name} ({s.utterances} utterances, {s.segments} segments, "
                      f"prepared {s.attrs.get('created', '?')}); pass --overwrite to replace it.", markup=False)
        return
    prepare_summary(console, path, result)
