"""The vocabulary of every recipe section: the setting types, :class:`SettingError` and the
range checks each section's ``__post_init__`` runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from emodiff.errors import EmodiffError

Schedule = Literal["cosine", "linear"]
TimestepSampler = Literal["uniform", "loss-second-moment"]
Sampler = Literal["ddpm", "ddim", "heun", "dpmpp-2m", "dpmpp-2m-sde"]
# The samplers whose ``eta`` scales the fresh noise they inject (ddpm injects it all, heun and dpmpp-2m none).
NOISY_SAMPLERS = ("ddim", "dpmpp-2m-sde")
Parameterization = Literal["eps", "v", "edm"]
Skip = Literal["scalar", "wiener"]
DenoiserKind = Literal["flat", "unet"]
Load = Literal["auto", "memory", "chunks"]
Normalize = Literal["center", "none"]
LrSchedule = Literal["constant", "cosine"]
# emodiff classify's classifier: the CNN-BLSTM, or utterance statistics into a linear model (emodiff/ser/stats.py).
ClassifierKind = Literal["cnn-blstm", "stats"]
# Whose voice a sample speaks in (emodiff/voices.py): a training speaker's, a mix of two, or a Gaussian draw.
Voices = Literal["training", "mix", "gaussian"]
# The vocoder of the report's audio (emodiff/vocoder.py; report --vocoder, study.vocoder): here, so that checking
# one loads no torch.
VocoderKind = Literal["auto", "hifigan", "griffin-lim"]
# A generator family's name: any family emodiff/families.py lists, checked against that list when a recipe is loaded.
GeneratorName = str


class SettingError(ValueError):
    """One bad setting of a section: ``section.key: expected ..., got value``.

    A ValueError, so that code building a config by hand gets the usual exception; :func:`build`
    turns it into one EmodiffError line that also names the recipe file.
    """

    def __init__(self, section: str, key: str, value: Any, expected: str) -> None:
        self.section, self.key, self.value, self.expected = section, key, value, expected
        super().__init__(f"{section}.{key}: expected {expected}, got {value!r}")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def integers(cfg: Any, section: str, minimum: int, *names: str) -> None:
    """Each of ``names`` an integer >= ``minimum``."""
    for name in names:
        value = getattr(cfg, name)
        if not is_int(value) or value < minimum:
            raise SettingError(section, name, value, f"an integer >= {minimum}")


def numbers(cfg: Any, section: str, ok: Callable[[float], bool], expected: str, *names: str) -> None:
    """Each of ``names`` a number for which ``ok(value)`` holds."""
    for name in names:
        value = getattr(cfg, name)
        if not is_number(value) or not ok(value):
            raise SettingError(section, name, value, expected)



def mismatch(where: str, key: str, value: Any, expected: str) -> EmodiffError:
    """The error of settings that do not agree across sections: ``where:section.key: expected ..., got value``."""
    return EmodiffError(f"{where}:{key}: expected {expected}, got {value!r}")
