"""Lossless storage compaction of exported graphs.

Initializers whose values fp16 represents exactly are stored as fp16 and cast back to fp32 in
the graph; 2-D tables whose rows are exactly k * 2^e with |k| <= 127 are stored as int8 plus a
per-row scale and dequantised in the graph. The computation is unchanged bit for bit; ONNX
Runtime folds the casts at load. Weights of official checkpoints are not representable and stay
as they are; glip-nano's are rounded to be (glipcli.model.rounding).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MIN_ELEMENTS = 1024  # small tensors are not worth a Cast node


def _int8_rows(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Integers times a power-of-two scale per row (axis 0) or per column (axis 1: a Linear
    weight the exporter stored transposed for MatMul)."""
    if values.ndim != 2 or min(values.shape) < 16:
        return None
    for axis in (0, 1):
        peak = np.abs(values).max(axis=1 - axis).astype(np.float64)
        peak = np.maximum(peak, 2.0**-100)
        scale = np.exp2(np.ceil(np.log2(peak / 127.0))).astype(np.float32)
        q = values / (scale[:, None] if axis == 0 else scale[None, :])
        if np.array_equal(q, np.round(q)) and np.abs(q).max() <= 127:
            return q.astype(np.int8), scale, axis
    return None


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
            # Cast + Mul rather than DequantizeLinear: ONNX Runtime fuses a DequantizeLinear feeding a
            # MatMul into an int8 kernel that quantises the activations too, which is not exact.
            q, scale, axis = packed
            scale = scale[:, None] if axis == 0 else scale[None, :]
            kept += [
                numpy_helper.from_array(q, f"{init.name}__int8"),
                numpy_helper.from_array(scale, f"{init.name}__scale"),
            ]
            nodes += [
                helper.make_node(
                    "Cast",
                    [f"{init.name}__int8"],
                    [f"{init.name}__int8_as_float"],
                    to=TensorProto.FLOAT,
                    name=f"{init.name}__cast",
                ),
                helper.make_node(
                    "Mul",
                    [f"{init.name}__int8_as_float", f"{init.name}__scale"],
                    [init.name],
                    name=f"{init.name}__scale_mul",
                ),
            ]
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


def _expansion(graph: onnx.GraphProto) -> tuple[dict[str, np.ndarray], list[onnx.NodeProto], set[str]]:
    """The float32 values of the compactly stored weights (by the name the graph computes them
    under), the Cast/Mul nodes that compute them, and the initializers those nodes read."""
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    produced: dict[str, np.ndarray] = {}
    nodes, used = [], set()
    for node in graph.node:
        if node.name.endswith("__cast") and node.input[0] in values:
            produced[node.output[0]] = values[node.input[0]].astype(np.float32)
        elif node.name.endswith("__scale_mul") and node.input[0] in produced and node.input[1] in values:
            produced[node.output[0]] = produced.pop(node.input[0]) * values[node.input[1]]
        else:
            continue
        nodes.append(node)
        used.update(node.input)
    return produced, nodes, used


def stored_weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Every initializer as the graph computes with it: compactly stored ones expanded, so a
    weight reads the same whether or not its graph was compacted."""
    produced, _, used = _expansion(model.graph)
    plain = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer if init.name not in used}
    return {**plain, **produced}


def expand_graph(path: Path, dst: Path) -> None:
    """The inverse of :func:`compact_graph`: every compactly stored weight back as a float32
    initializer, for tools that expect plain weights (ONNX Runtime's quantiser)."""
    model = onnx.load(str(path))
    graph = model.graph
    produced, dropped_nodes, used = _expansion(graph)
    if not dropped_nodes:
        onnx.save(model, str(dst))
        return
    kept = [init for init in graph.initializer if init.name not in used]
    kept += [numpy_helper.from_array(v.astype(np.float32), name) for name, v in produced.items()]
    for node in dropped_nodes:
        graph.node.remove(node)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    onnx.save(model, str(dst))
