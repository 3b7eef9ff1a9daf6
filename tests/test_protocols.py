"""Fold plans: speaker disjointness, coverage, IEMOCAP pairing, cross-corpus and adaptation splits."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emodiff.errors import EmodiffError
from emodiff.ser.protocols import (
    Fold,
    TargetSplit,
    WithinCorpus,
    adaptation,
    by_session,
    check_disjoint,
    cross_corpus,
    cross_corpus_groups,
    cross_corpus_random,
    loso,
    speaker_groups,
    speaker_partitions,
)


@st.composite
def corpus(draw: st.DrawFn, min_sessions: int = 2, min_per_session: int = 2) -> tuple[list[str], list[str]]:
    """Per-row (speakers, sessions), rows shuffled; speaker names random, each in one session."""
    n_sessions = draw(st.integers(min_sessions, 5))
    sizes = draw(st.lists(st.integers(min_per_session, 3), min_size=n_sessions, max_size=n_sessions))
    names = draw(st.lists(st.text("abcxyz019_", min_size=1, max_size=6), min_size=sum(sizes),
                          max_size=sum(sizes), unique=True))
    speakers: list[str] = []
    sessions: list[str] = []
    it = iter(names)
    for i, size in enumerate(sizes):
        for _ in range(size):
            spk = next(it)
            n_utts = draw(st.integers(1, 5))
            speakers += [spk] * n_utts
            sessions += [f"S{i}"] * n_utts
    perm = draw(st.permutations(range(len(speakers))))
    return [speakers[p] for p in perm], [sessions[p] for p in perm]


def assert_partition(fold: Fold, speakers: list[str]) -> None:
    """Every row in exactly one side; no speaker on two sides; all sides non-empty."""
    rows = list(fold.train) + list(fold.val) + list(fold.test)
    assert sorted(rows) == list(range(len(speakers)))
    assert fold.train and fold.val and fold.test
    sides = [{speakers[r] for r in side} for side in (fold.train, fold.val, fold.test)]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])


@settings(max_examples=60, deadline=None)
@given(corpus(), st.booleans())
def test_loso_properties(data: tuple[list[str], list[str]], pair: bool) -> None:
    speakers, sessions = data
    folds = loso(speakers, sessions, pair_by_session=pair)
    tested = []
    for fold in folds:
        assert_partition(fold, speakers)
        test_spk = {speakers[r] for r in fold.test}
        assert len(test_spk) == 1
        (spk,) = test_spk
        assert fold.name == f"test={spk}"
        tested.append(spk)
        if pair:
            session = {sessions[r] for r in fold.test}
            partners = {s for s, ses in zip(speakers, sessions, strict=True) if session == {ses}} - {spk}
            assert {speakers[r] for r in fold.val} == partners
    assert sorted(tested) == sorted(set(speakers))


def test_loso_iemocap_pairs() -> None:
    speakers, sessions = [], []
    for s in range(1, 6):
        for g in "FM":
            speakers += [f"Ses0{s}{g}"] * 3
            sessions += [f"Ses0{s}"] * 3
    folds = loso(speakers, sessions, pair_by_session=True)
    assert len(folds) == 10
    by_name = {f.name: f for f in folds}
    f = by_name["test=Ses01F"]
    assert {speakers[r] for r in f.val} == {"Ses01M"}
    assert {speakers[r] for r in by_name["test=Ses01M"].val} == {"Ses01F"}
    assert len(f.train) == 24 and len(f.test) == 3
    unpaired = {f.name: f for f in loso(speakers, sessions, pair_by_session=False)}
    assert {speakers[r] for r in unpaired["test=Ses05M"].val} == {"Ses01F"}  # cyclic next


def test_loso_errors() -> None:
    with pytest.raises(EmodiffError, match="single speaker 'c'"):
        loso(["a", "b", "c", "d", "e"], ["1", "1", "2", "3", "3"], pair_by_session=True)
    with pytest.raises(EmodiffError, match="sessions"):
        loso(["a", "a", "b"], ["1", "2", "2"], pair_by_session=True)
    with pytest.raises(EmodiffError, match="no training"):
        loso(["a", "b"], ["1", "1"], pair_by_session=False)
    with pytest.raises(EmodiffError, match="3 speakers but 2 sessions"):
        loso(["a", "b", "c"], ["1", "1"], pair_by_session=False)


@settings(max_examples=60, deadline=None)
@given(corpus(min_sessions=1, min_per_session=1), st.data())
def test_speaker_groups_properties(data: tuple[list[str], list[str]], draw: st.DataObject) -> None:
    speakers, _ = data
    n = len(set(speakers))
    if n < 3:
        return
    k = draw.draw(st.integers(3, n))
    folds = speaker_groups(speakers, k)
    assert len(folds) == k
    tested: list[str] = []
    for fold in folds:
        assert_partition(fold, speakers)
        tested += sorted({speakers[r] for r in fold.test})
    assert sorted(tested) == sorted(set(speakers))
    sizes = [len({speakers[r] for r in f.test}) for f in folds]
    assert max(sizes) - min(sizes) <= 1


def test_speaker_groups_ravdess() -> None:
    actors = [f"Actor_{i:02d}" for i in range(1, 25) for _ in range(2)]
    folds = speaker_groups(actors, 6)
    groups = [sorted({actors[r] for r in f.test}) for f in folds]
    assert all(len(g) == 4 for g in groups)
    assert groups[0] == ["Actor_01", "Actor_02", "Actor_03", "Actor_04"]
    assert sorted({actors[r] for r in folds[5].val}) == groups[0]
    assert len(folds[0].train) == 32


@pytest.mark.parametrize("k", [0, 1, 2, 5])
def test_speaker_groups_bad_k(k: int) -> None:
    with pytest.raises(EmodiffError, match=f"k={k}"):
        speaker_groups(["a", "b", "c", "d"], k)


@settings(max_examples=60, deadline=None)
@given(corpus(min_sessions=3, min_per_session=1))
def test_by_session_properties(data: tuple[list[str], list[str]]) -> None:
    speakers, sessions = data
    folds = by_session(speakers, sessions)
    names = sorted(set(sessions))
    assert [f.name for f in folds] == [f"test={s}" for s in names]
    for i, fold in enumerate(folds):
        assert_partition(fold, speakers)
        assert {sessions[r] for r in fold.test} == {names[i]}
        assert {sessions[r] for r in fold.val} == {names[(i + 1) % len(names)]}


def test_by_session_errors() -> None:
    with pytest.raises(EmodiffError, match="at least 3"):
        by_session(["a", "b"], ["1", "2"])
    with pytest.raises(EmodiffError, match="speaker 'a'"):  # a speaker in two sessions
        by_session(["a", "a", "b"], ["1", "2", "3"])


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 20), corpus(min_sessions=1, min_per_session=2), st.integers(0, 1000))
def test_cross_corpus_properties(n_source: int, data: tuple[list[str], list[str]], seed: int) -> None:
    target, _ = data
    fold = cross_corpus(n_source, target, seed=seed)
    assert fold.train == tuple(range(n_source))
    assert sorted(fold.val + fold.test) == list(range(n_source, n_source + len(target)))
    val_spk = {target[r - n_source] for r in fold.val}
    test_spk = {target[r - n_source] for r in fold.test}
    assert val_spk and test_spk and not (val_spk & test_spk)
    biggest = max(target.count(s) for s in set(target))
    assert abs(len(fold.val) - 0.3 * len(target)) <= biggest
    assert cross_corpus(n_source, target, seed=seed) == fold


def test_cross_corpus_dev_fraction() -> None:
    target = [f"spk{i}" for i in range(20) for _ in range(10)]
    fold = cross_corpus(50, target, seed=3)
    assert len(fold.val) == 60 and len(fold.test) == 140
    with pytest.raises(EmodiffError, match="dev_fraction"):
        cross_corpus(5, target, dev_fraction=1.0)
    with pytest.raises(EmodiffError, match="at least 2 target speakers"):
        cross_corpus(5, ["a", "a"])


def test_cross_corpus_random_is_the_papers_utterance_split() -> None:
    target = [f"spk{i}" for i in range(9) for _ in range(96)]  # nEMO's shape: 9 speakers x 96
    fold = cross_corpus_random(672, target, seed=0)
    assert fold.train == tuple(range(672))
    assert len(fold.val) == round(0.3 * 864) == 259 and len(fold.test) == 864 - 259
    assert sorted(fold.val + fold.test) == list(range(672, 672 + 864))
    val_spk = {target[r - 672] for r in fold.val}
    test_spk = {target[r - 672] for r in fold.test}
    assert val_spk == test_spk == set(target)  # by utterance: every speaker on both sides
    assert cross_corpus_random(672, target, seed=0) == fold and cross_corpus_random(672, target, seed=1) != fold
    assert len(cross_corpus_random(1, ["a", "a"], dev_fraction=0.01).val) == 1  # at least one each side
    with pytest.raises(EmodiffError, match="at least 2 target utterances"):
        cross_corpus_random(5, ["a"])


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 20), corpus(min_sessions=1, min_per_session=1), st.integers(2, 12))
def test_cross_corpus_groups_test_every_target_speaker_once(n_source: int, data: tuple[list[str], list[str]],
                                                            k: int) -> None:
    target, _ = data
    n_spk = len(set(target))
    if k > n_spk:
        with pytest.raises(EmodiffError, match=f"expected 2..{n_spk}"):
            cross_corpus_groups(n_source, target, k)
        return
    folds = cross_corpus_groups(n_source, target, k)
    assert [f.name for f in folds] == [f"target.group={i}" for i in range(k)]
    tested: list[str] = []
    for fold in folds:
        assert fold.train == tuple(range(n_source))
        assert sorted(fold.val + fold.test) == list(range(n_source, n_source + len(target)))
        test_spk = {target[r - n_source] for r in fold.test}
        assert test_spk and not test_spk & {target[r - n_source] for r in fold.val}
        tested += sorted(test_spk)
    assert sorted(tested) == sorted(set(target))  # each target speaker tested exactly once


def test_target_split_parse() -> None:
    assert TargetSplit.parse("groups:3") == TargetSplit("groups", 3)
    assert TargetSplit.parse("random").kind == "random" and TargetSplit.parse("loso").k == 0
    for bad, match in [("groups:1", "K >= 2"), ("groups:x", "expected speakers"), ("paper", "expected speakers")]:
        with pytest.raises(EmodiffError, match=match):
            TargetSplit.parse(bad)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 20), corpus(min_sessions=1, min_per_session=2), st.integers(0, 1000))
def test_adaptation_nested_fixed_test(n_source: int, data: tuple[list[str], list[str]], seed: int) -> None:
    target, _ = data
    fractions = [0.0, 0.1, 0.25, 0.5, 0.75, 0.99, 1.0]
    folds = [adaptation(n_source, target, f, seed=seed) for f in fractions]
    source = set(range(n_source))
    n_spk = len(set(target))
    previous: set[int] = set()
    for frac, fold in zip(fractions, folds, strict=True):
        assert fold.test == folds[0].test
        assert len({target[r - n_source] for r in fold.test}) == n_spk // 2
        adapt = set(fold.train) - source
        assert previous <= adapt
        previous = adapt
        other = len(target) - len(fold.test)
        assert len(adapt) <= frac * other + 1e-9
        rows = sorted(fold.train + fold.val + fold.test)
        assert rows == list(range(n_source + len(target)))
        target_sides = [{target[r - n_source] for r in side if r >= n_source}
                        for side in (fold.train, fold.val, fold.test)]
        assert not (target_sides[0] & target_sides[1]) and not (target_sides[0] & target_sides[2])
        assert not (target_sides[1] & target_sides[2])
        if frac < 1.0:
            assert source <= set(fold.train) and fold.val and min(fold.val) >= n_source
    assert len(adapt) == len(target) - len(fold.test)  # fraction 1: all other target rows
    assert fold.val and max(fold.val) < n_source  # validation is a slice of the source


def test_adaptation_errors() -> None:
    for bad in (-0.1, 1.5):
        with pytest.raises(EmodiffError, match="fraction"):
            adaptation(10, ["a", "b"], bad)
    with pytest.raises(EmodiffError, match="at least 2 target speakers"):
        adaptation(10, ["a"], 0.5)
    with pytest.raises(EmodiffError, match="2 source utterances"):
        adaptation(1, ["a", "b"], 1.0)


def test_check_disjoint_names_fold_and_speaker() -> None:
    fold = Fold("demo", train=(0,), val=(1,), test=(2,))
    check_disjoint(fold, ["a", "b", "c"])
    with pytest.raises(EmodiffError, match="fold demo: speaker 'a' is in both train and test"):
        check_disjoint(fold, ["a", "b", "a"])
    check_disjoint(fold, [None, None, "a"])
    with pytest.raises(EmodiffError, match="row 0 is in both"):
        check_disjoint(Fold("x", (0,), (0,), (1,)), ["a", "b"])
    np.testing.assert_equal(fold.train, (0,))


# RAVDESS: 24 actors, odd = male, even = female; two rows each.
ACTORS = [f"{i:02d}" for i in range(1, 25) for _ in range(2)]
GENDERS = ["M" if int(a) % 2 else "F" for a in ACTORS]


def _groups(folds: list[Fold], speakers: list[str], prefix: str) -> list[list[str]]:
    """Test speakers of the folds ``<prefix>group=i``, in order of i."""
    return [sorted({speakers[r] for r in f.test}) for f in folds if f.name.startswith(f"{prefix}group=")]


def test_speaker_partitions_ravdess_are_gender_balanced_and_each_tests_every_actor_once() -> None:
    folds = speaker_partitions(ACTORS, 6, 3, GENDERS)
    assert [f.name for f in folds] == [f"{p}group={i}" for p in ("", "r1.", "r2.") for i in range(6)]
    assert folds[:6] == speaker_groups(ACTORS, 6)  # partition 0 is today's contiguous grouping
    gender = dict(zip(ACTORS, GENDERS, strict=True))
    partitions = [_groups(folds, ACTORS, p) for p in ("", "r1.", "r2.")]
    for p, groups in enumerate(partitions):
        assert sorted(s for g in groups for s in g) == sorted(set(ACTORS))  # every actor tested once
        for g in groups:
            assert sorted(gender[s] for s in g) == ["F", "F", "M", "M"], (p, g)
        for i, fold in enumerate(folds[6 * p : 6 * p + 6]):
            assert_partition(fold, ACTORS)
            check_disjoint(fold, ACTORS)
            assert sorted({ACTORS[r] for r in fold.val}) == groups[(i + 1) % 6]  # the next group of the same one
    as_sets = [{frozenset(g) for g in groups} for groups in partitions]
    assert as_sets[1] != as_sets[0] and as_sets[2] not in as_sets[:2]  # not the same groups in another order
    assert partitions[1][0] == ["03", "04", "11", "18"]  # golden: seed 1
    assert speaker_partitions(ACTORS, 6, 3, GENDERS) == folds  # the same seeds, the same partitions
    assert speaker_partitions(ACTORS, 6, 2, GENDERS) == folds[:12]  # partition p does not depend on R
    assert speaker_partitions(ACTORS, 6, 1, GENDERS) == speaker_groups(ACTORS, 6)


def test_speaker_partitions_without_one_gender_per_speaker_shuffle_all_speakers() -> None:
    mixed = ["F" if i % 3 else "M" for i in range(len(ACTORS))]  # actors with rows of both genders
    plain = speaker_partitions(ACTORS, 6, 2)
    assert speaker_partitions(ACTORS, 6, 2, mixed) == plain
    assert speaker_partitions(ACTORS, 6, 2, [""] * len(ACTORS)) == plain
    assert speaker_partitions(ACTORS, 6, 2, GENDERS) != plain  # the genders change the deal
    sizes = [len(g) for g in _groups(plain, ACTORS, "r1.")]
    assert sizes == [4] * 6
    with pytest.raises(EmodiffError, match="48 speakers but 3 genders"):
        speaker_partitions(ACTORS, 6, 2, ["F", "M", "F"])


@settings(max_examples=60, deadline=None)
@given(corpus(min_sessions=2, min_per_session=2), st.data())
def test_speaker_partitions_properties(data: tuple[list[str], list[str]], draw: st.DataObject) -> None:
    speakers, _ = data
    names = sorted(set(speakers))
    k = draw.draw(st.integers(3, len(names) - 1))  # k = n speakers has a single partition
    r = draw.draw(st.integers(1, 3))
    of = {s: draw.draw(st.sampled_from("FM")) for s in names}
    genders = [of[s] for s in speakers]
    folds = speaker_partitions(speakers, k, r, genders)
    assert len(folds) == r * k and len({f.name for f in folds}) == r * k
    seen = []
    for p in range(r):
        part = folds[p * k : (p + 1) * k]
        groups = [sorted({speakers[i] for i in f.test}) for f in part]
        assert sorted(s for g in groups for s in g) == names  # every speaker tested exactly once
        assert sorted(len(g) for g in groups) == sorted(len(g) for g in np.array_split(names, k))
        for i, fold in enumerate(part):
            assert_partition(fold, speakers)
            assert sorted({speakers[j] for j in fold.val}) == groups[(i + 1) % k]
        if p:
            for sex in "FM":
                counts = [sum(of[s] == sex for s in g) for g in groups]
                assert max(counts) - min(counts) <= 1
        seen.append({frozenset(g) for g in groups})
    assert all(seen[i] != seen[j] for i in range(r) for j in range(i))


def test_speaker_partitions_refuse_partitions_that_cannot_differ() -> None:
    with pytest.raises(EmodiffError, match="no partition of 3 speakers into 3 groups that differs from the 1 before"):
        speaker_partitions(["a", "b", "c"], 3, 2)
    with pytest.raises(EmodiffError, match="k=4 groups, expected 3..3"):
        speaker_partitions(["a", "b", "c"], 4, 2)


@pytest.mark.parametrize(("text", "expected"), [
    ("loso", WithinCorpus("loso")),
    ("session", WithinCorpus("session")),
    ("groups:6", WithinCorpus("groups", 6, 1)),
    ("groups:6x1", WithinCorpus("groups", 6, 1)),
    ("groups:6x2", WithinCorpus("groups", 6, 2)),
    ("groups:3x100", WithinCorpus("groups", 3, 100)),
])
def test_folds_text_is_parsed(text: str, expected: WithinCorpus) -> None:
    assert WithinCorpus.parse(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("groups:6x0", "--folds groups:6x0: R=0 partitions, expected 1..100"),
    ("groups:6x101", "--folds groups:6x101: R=101 partitions, expected 1..100"),
    ("groups:x2", "--folds groups:x2: expected groups:K or groups:KxR with integers K and R"),
    ("groups:6x", "--folds groups:6x: expected groups:K or groups:KxR"),
    ("groups:abc", "--folds groups:abc: expected groups:K or groups:KxR"),
    ("groups:2x2", "--folds groups:2x2: K=2 groups, expected K >= 3"),
    ("groups:0", "--folds groups:0: K=0 groups, expected K >= 3"),
    ("kfold", "--folds 'kfold': expected loso, session, groups:K or groups:KxR"),
])
def test_bad_folds_text_is_one_line_naming_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(EmodiffError) as err:
        WithinCorpus.parse(text)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
