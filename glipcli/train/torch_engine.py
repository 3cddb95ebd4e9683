"""The PyTorch model behind the Detector's engine interface.

Validation during training, the export parity check of whole detections, and prompt tuning run
the very pipeline users get (prompt chunking, preprocessing, official post-processing), with the
eager model in place of the ONNX graphs.
"""

from __future__ import annotations

import numpy as np
import torch

from glipcli.model.glip import GLIP
from glipcli.prompt import PromptChunk
from glipcli.runtime.engine import DecodedHead


def _tensor(array: np.ndarray, dtype: type | None = None) -> torch.Tensor:
    """Zero-copy when possible; a copy when ``array`` is read-only (tuned features memory-mapped
    from a bundle), which torch.from_numpy would share and warn about."""
    return torch.from_numpy(np.require(array, dtype=dtype, requirements=["C", "W"]))


class TorchEngine:
    def __init__(self, model: GLIP) -> None:
        self.model = model.eval()
        self.name = f"{model.cfg.name} (PyTorch)"
        self.config = model.cfg
        self.runs: dict[str, int] = {"text": 0, "backbone": 0, "head": 0}

    @torch.no_grad()
    def encode_text(self, chunk: PromptChunk) -> np.ndarray:
        self.runs["text"] += 1
        ids = torch.tensor(chunk.input_ids[None])
        mask = torch.tensor(chunk.attention_mask[None])
        return self.model.encode_text(ids, mask)[0].numpy()

    @torch.no_grad()
    def backbone(self, images: np.ndarray) -> list[np.ndarray]:
        self.runs["backbone"] += 1
        return [p.numpy() for p in self.model.encode_image(_tensor(images))]

    @torch.no_grad()
    def head(self, levels: list[np.ndarray], text_features: np.ndarray, text_mask: np.ndarray) -> DecodedHead:
        self.runs["head"] += 1
        out = self.model.head(
            [_tensor(p) for p in levels],
            _tensor(text_features, np.float32),
            _tensor(text_mask, np.int64),
        )
        boxes, centerness, logits = (t.numpy() for t in self.model.decode(out))
        return DecodedHead(boxes, centerness, logits)
