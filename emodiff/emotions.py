"""The four emotion classes every corpus is mapped to, always in this order (ids 0..3)."""

from __future__ import annotations

EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry")
NEUTRAL, HAPPY, SAD, ANGRY = range(4)


def emotion_id(name: str) -> int:
    """Id of an emotion name (``"sad"`` -> 2); raises ValueError naming the allowed names."""
    try:
        return EMOTIONS.index(name)
    except ValueError:
        raise ValueError(f"unknown emotion {name!r}; expected one of {', '.join(EMOTIONS)}") from None
