"""int8 graphs for CPUs: dynamic quantisation of the matrix products (fp16: see half.py)."""

from __future__ import annotations

from pathlib import Path


def to_int8(src: Path, dst: Path) -> None:
    """Dynamic quantisation of the matrix products (weights int8, activations quantised per call)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(src),
        str(dst),
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul", "Gemm"],
        per_channel=False,
    )
