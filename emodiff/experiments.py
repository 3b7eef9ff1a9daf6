"""What a classifier trains on, in one vocabulary: the ``--augment`` text and the experiment name.

An experiment is its training data (``real``, ``synthetic`` or both) and the augmentations on
top, written as parts joined by '+':

* ``--augment``: ``synthetic[:NAME]``, ``synthetic:PREFIX*``, ``gan``, ``weight:W``, ``real:N``, ``shuffle``,
  ``uniform``, ``mixup[:alpha]``, ``specaugment[:FxT]``, ``speed``, ``noise``, e.g.
  ``synthetic:demo+mixup:0.4+specaugment`` (:class:`Augment`);
* an experiment (``study.experiments``, the report's rows): the data first, then the rest,
  e.g. ``real+synthetic+mixup`` or ``real+synthetic:demo+mixup:0.4+speed`` (:class:`Experiment`).

``parse`` reads either text, ``text`` prints it back in canonical form (``parse(x.text) == x``),
and ``label`` is the report's wording. ``classify``, ``study`` and the report all go through
these two types, so they agree on what a text means.

Synthetic data without a set's name are the store's sets chosen per fold (the one whose generator
never saw the fold's held-out speakers), from one generator family: ``synthetic`` is the diffusion
model's (the method's), ``gan`` the conditional GAN baseline's (emodiff/generators/). ``synthetic:PREFIX*``
chooses the same way among the sets whose names start with PREFIX, of any family (one setting of a sweep).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Literal, get_args

from emodiff.errors import EmodiffError
from emodiff.families import FAMILIES, METHOD

TrainOn = Literal["real", "synthetic", "real+synthetic"]
TRAIN_ON: tuple[str, ...] = get_args(TrainOn)
OfflineKind = Literal["speed", "noise"]  # augmentations materialised by `emodiff augment` into /augmented
OFFLINE: tuple[str, ...] = get_args(OfflineKind)
# A generator family's name (emodiff/families.py lists them) is the text of its synthetic data, except the
# method's own diffusion model's (METHOD), which is plain ``synthetic``.
DEFAULT_MIXUP = 0.2  # Beta(alpha, alpha) when ``mixup`` gives no alpha
DEFAULT_MASKS = (8, 20)  # SpecAugment's widest frequency mask (bins) and time mask (frames), two of each
# The controls: each isolates one thing a synthetic set brings (docs/classify.md "Controls").
CONTROLS = ("shuffle", "uniform")
_CONTROL_DOES = {"shuffle": "permutes the synthetic segments' labels", "uniform": "trains the synthetic segments "
                 "towards uniform labels"}
_WEIGHT_DOES = "weighs each synthetic segment's loss against a real one's"
# The paper's rows (Malik et al., Interspeech 2023, Tables 2 and 3), in its order.
PAPER_ROWS = ("real", "synthetic", "real+synthetic", "real+synthetic+mixup")


@dataclass(frozen=True)
class Augment:
    """``--augment`` parsed: sources joined by '+', e.g. ``synthetic:demo+mixup:0.4+specaugment+speed``."""

    # A /synthetic set name; "" means: the store's set(s), chosen per fold; "PREFIX*": chosen per fold among
    # the sets whose names start with PREFIX.
    synthetic: str | None = None
    mixup: float | None = None  # Beta(alpha, alpha)
    specaugment: bool = False
    offline: tuple[str, ...] = ()  # kinds in /augmented/<corpus>/<kind>
    generator: str = METHOD  # with ``synthetic`` "": the family whose sets the folds choose from
    # Controls, not augmentations. shuffle: the synthetic segments' emotion labels permuted (by the run's seed),
    # labels that contradict the inputs. uniform: the synthetic segments trained towards 1/K for every class,
    # the inputs without any label information.
    shuffle: bool = False
    uniform: bool = False
    masks: tuple[int, int] = DEFAULT_MASKS  # with ``specaugment``: (widest frequency mask, widest time mask)
    # The "more real data" control: this many segments drawn with replacement from each fold's real training
    # segments (by the run's seed) and added to them, as many as a synthetic set would add.
    extra_real: int | None = None
    # Each synthetic segment's loss term counts W times a real one's (the batch loss is the weighted mean).
    weight: float | None = None

    @classmethod
    def parse(cls, text: str, where: str = "--augment") -> Augment:
        """``text`` as parts joined by '+'; EmodiffError naming ``where`` and the bad part."""
        values: dict[str, object] = {}
        offline: list[str] = []
        for part in filter(None, (p.strip() for p in text.split("+"))):
            kind, _, arg = part.partition(":")
            if kind == "synthetic" or kind in FAMILIES and not arg:
                if "synthetic" in values:
                    raise EmodiffError(f"{where} {text!r}: names synthetic data twice")
                if "*" in arg.rstrip("*") or arg.endswith("**"):
                    raise EmodiffError(f"{where} {part!r}: '*' may only end the name (synthetic:PREFIX*, the sets "
                                       "whose names start with PREFIX)")
                values["synthetic"] = arg if kind == "synthetic" else ""
                values["generator"] = METHOD if kind == "synthetic" else kind
            elif kind in FAMILIES:
                raise EmodiffError(f"{where} {part!r}: {kind} takes no argument (a set by name is synthetic:NAME)")
            elif kind == "mixup":
                try:
                    values["mixup"] = float(arg) if arg else DEFAULT_MIXUP
                except ValueError:
                    raise EmodiffError(f"{where} mixup:{arg}: expected a number (Beta alpha)") from None
                if not values["mixup"] > 0:  # type: ignore[operator]
                    raise EmodiffError(f"{where} mixup:{arg}: expected alpha > 0")
            elif kind == "specaugment":
                values[kind] = True
                if arg:
                    values["masks"] = _masks(arg, where)
            elif kind == "weight":
                values["weight"] = _weight(arg, where)
            elif kind == "real":
                if not arg.isdigit() or int(arg) < 1:
                    raise EmodiffError(f"{where} {part!r}: expected real:N, N extra real segments per fold (an "
                                       "integer >= 1, e.g. real:400, as many as a synthetic set adds)")
                values["extra_real"] = int(arg)
            elif kind in (*CONTROLS, *OFFLINE) and arg:
                raise EmodiffError(f"{where} {part!r}: {kind} takes no argument")
            elif kind in CONTROLS:
                values[kind] = True
            elif kind in OFFLINE:
                offline.append(kind)
            else:
                raise EmodiffError(f"{where} {part!r}: expected synthetic[:NAME], synthetic:PREFIX*, "
                                   f"{', '.join(_other_families())}, weight:W, real:N, shuffle, uniform, "
                                   "mixup[:alpha], specaugment[:FxT], speed or noise")
        return cls(**values, offline=tuple(dict.fromkeys(offline)))  # type: ignore[arg-type]

    @classmethod
    def from_config(cls, value: object) -> Augment:
        """The ``augment`` of a result's ``config`` attr: ``asdict`` of this class (older ones lack ``offline``)."""
        if value is None:
            return cls()
        if not isinstance(value, dict):
            raise EmodiffError(f"augment {value!r}: expected a mapping of synthetic, mixup, specaugment, offline")
        unknown = sorted(set(value) - {"synthetic", "mixup", "specaugment", "offline", "generator", *CONTROLS, "masks",
                                       "extra_real", "weight"})
        if unknown:
            raise EmodiffError(f"augment {value!r}: unknown key(s) {', '.join(unknown)}")
        offline = value.get("offline") or ()
        if isinstance(offline, str) or any(kind not in OFFLINE for kind in offline):
            raise EmodiffError(f"augment offline {offline!r}: expected a list of {', '.join(OFFLINE)}")
        mixup = value.get("mixup")
        generator = value.get("generator", METHOD)  # written only when not the method's: older results lack it
        if generator not in FAMILIES:
            raise EmodiffError(f"augment generator {generator!r}: expected one of {', '.join(FAMILIES)}")
        masks = value.get("masks", DEFAULT_MASKS)
        extra = value.get("extra_real")
        weight = value.get("weight")
        return cls(synthetic=None if value.get("synthetic") is None else str(value["synthetic"]),
                   mixup=None if mixup is None else float(mixup), specaugment=bool(value.get("specaugment")),
                   offline=tuple(offline), generator=generator, shuffle=bool(value.get("shuffle")),
                   uniform=bool(value.get("uniform")), masks=(int(masks[0]), int(masks[1])),
                   extra_real=None if extra is None else int(extra),
                   weight=None if weight is None else float(weight))

    def config(self) -> dict[str, object]:
        """What a result records (:meth:`from_config` reads it back); ``generator`` only when not the method's,
        and the controls, ``masks``, ``extra_real`` and ``weight`` only when set, so results recorded before any
        of them existed keep their config."""
        out: dict[str, object] = {"synthetic": self.synthetic, "mixup": self.mixup, "specaugment": self.specaugment,
                                  "offline": list(self.offline)}
        if self.generator != METHOD:
            out["generator"] = self.generator
        out |= {control: True for control in CONTROLS if getattr(self, control)}
        if self.masks != DEFAULT_MASKS:
            out["masks"] = list(self.masks)
        if self.extra_real is not None:
            out["extra_real"] = self.extra_real
        if self.weight is not None:
            out["weight"] = self.weight
        return out

    @property
    def prefix(self) -> str | None:
        """With ``synthetic:PREFIX*``, PREFIX: the folds choose among the sets whose names start with it."""
        return self.synthetic[:-1] if self.synthetic and self.synthetic.endswith("*") else None

    @property
    def synthetic_text(self) -> str:
        """The synthetic part's text: ``synthetic:NAME``, ``synthetic:PREFIX*``, ``synthetic`` (the method's sets)
        or ``gan``."""
        if self.synthetic:
            return f"synthetic:{self.synthetic}"
        return "synthetic" if self.generator == METHOD else self.generator

    def parts(self) -> list[str]:
        """The canonical parts, in order: synthetic, mixup, specaugment, then the offline kinds."""
        parts = []
        if self.synthetic is not None:
            parts.append(self.synthetic_text)
        return parts + self.extras()

    def extras(self) -> list[str]:
        """The parts besides ``synthetic``: the synthetic segments' weight, extra real segments, the controls, then
        the augmentations proper (``mixup:0.2``, ``specaugment``, ``speed``)."""
        parts = [] if self.weight is None else [f"weight:{_number(self.weight)}"]
        parts += [] if self.extra_real is None else [f"real:{self.extra_real}"]
        parts += [control for control in CONTROLS if getattr(self, control)]
        if self.mixup is not None:
            parts.append(f"mixup:{self.mixup:g}")
        if self.specaugment:
            widths = "" if self.masks == DEFAULT_MASKS else f":{self.masks[0]}x{self.masks[1]}"
            parts.append(f"specaugment{widths}")
        return parts + list(self.offline)

    def label(self) -> str:
        """The canonical ``--augment`` string ("" when nothing is added)."""
        return "+".join(self.parts())


