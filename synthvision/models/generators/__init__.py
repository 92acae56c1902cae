"""Text-to-image generators behind one small interface (`Generator`), chosen by `generator.backend`."""

from synthvision.models.generators.base import Generator, load_generator

__all__ = ["Generator", "load_generator"]
