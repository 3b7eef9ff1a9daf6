"""The store's schema as code: one typed record per group kind (docs/store.md has the prose), one
module per kind (``corpus``, ``runs``, ``synthetic``, ...; ``base`` holds what they share).

Each record is a frozen dataclass with

- ``path(...)``: the group's path in the store (``corpora/ravdess``);
- ``names(f)``: the complete groups of that kind, sorted; a ``.tmp-*`` group (a write in flight)
  and anything that is not a group (a foreign dataset) are left out;
- ``exists(f, ...)`` and ``read(f, ...)``: the record with its attrs typed. A missing attr reads
  as its default (``""``, ``None``, an empty list), so older and partial stores still read; the
  raw attrs stay in ``attrs`` for anything a step wants to check itself. Large arrays (mels,
  token states) are read on demand by the record's ``load_*`` methods.

Beside the records: :func:`check_name` (the one rule for the name of every group a step writes),
:func:`existing` (is a group already there, made with the same settings?),
:func:`not_prepared` and :func:`taken` (the errors every step raises for a missing corpus and an
occupied name), :class:`SegmentWriter` (the growable ``segments/`` datasets of prepare and
augment), and the writer of every group kind: :func:`write_corpus` (a prepared corpus's tables and
attrs), :func:`write_embeddings`, :func:`augmented_segments` and :func:`write_augmented_attrs`,
``Run.write``, :func:`write_synthetic`, :func:`write_results` (folds, predictions, the run's attrs),
``Comparison.write`` and ``Quality.write``. The steps call these inside ``write_group`` (or through
them); no step spells a group's dataset or attr names itself (tests/test_layers.py checks it).

Adding an attr to a group: one field in its module, read in the record's ``read`` (and written by its
writer), plus its line in docs/store.md.
"""

from __future__ import annotations

from emodiff.records.augmented import Augmented, augmented_segments, write_augmented_attrs
from emodiff.records.base import (
    NAME_MAX,
    NAME_RULE,
    Absent,
    Different,
    Meta,
    Same,
    check_name,
    children,
    existing,
    existing_in,
    group_at,
    meta,
    taken,
)
from emodiff.records.comparisons import Comparison
from emodiff.records.corpus import Corpus, none_prepared, not_prepared, prepared_corpora, write_corpus
from emodiff.records.embeddings import Embeddings, EmbeddingsWriter, write_embeddings
from emodiff.records.quality import Quality
from emodiff.records.results import Results, ResultsWriter, StoredFold, write_results
from emodiff.records.runs import Run
from emodiff.records.segments import DEFLATE_LEVEL, GROW, SegmentWriter, compress_segment, deflate, shuffle
from emodiff.records.synthetic import Synthetic, SyntheticAttrs, SyntheticWriter, write_synthetic

__all__ = [
    "Absent", "Augmented", "Comparison", "Corpus", "DEFLATE_LEVEL", "Different", "Embeddings", "EmbeddingsWriter",
    "GROW", "Meta", "NAME_MAX", "NAME_RULE", "Quality", "Results", "ResultsWriter", "Run", "Same",
    "SegmentWriter", "StoredFold", "Synthetic", "SyntheticAttrs", "SyntheticWriter", "augmented_segments", "check_name",
    "children", "compress_segment", "deflate", "existing", "existing_in", "group_at", "meta", "none_prepared",
    "not_prepared", "prepared_corpora", "shuffle", "taken", "write_augmented_attrs", "write_corpus",
    "write_embeddings", "write_results", "write_synthetic",
]