@dataclass(frozen=True)
class Experiment:
    """The data a classifier trains on and the augmentations on top: ``real+synthetic+mixup``.

    Held in one canonical form, so that equal meanings compare equal: training data that include
    synthetic segments always carry ``augment.synthetic`` ("" for "the store's sets"), and
    ``synthetic`` in ``augment`` makes the data ``real+synthetic`` unless it is ``synthetic`` alone.
    """

    train_on: TrainOn = "real"
    augment: Augment = field(default_factory=Augment)

    def __post_init__(self) -> None:
        if self.train_on not in TRAIN_ON:
            raise EmodiffError(f"--train-on {self.train_on!r}: expected real, synthetic or real+synthetic")
        if self.train_on == "real" and self.augment.synthetic is not None:  # --augment synthetic adds to real
            object.__setattr__(self, "train_on", "real+synthetic")
        elif self.train_on != "real" and self.augment.synthetic is None:
            object.__setattr__(self, "augment", _with_synthetic(self.augment, "", self.augment.generator))
        broken = _unfit(self.train_on, self.augment)
        if broken:
            raise EmodiffError(_told_to_flags(broken[0], self.augment))

    @classmethod
    def of(cls, train_on: str, augment: Augment | str = "") -> Experiment:
        """``--train-on`` and ``--augment`` together (text is parsed with :meth:`Augment.parse`)."""
        return cls(train_on, augment if isinstance(augment, Augment) else Augment.parse(augment))  # type: ignore[arg-type]

    @classmethod
    def parse(cls, text: str, where: str = "experiment") -> Experiment:
        """``real``/``synthetic[:NAME]`` parts pick the data, the others are :class:`Augment` parts."""
        parts = [p.strip() for p in text.split("+") if p.strip()]
        data = [p for p in parts if p == "real" or p.partition(":")[0] in ("synthetic", *FAMILIES)]
        if not data:
            raise EmodiffError(f"{where}: {text!r} names no data; expected real, {_synthetic_words()} or both "
                               "joined by '+'")
        synthetic = [p for p in data if p != "real"]
        if len(synthetic) > 1 and len(set(synthetic)) > 1:
            raise EmodiffError(f"{where}: {text!r} names synthetic data twice ({', '.join(synthetic)})")
        augment = Augment.parse("+".join(p for p in parts if p not in data), where=f"{where} {text!r}:")
        if synthetic:
            given = Augment.parse(synthetic[0], where=f"{where} {text!r}:")
            augment = _with_synthetic(augment, given.synthetic or "", given.generator)
        train_on = "real+synthetic" if "real" in data and synthetic else "real" if data == ["real"] else "synthetic"
        broken = [rule for rule in _unfit(train_on, augment) if rule != "extra_real"]  # real:N: see cls() below
        if broken:
            raise EmodiffError(f"{where}: {text!r}: {_told_to_text(broken[0], augment, train_on)}")
        if data.count("real") > 1:
            raise EmodiffError(f"{where}: {text!r} names real twice; extra real segments are real:N (e.g. "
                               "real+real:400)")
        return cls(train_on, augment)  # type: ignore[arg-type]

    @property
    def sources(self) -> tuple[str, ...]:
        """The data, a subset of ("real", "synthetic") in that order."""
        return tuple(self.train_on.split("+"))

    @property
    def data(self) -> str:
        """The data in words: ``real``, ``synthetic``, ``real+synthetic``, or with the GAN's sets ``real+gan``."""
        if "synthetic" not in self.sources or self.augment.synthetic or self.augment.generator == METHOD:
            return self.train_on
        return self.train_on.replace("synthetic", self.augment.generator)

    @property
    def text(self) -> str:
        """Canonical text, the inverse of :meth:`parse`: ``real+synthetic:demo+mixup:0.4``."""
        data = ["real"] if "real" in self.sources else []
        if "synthetic" in self.sources:
            data.append(self.augment.parts()[0])
        return "+".join(data + self.augment.extras())

    @property
    def label(self) -> str:
        """The report's wording: the data, then each augmentation (``real+synthetic + mixup:0.2``); a sweep's
        setting keeps its prefix (``real+synthetic:g0.5-* + weight:0.5``), or its rows would read alike."""
        data = self.data if self.augment.prefix is None else f"{self.data}:{self.augment.synthetic}"
        return " + ".join((data, *self.augment.extras()))

    @property
    def name_parts(self) -> list[str]:
        """The words a result name is made of: ``real-synthetic``, ``g0.5-all`` (the sets of ``synthetic:g0.5-*``),
        ``weight0.5``, ``shuffle``, ``mixup``, ``speed``, ..."""
        augment = self.augment
        extras = [k for k in (*CONTROLS, "mixup", "specaugment") if getattr(augment, k) not in (None, False)]
        sets = [] if augment.prefix is None else [name_safe(f"{augment.prefix}*")]
        more = [] if augment.weight is None else [f"weight{_number(augment.weight)}"]
        more += [] if augment.extra_real is None else [f"real{augment.extra_real}"]
        return [self.data.replace("+", "-"), *sets, *more, *extras, *augment.offline]

    @property
    def paper_key(self) -> str | None:
        """The paper's row this experiment matches, if any (mixup matches at any alpha)."""
        extras = self.augment.extras()
        if self.data != self.train_on:  # another family's samples: not the paper's method
            return None
        if not extras:
            return self.train_on
        if self.train_on == "real+synthetic" and self.augment.mixup is not None and extras == [
                f"mixup:{self.augment.mixup:g}"]:
            return "real+synthetic+mixup"
        return None

    @property
    def order(self) -> tuple[int, str]:
        """Sort key: the paper's rows in its order, then the rest by label."""
        key = self.paper_key
        return (PAPER_ROWS.index(key), self.label) if key in PAPER_ROWS else (len(PAPER_ROWS), self.label)


