"""emodiff: speech emotion recognition augmented with text-conditioned diffusion."""

__version__ = "0.1.0"
