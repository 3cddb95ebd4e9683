"""This machine's matrix-multiply peak as ONNX Runtime reaches it: the denominator of "achieved
GFLOP/s" in bench.ort_vs_torch.

One fp32 MatMul of two N x N matrices in an ONNX Runtime session with the benchmark's thread
count, best of several runs: 2 N^3 FLOPs over the fastest time. This is what MLAS's GEMM kernels
get from the CPU's FMA units, a practical peak (a little under the datasheet's, which no real
kernel reaches); a graph's share of it says how much of its time is dense arithmetic done well.

    python -m bench.peak --threads 2
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def gemm_peak_gflops(threads: int, n: int = 1024, runs: int = 7) -> float:
    """Best GFLOP/s of an N x N x N fp32 MatMul in ONNX Runtime with ``threads`` intra-op threads."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    def matrix(name: str) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, [n, n])

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm", [matrix("a"), matrix("b")], [matrix("c")]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9)  # ORT >= 1.16 reads 9
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {"a": rng.standard_normal((n, n), dtype=np.float32), "b": rng.standard_normal((n, n), dtype=np.float32)}
    session.run(None, feed)  # warm-up: packing buffers, thread pool
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feed)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n", type=int, default=1024)
    args = parser.parse_args()
    print(f"fp32 GEMM {args.n}^3, {args.threads} thread(s): {gemm_peak_gflops(args.threads, args.n):.1f} GFLOP/s")


if __name__ == "__main__":
    main()