def _unfit(train_on: str, augment: Augment) -> list[str]:
    """The rules of what an experiment's data can take that ``train_on`` and ``augment`` break, in the order they
    are told: ``offline`` (speed and noise copy real utterances), a control (``shuffle``, ``uniform``: they act on
    synthetic segments), ``extra_real`` (real:N adds real ones) and ``weight`` (weighs synthetic against real).
    The one place of these rules: :class:`Experiment` words them for the flags, :meth:`Experiment.parse` for a
    text."""
    broken = ["offline"] if train_on == "synthetic" and augment.offline else []
    broken += [control for control in CONTROLS if getattr(augment, control) and augment.synthetic is None]
    broken += ["extra_real"] if augment.extra_real is not None and train_on == "synthetic" else []
    return broken + (["weight"] if augment.weight is not None and train_on != "real+synthetic" else [])


def _told_to_flags(rule: str, augment: Augment) -> str:
    """What ``--train-on`` and ``--augment`` are told when they break ``rule`` (:func:`_unfit`)."""
    if rule == "offline":
        return (f"--augment {'+'.join(augment.offline)} augments real utterances; it needs --train-on real or "
                "real+synthetic")
    if rule in CONTROLS:
        return f"--augment {rule} {_CONTROL_DOES[rule]}; it needs synthetic data (e.g. --augment synthetic+{rule})"
    if rule == "extra_real":
        return f"--augment real:{augment.extra_real} adds real segments; it needs --train-on real or real+synthetic"
    w = _number(augment.weight)  # type: ignore[arg-type]
    return (f"--augment weight:{w} {_WEIGHT_DOES}; it needs real and synthetic data (e.g. --augment "
            f"synthetic+weight:{w})")


