"""Following training with real detection metrics: the PyTorch model run through the same
Detector pipeline as inference (chunking, preprocessing, official post-processing), COCO mAP on
a held-out set written by ``write_detection_set``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from glipcli.api import Detector
from glipcli.evaluation import evaluate_folder
from glipcli.metrics import Metrics
from glipcli.model.glip import GLIP
from glipcli.train.torch_engine import TorchEngine


def torch_detector(model: GLIP, tokenizer: Any) -> Detector:
    return Detector(TorchEngine(model), tokenizer)


def evaluate_model(model: GLIP, tokenizer: Any, dataset_dir: Path, workers: int = 1) -> Metrics:
    """mAP of ``model`` on ``dataset_dir`` (annotations.json + images/), category names as prompt."""
    report = evaluate_folder(
        dataset_dir / "annotations.json",
        dataset_dir / "images",
        detector=torch_detector(model, tokenizer),
        workers=workers,
    )
    return report.metrics
