"""glipcli: open-vocabulary detection and auto-annotation with GLIP on ONNX Runtime."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Detector", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from glipcli.api import Detector


def __getattr__(name: str) -> Any:
    """Import the API lazily so ``import glipcli`` stays cheap (no onnxruntime until used)."""
    if name == "Detector":
        from glipcli.api import Detector

        return Detector
    raise AttributeError(name)
