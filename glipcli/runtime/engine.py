"""ONNX Runtime execution of a bundle's three graphs (and its region namer's, if any), torch-free.

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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from glipcli.config import GLIPConfig
from glipcli.errors import BundleError
from glipcli.prompt import PromptChunk
from glipcli.runtime.bundle import GRAPHS, LEVELS, Bundle
from glipcli.runtime.sessions import make_session, providers_for
from glipcli.runtime.text_store import TextFeatureStore

TEXT_CACHE_SIZE = 512


@dataclass(frozen=True)
class DecodedHead:
    """The head graph's output, decoded per anchor (the PyTorch head's raw per-level tensors are
    glipcli.model.dyhead.HeadOutputs)."""

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

    def backbone(self, images: np.ndarray) -> list[np.ndarray]: ...

    def head(self, levels: list[np.ndarray], text_features: np.ndarray, text_mask: np.ndarray) -> DecodedHead: ...


class Engine:
    """The three ONNX graphs of a bundle, with a bounded LRU cache of text features (and the disk
    store behind it, unless ``text_store`` is False or ``GLIPCLI_TEXT_CACHE=0``)."""

    def __init__(
        self, bundle: Bundle, device: str = "auto", threads: int | None = None, text_store: bool = True
    ) -> None:
        self.bundle = bundle
        self.name = bundle.name
        self.config = bundle.config
        self._sessions = _Sessions(bundle, device, threads)
        digest = bundle.manifest["graphs"]["text"]["sha256"]
        self._store = TextFeatureStore.for_graph(digest) if text_store else None
        self.namer_config = bundle.namer
        self.runs: dict[str, int] = dict.fromkeys((*GRAPHS, "namer") if self.namer_config else GRAPHS, 0)
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

    def head(self, levels: list[np.ndarray], text_features: np.ndarray, text_mask: np.ndarray) -> DecodedHead:
        """Fused head on backbone levels and (B, T, D) text features with their (B, T) mask."""
        feed: dict[str, np.ndarray] = dict(zip(LEVELS, levels, strict=True))
        feed["text_features"] = np.ascontiguousarray(text_features, dtype=np.float32)
        feed["text_mask"] = np.ascontiguousarray(text_mask, dtype=np.int64)
        boxes, centerness, token_logits = self._run("head", feed)
        return DecodedHead(boxes, centerness, token_logits)

    def namer(self, crops: np.ndarray, text_features: np.ndarray) -> np.ndarray:
        """(N, T) token logits of the region namer for (N, 3, S, S) crops and one chunk's (T, D) word
        features (glipcli.rescore.word_features); only for a bundle with a namer (``namer_config``)."""
        feed = {
            "crops": np.ascontiguousarray(crops, np.float32),
            "text_features": np.ascontiguousarray(text_features, np.float32),
        }
        return self._run("namer", feed)[0]

    def _run(self, graph: str, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.runs[graph] += 1
        return self._sessions[graph].run(None, feed)


class _Sessions:
    """The bundle's sessions, each created once, the text session only when a chunk is in no cache.

    On CPU the image graphs start loading in background threads as the engine is made (ORT
    releases the GIL while it builds a session), so they load while the caller reads the
    tokenizer, the image and the prompt (and the text session, if needed), and the head's while
    the backbone runs: most of ``glip detect``'s start-up overlaps. A load that failed raises at
    first use. GPU providers load at once, one after the other, so TensorRT engine builds do not
    compete for memory.
    """

    def __init__(self, bundle: Bundle, device: str, threads: int | None) -> None:
        self._bundle, self._device, self._threads = bundle, device, threads
        self._ready: dict[str, Any] = {}
        self._pending: dict[str, Future[Any]] = {}
        images = ("backbone", "head")
        if providers_for(device) == ["CPUExecutionProvider"]:
            pool = ThreadPoolExecutor(len(images), thread_name_prefix="glip-session")
            self._pending = {graph: pool.submit(self._load, graph) for graph in images}
            pool.shutdown(wait=False)
        else:
            self._ready = {graph: self._load(graph) for graph in images}

    def __getitem__(self, graph: str) -> Any:
        if graph not in self._ready:
            pending = self._pending.pop(graph, None)
            self._ready[graph] = pending.result() if pending is not None else self._load(graph)
        return self._ready[graph]

    def __contains__(self, graph: str) -> bool:
        """Whether ``graph``'s session was created (and used)."""
        return graph in self._ready

    def _load(self, graph: str) -> Any:
        # The text graph runs once per prompt chunk (its features are kept, in memory and on disk),
        # so on CPU it loads as exported: on a 2-core AVX2 EPYC glip-nano's loads in 0.14 s and runs
        # a chunk in 0.02 s (its int8 rows scaled after use, glipcli.export.compact), where loading
        # and optimising took 0.12 s and a chunk 0.008 s but `glip detect` with a new prompt was
        # 0.1 s slower (1.14 s against 1.04); outputs within 2e-6 of the optimised graph's.
        optimise = graph != "text"
        digest = self._bundle.graph_sha256(graph)
        return make_session(self._bundle.graph_path(graph), self._device, self._threads, digest, optimise)


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