def _told_to_text(rule: str, augment: Augment, train_on: str) -> str:
    """What an experiment's text is told when it breaks ``rule`` (:func:`_unfit`; not ``extra_real``, told by the
    constructor in the flags' words)."""
    if rule == "offline":
        return f"{'+'.join(augment.offline)} augments real utterances; add real"
    if rule in CONTROLS:
        return f"{rule} {_CONTROL_DOES[rule]}; add {_synthetic_words()}"
    w = _number(augment.weight)  # type: ignore[arg-type]
    return f"weight:{w} {_WEIGHT_DOES}; add {_synthetic_words() if train_on == 'real' else 'real'}"


def name_safe(text: str) -> str:
    """``text`` for a result name: a '*' (``synthetic:PREFIX*``, outside the store's name rule) becomes ``-all``
    (``g0.5-*`` and ``g0.5*`` -> ``g0.5-all``, ``*`` -> ``all``)."""
    return re.sub(r"-*\*", "-all", text).lstrip("-")


def _other_families() -> list[str]:
    """The families whose sets an experiment names by the family's name (all but the method's ``synthetic``)."""
    return [name for name in FAMILIES if name != METHOD]


def _synthetic_words() -> str:
    """``synthetic (or gan)``: the words that name synthetic data."""
    others = _other_families()
    return f"synthetic (or {' or '.join(others)})" if others else "synthetic"


