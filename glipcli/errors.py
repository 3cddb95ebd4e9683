"""Errors a user can cause.

Each carries a one-line message; the CLI prints it and exits non-zero. Anything else that
escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class GlipError(Exception):
    """Base class: a problem with the user's input, files or environment."""

    exit_code = 1


class ConfigError(GlipError):
    """An unknown preset, an unreadable or inconsistent config file, a bad option value."""


class CheckpointError(GlipError):
    """A checkpoint that cannot be read, is unsafe, or does not fit the architecture."""


class PromptError(GlipError):
    """An empty prompt, a grounding phrase that is not in the caption, a bad prompt file."""


class ImageError(GlipError):
    """An image that is missing, unreadable, truncated or outside the supported limits."""


class BundleError(GlipError):
    """A model bundle that is missing, tampered with, or of an unsupported format version."""


class ExportError(GlipError):
    """An export whose graphs fail to reproduce the PyTorch model within tolerance."""


class DataError(GlipError):
    """Training or evaluation data that cannot be used (COCO files, image folders)."""
