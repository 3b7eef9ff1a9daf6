"""Results grouped as the paper's tables: one table per (protocol, train -> test corpus), one row per training set.

The paper is Malik, Latif, Jurdak, Schuller, "A Preliminary Study on Augmenting Speech Emotion
Recognition using a Diffusion Model", Interspeech 2023: Table 2 is IEMOCAP within corpus
(leave-one-speaker-out), Table 3 is IEMOCAP -> MSP-IMPROV.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from emodiff.errors import EmodiffError
from emodiff.experiments import PAPER_ROWS, Experiment
from emodiff.report.collect import ResultInfo
from emodiff.ser.classifier import ClassifierConfig
from emodiff.ser.protocols import WithinCorpus
from emodiff.summary import CorpusStats

LEAKY = "⚠ leaky"  # marks a result whose generator saw speakers it tests or validates on

Kind = Literal["within", "cross", "adaptation"]
KINDS: tuple[Kind, ...] = ("within", "cross", "adaptation")

# UAR in %, from the paper's Tables 2 and 3, keyed by Experiment.paper_key (emodiff.experiments.PAPER_ROWS).
PAPER_UAR: dict[Kind, dict[str, float]] = {
    "within": {"real": 58.62, "synthetic": 57.96, "real+synthetic": 61.22, "real+synthetic+mixup": 61.38},
    "cross": {"real": 45.81, "synthetic": 43.53, "real+synthetic": 48.22, "real+synthetic+mixup": 48.58},
}
# (train corpus, test corpus, protocol) under which our number is the paper's experiment.
PAPER_EXPERIMENT: dict[Kind, tuple[str, str, str]] = {
    "within": ("iemocap", "iemocap", "loso"),
    "cross": ("iemocap", "msp-improv", "cross-corpus"),
}
PAPER_SETTING: dict[Kind, str] = {
    "within": "IEMOCAP, leave-one-speaker-out over its 10 speakers",
    "cross": "trained on IEMOCAP, MSP-IMPROV split into 30 % validation and 70 % test",
}
_CLASSIFIER_KEYS = ("channels", "lstm_hidden", "epochs", "lr", "batch_size")


def condition(r: ResultInfo) -> Experiment | None:
    """What ``r`` trained on, from its ``train_on`` and ``augment`` attrs; None when they do not parse."""
    try:
        return Experiment.of(r.train_on, r.augment)
    except EmodiffError:
        return None


def trained_on(r: ResultInfo) -> str:
    """The "trained on" cell: :attr:`Experiment.label`, or the attrs as stored when they do not parse."""
    e = condition(r)
    return e.label if e else " + ".join(filter(None, (r.train_on or "?", r.augment)))


def _order(r: ResultInfo) -> tuple[int, str]:
    e = condition(r)
    return e.order if e else (len(PAPER_ROWS), trained_on(r))


def kind_of(r: ResultInfo) -> Kind:
    if r.protocol == "adaptation":
        return "adaptation"
    if r.protocol == "cross-corpus" or r.train_corpus != r.corpus:
        return "cross"
    return "within"


@dataclass
class ResultTable:
    """Results that share a protocol and a train -> test corpus pair: one table."""

    kind: Kind
    protocol: str
    train_corpus: str
    test_corpus: str
    results: list[ResultInfo]  # in row order

    @property
    def title(self) -> str:
        if self.kind == "within":
            return f"{self.test_corpus}, within corpus, {self.protocol}"
        what = "cross-corpus" if self.kind == "cross" else "adaptation"
        return f"{self.train_corpus} -> {self.test_corpus}, {what}"

    @property
    def matches_paper(self) -> bool:
        """Whether this is the paper's own experiment (same corpora and protocol)."""
        return PAPER_EXPERIMENT.get(self.kind) == (self.train_corpus, self.test_corpus, self.protocol)

    def paper_uar(self, r: ResultInfo) -> float | None:
        """The paper's UAR (%) for this row's training set: the same experiment, or a reference."""
        e = condition(r)
        key = e.paper_key if e else None
        return PAPER_UAR.get(self.kind, {}).get(key) if key else None


