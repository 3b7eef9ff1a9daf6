"""Fold plans over utterance rows: speaker-independent train / validation / test splits.

Every builder takes one speaker label (and, where needed, session label) per utterance row and
returns :class:`Fold` records of row indices. No speaker is ever on two sides of a fold;
each builder checks this with :func:`check_disjoint` before returning.

Protocols (see shared/corpora.md "Protocols"): IEMOCAP leave-one-speaker-out, 10 folds, validation =
the other speaker of the same session (:func:`loso` with ``pair_by_session=True``); RAVDESS speaker
groups (:func:`speaker_groups`), repeated over seeded gender-balanced partitions
(:func:`speaker_partitions`); leave-one-session-out (:func:`by_session`); IEMOCAP -> MSP-IMPROV
with 30 % dev / 70 % test, split by speaker (:func:`cross_corpus`), by utterance as the paper did
(:func:`cross_corpus_random`) or rotated over groups of target speakers so each is tested once
(:func:`cross_corpus_groups`; :class:`TargetSplit` names the three); source + x % of a target corpus,
tested on a fixed 50 % of its speakers (:func:`adaptation`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from emodiff.errors import EmodiffError

# With fraction = 1 no target utterance is left for validation, so this share of the source rows
# (the last ones, at least one) moves from training to validation.
SOURCE_VAL_FRACTION = 0.1
# groups:KxR: more partitions than this is a typo, not a design (each one is K more trainings per seed).
MAX_PARTITIONS = 100
# A partition that repeats an earlier one is drawn again, at most this many times (k = n speakers has only one).
MAX_DRAWS = 1000


@dataclass(frozen=True)
class WithinCorpus:
    """A within-corpus protocol as ``--folds`` (and ``study.folds``) writes it: ``loso``, ``session``,
    ``groups:K`` or ``groups:KxR`` (R partitions into K speaker groups; ``groups:K`` is ``groups:Kx1``)."""

    kind: Literal["loso", "session", "groups"]
    k: int = 0  # groups: speaker groups per partition
    partitions: int = 1  # groups: R

    @classmethod
    def parse(cls, text: str, where: str = "--folds") -> WithinCorpus:
        """``text`` read; one-line EmodiffError naming ``where`` and what is wrong (K, R, or the form)."""
        if text in ("loso", "session"):
            return cls(text)  # type: ignore[arg-type]
        if not text.startswith("groups:"):
            raise EmodiffError(f"{where} {text!r}: expected loso, session, groups:K or groups:KxR")
        m = re.fullmatch(r"(\d+)(?:x(\d+))?", text.removeprefix("groups:"))
        if m is None:
            raise EmodiffError(f"{where} {text}: expected groups:K or groups:KxR with integers K and R (e.g. "
                               "groups:6 or groups:6x2)")
        k, r = int(m[1]), int(m[2] or 1)
        if k < 3:
            raise EmodiffError(f"{where} {text}: K={k} groups, expected K >= 3 (a test group, a validation "
                               "group and at least one to train on)")
        if not 1 <= r <= MAX_PARTITIONS:
            raise EmodiffError(f"{where} {text}: R={r} partitions, expected 1..{MAX_PARTITIONS}")
        return cls("groups", k, r)


@dataclass(frozen=True)
class TargetSplit:
    """How a cross-corpus run splits the target into development (model selection) and test, as
    ``--target-split`` writes it: ``speakers`` (one seeded split by speaker, ~dev_fraction for
    development), ``random`` (the paper's: a seeded dev_fraction of the utterances, speakers on both
    sides), ``groups:K`` (K folds: the sorted target speakers cut into K groups, fold i tests group i
    and selects on the others, so every target speaker is tested once) or ``loso`` (groups:K with K
    the number of target speakers)."""

    kind: Literal["speakers", "random", "groups", "loso"]
    k: int = 0  # groups: folds

    @classmethod
    def parse(cls, text: str, where: str = "--target-split") -> TargetSplit:
        """``text`` read; one-line EmodiffError naming ``where`` and what is wrong."""
        if text in ("speakers", "random", "loso"):
            return cls(text)  # type: ignore[arg-type]
        m = re.fullmatch(r"groups:(\d+)", text)
        if m is None:
            raise EmodiffError(f"{where} {text!r}: expected speakers, random, loso or groups:K")
        if int(m[1]) < 2:
            raise EmodiffError(f"{where} {text}: K={m[1]} groups, expected K >= 2 (a test group and at least one "
                               "to select on)")
        return cls("groups", int(m[1]))


@dataclass(frozen=True)
class Fold:
    """One split: sorted utterance row indices for training, validation (model selection) and test."""

    name: str
    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]


def check_disjoint(fold: Fold, speakers: Sequence[str | None]) -> None:
    """Raise EmodiffError if a row or a speaker is on two sides of ``fold``.

    ``speakers[r]`` is the speaker of row r; ``None`` marks a row whose speaker is unknown (source
    corpus rows in cross-corpus plans), which is not checked for speaker overlap.
    """
    sides = {"train": fold.train, "val": fold.val, "test": fold.test}
    owner: dict[str, str] = {}
    seen_rows: dict[int, str] = {}
    for side, rows in sides.items():
        for r in rows:
            if not 0 <= r < len(speakers):
                raise EmodiffError(f"fold {fold.name}: row {r} outside 0..{len(speakers) - 1}")
            if r in seen_rows and seen_rows[r] != side:
                raise EmodiffError(f"fold {fold.name}: row {r} is in both {seen_rows[r]} and {side}")
            seen_rows[r] = side
            if speakers[r] is None:
                continue
            spk = str(speakers[r])  # np.str_ would print as np.str_('a') in the message
            if owner.setdefault(spk, side) != side:
                raise EmodiffError(f"fold {fold.name}: speaker {spk!r} is in both {owner[spk]} and {side}")


def _rows(labels: np.ndarray, chosen: Sequence[str], offset: int = 0) -> tuple[int, ...]:
    """Sorted row indices (plus ``offset``) whose label is in ``chosen``."""
    return tuple(int(r) + offset for r in np.flatnonzero(np.isin(labels, list(chosen))))


def _fold(name: str, labels: np.ndarray, test: Sequence[str], val: Sequence[str]) -> Fold:
    """Fold testing rows of ``test`` labels, validating on ``val`` labels, training on all others."""
    train = sorted(set(labels.tolist()) - set(test) - set(val))
    fold = Fold(name, _rows(labels, train), _rows(labels, val), _rows(labels, test))
    if not fold.train:
        raise EmodiffError(f"fold {name}: no training utterances left; more speakers or sessions are needed")
    return fold


def _speaker_array(speakers: Sequence[str], what: str) -> np.ndarray:
    """Speakers as a 1-D str array; raises if empty."""
    if len(speakers) == 0:
        raise EmodiffError(f"{what}: expected at least one utterance, got none")
    return np.asarray([str(s) for s in speakers])


def loso(speakers: Sequence[str], sessions: Sequence[str], pair_by_session: bool) -> list[Fold]:
    """Leave-one-speaker-out: one fold per speaker s (sorted), named ``test=<s>``.

    test = rows of s; val = rows of the other speaker(s) of s's session when ``pair_by_session``
    (IEMOCAP, MSP-IMPROV; a session with a single speaker, or a speaker in two sessions, raises),
    otherwise rows of the next speaker in sorted order (cyclic; ``sessions`` is then unused);
    train = all other rows.
    """
    spk = _speaker_array(speakers, "loso")
    if len(sessions) != len(spk):
        raise EmodiffError(f"loso: {len(spk)} speakers but {len(sessions)} sessions; expected one of each per row")
    names = sorted(set(spk.tolist()))
    if not pair_by_session:
        return _checked([_fold(f"test={s}", spk, [s], [names[(i + 1) % len(names)]])
                         for i, s in enumerate(names)], spk)
    session_of: dict[str, str] = {}
    for s, ses in zip(spk.tolist(), sessions, strict=True):
        if session_of.setdefault(s, str(ses)) != str(ses):
            raise EmodiffError(f"loso: speaker {s!r} is in sessions {session_of[s]!r} and {ses!r}; expected one")
    folds = []
    for s in names:
        partners = [o for o in names if o != s and session_of[o] == session_of[s]]
        if not partners:
            raise EmodiffError(f"loso: session {session_of[s]!r} has the single speaker {s!r}; "
                               "pair_by_session needs two or more speakers per session")
        folds.append(_fold(f"test={s}", spk, [s], partners))
    return _checked(folds, spk)


def _checked(folds: list[Fold], speakers: Sequence[str | None]) -> list[Fold]:
    """``folds`` after :func:`check_disjoint` on each."""
    for f in folds:
        check_disjoint(f, speakers)
    return folds


def speaker_groups(speakers: Sequence[str], k: int) -> list[Fold]:
    """k-fold over speaker groups: sorted speakers cut into k contiguous groups as equal as possible.

    Group sizes are ceil(n/k) for the first n mod k groups and floor(n/k) for the rest (RAVDESS 24
    actors, k = 6 -> 6 groups of 4). Fold i (named ``group=i``) tests group i, validates on group
    (i + 1) mod k and trains on the rest. k must be in 3..n_speakers: k = 2 would leave no training
    speakers (test and validation would be the two groups).
    """
    spk = _speaker_array(speakers, "speaker_groups")
    names = sorted(set(spk.tolist()))
    if not 3 <= k <= len(names):
        raise EmodiffError(f"speaker_groups: k={k} groups, expected 3..{len(names)} (the number of speakers)")
    groups = [list(g) for g in np.array_split(np.asarray(names), k)]
    return _checked([_fold(f"group={i}", spk, groups[i], groups[(i + 1) % k]) for i in range(k)], spk)


def speaker_partitions(speakers: Sequence[str], k: int, partitions: int = 1,
                       genders: Sequence[str] | None = None) -> list[Fold]:
    """``partitions`` (R) partitions of the speakers into k groups, k folds each: R x k folds, partition by partition.

    Partition 0 is :func:`speaker_groups` (contiguous groups, folds ``group=i``), so ``groups:K`` and
    ``groups:Kx1`` plan the same folds. Partition p >= 1 (folds ``r<p>.group=i``) is drawn by a
    generator seeded with p: when every speaker has one gender (``genders[r]`` of row r, non-empty),
    each gender's speakers, sorted then shuffled, are dealt round-robin into the k groups, genders in
    sorted order one after the other, so each group's count of each gender is within 1 of every other
    group's and the group sizes are partition 0's; otherwise all speakers are shuffled and dealt as one.
    A draw with the same groups as an earlier partition (in any order) is drawn again from the same
    generator; EmodiffError after ``MAX_DRAWS`` (k = n speakers allows a single partition). Partition p
    does not depend on R. Fold i of each partition tests its group i, validates on its group
    (i + 1) mod k and trains on the rest.
    """
    folds = speaker_groups(speakers, k)
    spk = _speaker_array(speakers, "speaker_partitions")
    if not 1 <= partitions <= MAX_PARTITIONS:
        raise EmodiffError(f"speaker_partitions: {partitions} partitions, expected 1..{MAX_PARTITIONS}")
    names = sorted(set(spk.tolist()))
    strata = _by_gender(spk, genders)
    seen = [_partition_key(np.array_split(np.asarray(names), k))]
    for p in range(1, partitions):
        rng = np.random.default_rng(p)
        for _ in range(MAX_DRAWS):
            order = [str(s) for stratum in strata for s in rng.permutation(stratum)]
            groups = [sorted(order[i::k]) for i in range(k)]
            if _partition_key(groups) not in seen:
                break
        else:
            raise EmodiffError(f"speaker_partitions: {MAX_DRAWS} draws found no partition of {len(names)} speakers "
                               f"into {k} groups that differs from the {p} before it; ask for fewer partitions "
                               "or fewer groups")
        seen.append(_partition_key(groups))
        folds += [_fold(f"r{p}.group={i}", spk, groups[i], groups[(i + 1) % k]) for i in range(k)]
    return _checked(folds, spk)


def _by_gender(spk: np.ndarray, genders: Sequence[str] | None) -> list[list[str]]:
    """Sorted speakers per gender (genders sorted); one list of all speakers when a speaker has no gender or two."""
    names = sorted(set(spk.tolist()))
    if genders is None:
        return [names]
    if len(genders) != len(spk):
        raise EmodiffError(f"speaker_partitions: {len(spk)} speakers but {len(genders)} genders; expected one of "
                           "each per row")
    of: dict[str, set[str]] = {}
    for s, g in zip(spk.tolist(), genders, strict=True):
        of.setdefault(s, set()).add(str(g))
    if any(len(g) != 1 or "" in g for g in of.values()):
        return [names]
    labels = sorted({g for gs in of.values() for g in gs})
    return [[s for s in names if of[s] == {label}] for label in labels]


def _partition_key(groups: Sequence[Sequence[str]]) -> frozenset[frozenset[str]]:
    """A partition as its set of groups, so that the same groups in another order compare equal."""
    return frozenset(frozenset(str(s) for s in g) for g in groups)


def by_session(speakers: Sequence[str], sessions: Sequence[str]) -> list[Fold]:
    """Leave-one-session-out: fold i (named ``test=<session>``) tests sorted session i, validates on
    session (i + 1) mod S and trains on the rest. Needs S >= 3 sessions; a speaker in two sessions raises.
    """
    spk = _speaker_array(speakers, "by_session")
    if len(sessions) != len(spk):
        raise EmodiffError(f"by_session: {len(spk)} speakers but {len(sessions)} sessions; "
                           "expected one of each per row")
    ses = np.asarray([str(s) for s in sessions])
    names = sorted(set(ses.tolist()))
    if len(names) < 3:
        raise EmodiffError(f"by_session: {len(names)} sessions, expected at least 3 (test, validation, training)")
    return _checked([_fold(f"test={s}", ses, [s], [names[(i + 1) % len(names)]])
                     for i, s in enumerate(names)], spk)


def _shuffled_speakers(spk: np.ndarray, seed: int) -> list[str]:
    """Sorted unique speakers in a seeded random order (same seed -> same order)."""
    names = sorted(set(spk.tolist()))
    return [names[i] for i in np.random.default_rng(seed).permutation(len(names))]


def _cumulative(spk: np.ndarray, order: Sequence[str]) -> np.ndarray:
    """cum[m] = number of rows of the first m speakers of ``order`` (cum[0] = 0)."""
    counts = [int(np.sum(spk == s)) for s in order]
    return np.concatenate([[0], np.cumsum(counts)])


def _target_labels(n_source: int, target_speakers: Sequence[str], what: str) -> tuple[np.ndarray, list[str | None]]:
    """Target speakers [T] and the full per-row speaker list (None for the n_source source rows)."""
    if n_source < 1:
        raise EmodiffError(f"{what}: n_source={n_source}, expected at least one source utterance")
    tgt = _speaker_array(target_speakers, what)
    return tgt, [None] * n_source + [f"target/{s}" for s in tgt.tolist()]


def cross_corpus(n_source: int, target_speakers: Sequence[str], dev_fraction: float = 0.3, seed: int = 0) -> Fold:
    """Train on the source corpus (rows 0..n_source-1); split the target (rows n_source..) by speaker.

    Target speakers are shuffled (seeded); val = the first m speakers, test = the rest, with m in
    1..n_spk-1 chosen so that cum[m] (their utterance count) is closest to dev_fraction * T
    (ties -> smaller m). So |val| / T is about ``dev_fraction`` and no target speaker is in both.
    """
    if not 0.0 < dev_fraction < 1.0:
        raise EmodiffError(f"cross_corpus: dev_fraction={dev_fraction}, expected 0 < dev_fraction < 1")
    tgt, all_spk = _target_labels(n_source, target_speakers, "cross_corpus")
    order = _shuffled_speakers(tgt, seed)
    if len(order) < 2:
        raise EmodiffError("cross_corpus: expected at least 2 target speakers (validation and test)")
    cum = _cumulative(tgt, order)
    goal = dev_fraction * len(tgt)
    m = 1 + int(np.argmin(np.abs(cum[1:-1] - goal)))
    fold = Fold("cross-corpus", tuple(range(n_source)), _rows(tgt, order[:m], n_source),
                _rows(tgt, order[m:], n_source))
    check_disjoint(fold, all_spk)
    return fold


def cross_corpus_random(n_source: int, target_speakers: Sequence[str], dev_fraction: float = 0.3,
                        seed: int = 0) -> Fold:
    """The paper's cross-corpus protocol: a seeded random ``round(dev_fraction * T)`` of the T target
    utterances (at least one, at most T - 1) select the model, the rest test it; a target speaker is
    usually on both sides (the source trains alone, so no test speaker is trained on)."""
    if not 0.0 < dev_fraction < 1.0:
        raise EmodiffError(f"cross_corpus_random: dev_fraction={dev_fraction}, expected 0 < dev_fraction < 1")
    tgt, _ = _target_labels(n_source, target_speakers, "cross_corpus_random")
    if len(tgt) < 2:
        raise EmodiffError("cross_corpus_random: expected at least 2 target utterances (validation and test)")
    n_dev = min(max(1, round(dev_fraction * len(tgt))), len(tgt) - 1)
    order = np.random.default_rng(seed).permutation(len(tgt)) + n_source
    fold = Fold("cross-corpus.random", tuple(range(n_source)), tuple(sorted(int(r) for r in order[:n_dev])),
                tuple(sorted(int(r) for r in order[n_dev:])))
    check_disjoint(fold, [None] * (n_source + len(tgt)))  # rows only: the target's speakers are on both sides
    return fold


def cross_corpus_groups(n_source: int, target_speakers: Sequence[str], k: int) -> list[Fold]:
    """Cross-corpus rotated over the target's speakers: the sorted target speakers cut into k contiguous
    groups (as :func:`speaker_groups` cuts them); fold i (``target.group=i``) trains on the source, tests
    on group i and selects the model on every other target speaker. Each target speaker is tested once,
    so the k folds are the units of the fold-level statistics. k in 2..n_speakers."""
    tgt, all_spk = _target_labels(n_source, target_speakers, "cross_corpus_groups")
    names = sorted(set(tgt.tolist()))
    if not 2 <= k <= len(names):
        raise EmodiffError(f"cross_corpus_groups: k={k} groups, expected 2..{len(names)} (the target's speakers)")
    groups = [list(g) for g in np.array_split(np.asarray(names), k)]
    folds = []
    for i, test in enumerate(groups):
        val = [s for s in names if s not in test]
        fold = Fold(f"target.group={i}", tuple(range(n_source)), _rows(tgt, val, n_source), _rows(tgt, test, n_source))
        check_disjoint(fold, all_spk)
        folds.append(fold)
    return folds


def adaptation(n_source: int, target_speakers: Sequence[str], fraction: float, seed: int = 0) -> Fold:
    """Source + ``fraction`` of the other target utterances for training; test on a fixed half of target speakers.

    Target speakers are shuffled (seeded, independent of ``fraction``); the first floor(n_spk / 2) are
    the test set, the same for every fraction. The others, in that order, give cum[m] = utterances of
    the first m; training takes the first m = max{m : cum[m] <= fraction * T_other} of them (at most
    ``fraction``, chosen by speaker), so the set for a larger fraction contains the set for a smaller one.
    val = the remaining other target utterances; when fraction = 1 none remain, so the last
    ``SOURCE_VAL_FRACTION`` of the source rows (at least one) move from training to validation instead
    (their speakers are unknown here and may also be in training).
    """
    if not 0.0 <= fraction <= 1.0:
        raise EmodiffError(f"adaptation: fraction={fraction}, expected 0 <= fraction <= 1")
    tgt, all_spk = _target_labels(n_source, target_speakers, "adaptation")
    order = _shuffled_speakers(tgt, seed)
    if len(order) < 2:
        raise EmodiffError("adaptation: expected at least 2 target speakers (adaptation and test)")
    n_test = len(order) // 2
    test_spk, other = order[:n_test], order[n_test:]
    cum = _cumulative(tgt, other)
    m = int(np.searchsorted(cum, fraction * cum[-1] + 1e-9, side="right")) - 1
    source = tuple(range(n_source))
    adapt = _rows(tgt, other[:m], n_source)
    val = _rows(tgt, other[m:], n_source)
    if not val:
        n_val = min(max(1, round(SOURCE_VAL_FRACTION * n_source)), n_source - 1)
        if n_val < 1:
            raise EmodiffError("adaptation: fraction=1 needs at least 2 source utterances (training and validation)")
        source, val = source[:-n_val], source[-n_val:]
    fold = Fold(f"adapt={fraction:g}", tuple(sorted(source + adapt)), val, _rows(tgt, test_spk, n_source))
    check_disjoint(fold, all_spk)
    return fold
