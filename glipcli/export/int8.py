"""int8 graphs for CPUs: dynamic quantisation of the matrix products (fp16: see half.py)."""

from __future__ import annotations

import tempfile
from pathlib import Path


def to_int8(src: Path, dst: Path) -> None:
    """Dynamic quantisation of the matrix products (weights int8, activations quantised per call).

    Compactly stored weights (glip export --compact) are expanded first: the quantiser reads only
    plain initializers."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from glipcli.export.compact import expand_graph

    with tempfile.TemporaryDirectory(prefix="glip-int8-") as tmp:
        plain = Path(tmp) / "plain.onnx"
        expand_graph(src, plain)
        quantize_dynamic(
            str(plain),
            str(dst),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul", "Gemm"],
            per_channel=False,
        )
