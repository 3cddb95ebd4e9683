"""Lossless storage compaction of exported graphs.

Initializers whose values fp16 represents exactly are stored as fp16 and cast back to fp32 in
the graph; 2-D tables whose rows are exactly k * 2^e with |k| <= 127 are stored as int8 plus a
per-row scale and dequantised in the graph. The computation is unchanged bit for bit; ONNX
Runtime folds the casts at load. Weights of official checkpoints are not representable and stay
as they are; glip-nano's are rounded to be (glipcli.model.compact).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MIN_ELEMENTS = 1024  # small tensors are not worth a Cast node


def _int8_rows(values: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    if values.ndim != 2 or values.shape[1] < 16:
        return None
    peak = np.abs(values).max(axis=1).astype(np.float64)
    peak = np.maximum(peak, 2.0**-100)
    scale = np.exp2(np.ceil(np.log2(peak / 127.0))).astype(np.float32)
    q = values / scale[:, None]
    if not np.array_equal(q, np.round(q)) or np.abs(q).max() > 127:
        return None
    return q.astype(np.int8), scale


def compact_graph(path: Path) -> int:
    """Rewrite ``path`` in place; returns the bytes saved."""
    model = onnx.load(str(path))
    graph = model.graph
    before = path.stat().st_size
    kept, nodes = [], []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or np.prod(init.dims) < MIN_ELEMENTS:
            kept.append(init)
            continue
        values = numpy_helper.to_array(init)
        packed = _int8_rows(values)
        if packed is not None:
            q, scale = packed
            kept += [
                numpy_helper.from_array(q, f"{init.name}__int8"),
                numpy_helper.from_array(scale, f"{init.name}__scale"),
            ]
            zero = numpy_helper.from_array(np.zeros_like(scale, dtype=np.int8), f"{init.name}__zero")
            kept.append(zero)
            nodes.append(
                helper.make_node(
                    "DequantizeLinear",
                    [f"{init.name}__int8", f"{init.name}__scale", zero.name],
                    [init.name],
                    axis=0,
                    name=f"{init.name}__dequantize",
                )
            )
        elif np.array_equal(values.astype(np.float16).astype(np.float32), values):
            kept.append(numpy_helper.from_array(values.astype(np.float16), f"{init.name}__fp16"))
            nodes.append(
                helper.make_node(
                    "Cast", [f"{init.name}__fp16"], [init.name], to=TensorProto.FLOAT, name=f"{init.name}__cast"
                )
            )
        else:
            kept.append(init)
    if not nodes:
        return 0
    del graph.initializer[:]
    graph.initializer.extend(kept)
    for node in reversed(nodes):
        graph.node.insert(0, node)
    onnx.save(model, str(path))
    return before - path.stat().st_size
