"""ONNX Runtime execution of a bundle's three graphs, torch-free.

One session per graph, created once. The text graph depends only on the prompt, so its output
is cached per prompt chunk: a folder labelled with one prompt runs BERT once per chunk, and a
vocabulary in many chunks runs the backbone once per image and only the head per chunk. The
features are also kept on disk between runs (glipcli.runtime.text_store), and the text session
is created only when a chunk is in neither cache: a prompt used before starts without it.
``runs`` counts graph executions so callers and tests can check exactly that.

Batching: images of one batch are zero-padded bottom/right to the largest of them and share one
backbone run. The head's global poolings and its joint attention over all positions include the
padding (GLIP_SPEC §12.2, §12.6, §12.14), so an image batched with a larger one gets slightly
different scores than alone. Batch size 1 reproduces the official single-image results exactly.
"""

from __future__ import annotations

from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from glipcli.config import GLIPConfig
from glipcli.errors import BundleError
from glipcli.prompt import PromptChunk
from glipcli.runtime.bundle import GRAPHS, Bundle
from glipcli.runtime.sessions import make_session, providers_for
from glipcli.runtime.text_store import TextFeatureStore

LEVELS = ("p3", "p4", "p5", "p6", "p7")
TEXT_CACHE_SIZE = 512


@dataclass(frozen=True)
class HeadOutputs:
    boxes: np.ndarray  # (B, N, 4) xyxy in padded-input pixels
    centerness: np.ndarray  # (B, N) logits
    token_logits: np.ndarray  # (B, N, T)


class InferenceEngine(Protocol):
    """What the Detector needs from a model: the three stages of GLIP on numpy arrays.

    :class:`Engine` runs the ONNX graphs; ``glipcli.train.torch_engine.TorchEngine`` runs the
    PyTorch model itself, so validation during training uses exactly the inference pipeline.
    """

    name: str
    config: GLIPConfig
    runs: dict[str, int]

    def encode_text(self, chunk: PromptChunk) -> np.ndarray: ...

    def _stored_or_encoded(self, chunk: PromptChunk, key: str) -> np.ndarray:
        features = self._store.get(key, len(chunk.input_ids)) if self._store else None
        if features is None:
            feed = {"input_ids": chunk.input_ids[None], "attention_mask": chunk.attention_mask[None]}
            features = self._run("text", feed)[0][0]
            if self._store:
                self._store.put(key, features)
        return features

    def backbone(self, images: np.ndarray) -> list[np.ndarray]: ...

    def head(self, levels: list[np.ndarray], text_features: np.ndarray, text_mask: np.ndarray) -> HeadOutputs: ...


class Engine:
    """The three ONNX graphs of a bundle, with a bounded LRU cache of text features (and the disk
    store behind it, unless ``text_store`` is False or ``GLIPCLI_TEXT_CACHE=0``)."""

    def __init__(
        self, bundle: Bundle, device: str = "auto", threads: int | None = None, text_store: bool = True
    ) -> None:
        self.bundle = bundle
        self.name = bundle.name
        self.config = bundle.config
        self._device, self._threads = device, threads
        self._sessions = _load_sessions(bundle, ("backbone", "head"), device, threads)
        digest = bundle.manifest["graphs"]["text"]["sha256"]
        self._store = TextFeatureStore.for_graph(digest) if text_store else None
        self.runs: dict[str, int] = dict.fromkeys(GRAPHS, 0)
        self._text_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        # tuned prompts (GLIP_SPEC §11): caption -> stored text features that replace the encoder's
        self._tuned = {entry.get("caption"): bundle.path / entry["file"] for entry in bundle.prompts.values()}
        self.tuned_captions = frozenset(self._tuned)

    def encode_text(self, chunk: PromptChunk) -> np.ndarray:
        """(T, D) text features of one chunk, read-only; cached by the chunk's token ids and mask."""
        key = chunk.key()
        features = self._text_cache.get(key)
        if features is not None:
            self._text_cache.move_to_end(key)
            return features
        tuned = self._tuned.get(chunk.caption)
        if tuned is not None:
            features = _load_tuned(tuned, chunk)
        else:
            features = self._stored_or_encoded(chunk, key)
        features.setflags(write=False)
        self._text_cache[key] = features
        if len(self._text_cache) > TEXT_CACHE_SIZE:
            self._text_cache.popitem(last=False)
        return features

    def _stored_or_encoded(self, chunk: PromptChunk, key: str) -> np.ndarray:
        features = self._store.get(key, len(chunk.input_ids)) if self._store else None
        if features is None:
            feed = {"input_ids": chunk.input_ids[None], "attention_mask": chunk.attention_mask[None]}
            features = self._run("text", feed)[0][0]
            if self._store:
                self._store.put(key, features)
        return features

    def backbone(self, images: np.ndarray) -> list[np.ndarray]:
        """FPN levels P3..P7 of a (B, 3, H, W) float32 batch, H and W multiples of 32."""
        return self._run("backbone", {"images": np.ascontiguousarray(images, dtype=np.float32)})

    def head(self, levels: list[np.ndarray], text_features: np.ndarray, text_mask: np.ndarray) -> HeadOutputs:
        """Fused head on backbone levels and (B, T, D) text features with their (B, T) mask."""
        feed: dict[str, np.ndarray] = dict(zip(LEVELS, levels, strict=True))
        feed["text_features"] = np.ascontiguousarray(text_features, dtype=np.float32)
        feed["text_mask"] = np.ascontiguousarray(text_mask, dtype=np.int64)
        boxes, centerness, token_logits = self._run("head", feed)
        return HeadOutputs(boxes, centerness, token_logits)

    def _run(self, graph: str, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        if graph not in self._sessions:  # the text session, first needed for a chunk in no cache
            self._sessions.update(_load_sessions(self.bundle, (graph,), self._device, self._threads))
        self.runs[graph] += 1
        return self._sessions[graph].run(None, feed)


def _load_sessions(bundle: Bundle, graphs: tuple[str, ...], device: str, threads: int | None) -> dict[str, Any]:
    """Sessions for ``graphs``. On CPU they load in parallel threads (ORT releases the GIL while it
    builds a session): 1.4-1.8x faster on 2 cores, most of ``glip detect``'s start-up. GPU
    providers load one after the other, so TensorRT engine builds do not compete for memory."""

    def load(graph: str) -> Any:
        return make_session(bundle.graph_path(graph), device, threads, bundle.manifest["graphs"][graph]["sha256"])

    if len(graphs) == 1 or providers_for(device) != ["CPUExecutionProvider"]:
        return {graph: load(graph) for graph in graphs}
    with ThreadPoolExecutor(len(graphs), thread_name_prefix="glip-session") as pool:
        return dict(zip(graphs, pool.map(load, graphs), strict=True))


def _load_tuned(path: Path, chunk: PromptChunk) -> np.ndarray:
    """Tuned text features stored in the bundle for this exact caption: a (T, D) float32 .npy."""
    try:
        features = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise BundleError(f"cannot read tuned prompt features {path}: {exc}") from None
    tokens = len(chunk.input_ids)
    if features.ndim != 2 or features.shape[0] != tokens:
        raise BundleError(f"tuned prompt features {path} have shape {features.shape}, expected ({tokens}, D)")
    return features.astype(np.float32)
