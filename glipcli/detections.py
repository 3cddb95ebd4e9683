"""Detections as plain numpy arrays, converted to ``supervision.Detections`` only when asked.

Importing supervision takes about 0.7 s (it pulls in scipy and matplotlib's colour tables), more
than the model itself on one small image. The JSON outputs of ``glip detect`` and ``glip label``
need only the arrays, so the pipeline and the selection run on this class and the Python API
converts at its boundary (:meth:`Found.to_supervision`). It answers the attributes of
``sv.Detections`` that glipcli reads, so code written for either works on both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import supervision as sv


@dataclass(frozen=True)
class Found:
    """Boxes of one image: ``xyxy`` (n, 4) float32, ``confidence`` (n,) float32, ``class_id``
    (n,) int64 (0-based prompt order), ``data`` with ``class_name`` and 1-based ``label_id``."""

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    data: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.confidence)

    def __getitem__(self, index: np.ndarray) -> Found:
        """The boxes at ``index`` (an integer or boolean array), as ``sv.Detections`` indexes."""
        return Found(
            self.xyxy[index],
            self.confidence[index],
            self.class_id[index],
            {key: value[index] for key, value in self.data.items()},
        )

    def to_supervision(self) -> sv.Detections:
        import supervision as sv

        return sv.Detections(xyxy=self.xyxy, confidence=self.confidence, class_id=self.class_id, data=dict(self.data))