def experiments(results: list[ResultInfo]) -> list[ResultTable]:
    """Results grouped into tables: within corpus first, then cross-corpus, then adaptation."""
    groups: dict[tuple[Kind, str, str, str], list[ResultInfo]] = {}
    for r in results:
        groups.setdefault((kind_of(r), r.protocol, r.train_corpus, r.corpus), []).append(r)
    out = []
    for (kind, protocol, train, test), rows in sorted(groups.items(), key=lambda kv: (KINDS.index(kv[0][0]),
                                                                                        kv[0][1:])):
        rows.sort(key=lambda r: (_order(r), r.target_fraction or 0.0, r.name))
        out.append(ResultTable(kind, protocol, train, test, rows))
    return out


def classifier_words(c: dict) -> str:
    """'the paper-size classifier', its sizes beside the paper's, or what ``classifier.kind: stats`` is."""
    if not c:
        return "classifier settings not recorded"
    if c.get("kind") == "stats":  # recorded only when not the CNN-BLSTM, whose sizes are the rest of the dict
        return "speaker-normalised utterance statistics into a linear model (classifier.kind stats)"
    paper = asdict(ClassifierConfig())  # its defaults are the paper's
    if all(c.get(k) == paper[k] for k in _CLASSIFIER_KEYS):
        return "the paper-size classifier"
    return "a classifier of " + _sizes(c) + " (the paper's: " + _sizes(paper) + ")"


def _sizes(c: dict) -> str:
    lr = c.get("lr", "?")
    lr_text = f"{lr:g}" if isinstance(lr, (int, float)) else str(lr)
    epochs = c.get("epochs", "?")
    return (f"{c.get('channels', '?')} channels, LSTM {c.get('lstm_hidden', '?')}, {epochs} epoch"
            f"{'' if epochs == 1 else 's'}, lr {lr_text}, batch {c.get('batch_size', '?')}")


def protocol_words(exp: ResultTable) -> str:
    """The protocol in words, with the number of folds the results hold."""
    n = max((r.folds_per_repeat for r in exp.results), default=0)
    repeats = max((r.repeats for r in exp.results), default=1)
    p = exp.protocol
    if p == "loso":
        text = f"leave-one-speaker-out over {n} speakers"
    elif p == "session":
        text = f"leave-one-session-out over {n} sessions"
    elif p.startswith("groups:"):
        try:
            within = WithinCorpus.parse(p, where="protocol")
            text = f"{within.k} speaker groups, one held out per fold" + (
                f", {within.partitions} partitions of the speakers" if within.partitions > 1 else "")
        except EmodiffError:  # a store written before the text was checked (K < 3)
            text = f"{p.partition(':')[2]} speaker groups, one held out per fold"
    elif p == "cross-corpus":
        text = f"trained on {exp.train_corpus}, tested on {exp.test_corpus}"
    elif p == "adaptation":
        text = f"trained on {exp.train_corpus} plus a fraction of {exp.test_corpus}, tested on the rest"
    else:
        text = f"protocol {p or 'not recorded'}, {n} folds"
    return text + (f", {repeats} repeats" if repeats > 1 else "")


def setting_sentence(exp: ResultTable, corpora: dict[str, CorpusStats]) -> str:
    """'ours: ...; paper: ...' stating how this experiment differs from the paper's."""
    def corpus(name: str) -> str:
        s = corpora.get(name)
        return f"{name} ({s.utterances} utterances, {s.speakers} speakers)" if s else name

    where = corpus(exp.test_corpus) if exp.kind == "within" else f"{exp.train_corpus} -> {corpus(exp.test_corpus)}"
    sizes = "; ".join(dict.fromkeys(classifier_words(r.classifier) for r in exp.results))
    ours = f"ours: {where}, {protocol_words(exp)}, {sizes}"
    if exp.kind not in PAPER_SETTING:
        return ours + "."
    return f"{ours}; paper: {PAPER_SETTING[exp.kind]}, the paper-size classifier."
