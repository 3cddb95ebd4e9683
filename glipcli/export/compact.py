"""Lossless storage compaction of exported graphs.

Initializers whose values fp16 represents exactly are stored as fp16 and cast back to fp32 in
the graph; 2-D tables whose rows are exactly k * 2^e with |k| <= 127 are stored as int8 plus a
per-row scale and dequantised in the graph. The computation is unchanged bit for bit; ONNX
Runtime folds the casts at load. Weights of official checkpoints are not representable and stay
as they are; glip-nano's are rounded to be (glipcli.model.rounding).

An int8 table's scale is applied where it costs least (:func:`_scale_after_use`): a word-embedding
table is gathered as int8 and only the prompt's rows are scaled, and a MatMul multiplies by the
int8 values and scales its output's columns. The scales are powers of two, so both are exact, and
neither the unoptimised session (which would otherwise expand 22M values on every run: glip-nano's
text graph ran in 0.095 s instead of 0.02) nor the optimiser (which folded the expanded table into
a 90 MB graph, 0.48 s to load instead of 0.12) pays for the whole table.
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
    _scale_after_use(graph)
    onnx.save(model, str(path))
    return before - path.stat().st_size


ROWS = ("__rows_q", "__rows_s", "__rows_cast", "__rows_mul")  # a gather of int8 rows, then their scales
SCALE_AFTER = "__scale_after"  # the Mul scaling a MatMul's output by the columns' scales


def _scale_after_use(graph: onnx.GraphProto) -> None:
    """Move each int8 table's scale past its only user where that is exact and cheaper:
    ``Gather(q * s, ids)`` -> ``Gather(q, ids) * Gather(s, ids)`` for per-row scales, and
    ``MatMul(x, q * s)`` -> ``MatMul(x, q) * s`` for per-column scales (powers of two)."""
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    dims = {init.name: list(init.dims) for init in graph.initializer}
    for mul in [n for n in graph.node if n.name.endswith("__scale_mul")]:
        weight, scale = mul.output[0], mul.input[1]
        base = mul.name[: -len("__scale_mul")]
        if len(users.get(weight, [])) != 1 or weight in {o.name for o in graph.output}:
            continue
        (user,) = users[weight]
        index = list(graph.node).index(user)
        int8, as_float = f"{base}__int8", mul.input[0]
        if user.op_type == "Gather" and user.input[0] == weight and _axis(user) == 0 and dims[scale][1] == 1:
            ids, out = user.input[1], user.output[0]
            rows = [
                helper.make_node(
                    "Gather", [int8, ids], [f"{base}__qrows"], axis=0, name=base + ROWS[0], doc_string=user.name
                ),
                helper.make_node("Gather", [scale, ids], [f"{base}__srows"], axis=0, name=base + ROWS[1]),
                helper.make_node(
                    "Cast", [f"{base}__qrows"], [f"{base}__frows"], to=TensorProto.FLOAT, name=base + ROWS[2]
                ),
                helper.make_node("Mul", [f"{base}__frows", f"{base}__srows"], [out], name=base + ROWS[3]),
            ]
            cast = next(n for n in graph.node if n.output and n.output[0] == as_float)
            for node in (user, mul, cast):
                graph.node.remove(node)
            for offset, node in enumerate(rows):
                graph.node.insert(index - 2 + offset, node)  # where the Gather was (two nodes before it went)
        elif user.op_type == "MatMul" and user.input[1] == weight and dims[scale][0] == 1:
            out = user.output[0]
            user.input[1], user.output[0] = as_float, f"{base}__unscaled"
            graph.node.insert(
                index + 1, helper.make_node("Mul", [f"{base}__unscaled", scale], [out], name=base + SCALE_AFTER)
            )
            graph.node.remove(mul)


def _axis(node: onnx.NodeProto) -> int:
    return next((a.i for a in node.attribute if a.name == "axis"), 0)


def _scale_before_use(graph: onnx.GraphProto) -> None:
    """Undo :func:`_scale_after_use`: every int8 table expanded by one Cast and Mul again."""
    nodes = list(graph.node)
    for node in nodes:
        if node.name.endswith(SCALE_AFTER):
            base = node.name[: -len(SCALE_AFTER)]
            matmul = next(n for n in graph.node if n.output and n.output[0] == node.input[0])
            as_float = matmul.input[1]
            matmul.input[1], matmul.output[0] = base, node.output[0]
            graph.node.remove(node)
            mul = helper.make_node("Mul", [as_float, f"{base}__scale"], [base], name=f"{base}__scale_mul")
            graph.node.insert(list(graph.node).index(matmul), mul)
        elif node.name.endswith(ROWS[0]):
            base = node.name[: -len(ROWS[0])]
            parts = {n.name: n for n in graph.node if n.name in {base + r for r in ROWS}}
            ids, out = node.input[1], parts[base + ROWS[3]].output[0]
            index = list(graph.node).index(node)
            for part in parts.values():
                graph.node.remove(part)
            restored = [
                helper.make_node(
                    "Cast", [f"{base}__int8"], [f"{base}__int8_as_float"], to=TensorProto.FLOAT, name=f"{base}__cast"
                ),
                helper.make_node(
                    "Mul", [f"{base}__int8_as_float", f"{base}__scale"], [base], name=f"{base}__scale_mul"
                ),
                helper.make_node("Gather", [base, ids], [out], axis=0, name=node.doc_string or f"{base}__gather"),
            ]
            for offset, restored_node in enumerate(restored):
                graph.node.insert(index + offset, restored_node)


def _expansion(graph: onnx.GraphProto) -> tuple[dict[str, np.ndarray], list[onnx.NodeProto], set[str]]:
    """The float32 values of the compactly stored weights (by the name the graph computes them
    under), the Cast/Mul nodes that compute them, and the initializers those nodes read. The graph
    is first brought back to one Cast and Mul per table (:func:`_scale_before_use`), in place."""
    _scale_before_use(graph)
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