def _with_synthetic(augment: Augment, name: str, generator: str = METHOD) -> Augment:
    return dataclasses.replace(augment, synthetic=name, generator=generator)


def _number(x: float) -> str:
    """``x`` short (``0.5``, ``2``) where that reads back as ``x``, else in full, so ``parse(text)`` gives ``x``."""
    short = f"{x:g}"
    return short if float(short) == x else repr(x)


def _weight(text: str, where: str) -> float:
    """``weight:W``'s W, a finite number > 0."""
    try:
        w = float(text)
    except ValueError:
        w = math.nan
    if not (math.isfinite(w) and w > 0):
        raise EmodiffError(f"{where} 'weight:{text}': expected weight:W with W > 0, the weight of each "
                           "synthetic segment's loss against a real one's 1 (e.g. weight:0.5)")
    return w


def _masks(text: str, where: str) -> tuple[int, int]:
    """``specaugment:FxT``'s widest frequency and time masks."""
    widths = text.split("x")  # not ',': a recipe's list of experiments is comma-separated
    if len(widths) != 2 or not all(w.strip().isdigit() for w in widths):
        raise EmodiffError(f"{where} 'specaugment:{text}': expected specaugment:FxT, the widest frequency mask in mel "
                           f"bins and the widest time mask in frames (default {DEFAULT_MASKS[0]}x{DEFAULT_MASKS[1]})")
    return int(widths[0]), int(widths[1])
