"""The three ONNX graphs as thin adapters over the one PyTorch model (detectron2's
TracingAdapter idea): the exported graphs run the same module code as eager PyTorch, except two
export-time forms of the same functions: the deformable convolution (optionally ONNX's
DeformConv) and the fusion attention, reassociated (glipcli.export.fusion).

- text:     input_ids (B, T), attention_mask (B, T)          -> text_features (B, T, D)
- backbone: images (B, 3, H, W), H and W multiples of 32      -> p3 .. p7 (B, C, H_l, W_l)
- head:     p3 .. p7, text_features (B, T, D), text_mask (B, T) -> boxes (B, N, 4) xyxy,
            centerness (B, N) logits, token_logits (B, N, T)
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor, nn

from glipcli.export.fusion import factored_fusion
from glipcli.model.deform import ModulatedDeformConv, modulated_deform_conv2d
from glipcli.model.glip import GLIP
from glipcli.runtime.bundle import LEVELS

OPSET = 19
DEFORM_IMPLEMENTATIONS = ("grid_sample", "deform_conv")


class _Adapter(nn.Module):
    """Graph inputs and outputs are fp32 whatever the compute dtype (fp16 graphs cast inside)."""

    def __init__(self, model: GLIP, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.model = model
        self.dtype = dtype


class TextGraph(_Adapter):
    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.model.encode_text(input_ids, attention_mask).float()


class BackboneGraph(_Adapter):
    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        return tuple(p.float() for p in self.model.encode_image(images.to(self.dtype)))


class HeadGraph(_Adapter):
    def forward(
        self, p3: Tensor, p4: Tensor, p5: Tensor, p6: Tensor, p7: Tensor, text_features: Tensor, text_mask: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        levels = [p.to(self.dtype) for p in (p3, p4, p5, p6, p7)]
        out = self.model.head(levels, text_features.to(self.dtype), text_mask)
        out.bbox_regression = [t.float() for t in out.bbox_regression]  # decode in fp32
        out.centerness = [t.float() for t in out.centerness]
        out.dot_product_logits = [t.float() for t in out.dot_product_logits]
        return self.model.decode(out)


# ---------------------------------------------------------------------------------------------
# Native ONNX DeformConv: a custom op whose eager kernel is our grid_sample implementation and
# whose TorchScript symbolic emits the standard DeformConv node (opset >= 19).
# ---------------------------------------------------------------------------------------------


@torch.library.custom_op("glipcli::modulated_deform_conv", mutates_args=())
def _deform_op(
    x: Tensor, weight: Tensor, offset: Tensor, mask: Tensor, bias: Tensor, stride: int, padding: int
) -> Tensor:
    return modulated_deform_conv2d(x, offset, mask, weight, bias, stride, padding)


@_deform_op.register_fake
def _deform_op_fake(x, weight, offset, mask, bias, stride, padding):  # noqa: ANN001, ANN202
    return x.new_empty(x.shape[0], weight.shape[0], offset.shape[-2], offset.shape[-1])


def _deform_symbolic(g, x, weight, offset, mask, bias, stride, padding):  # noqa: ANN001, ANN202
    from torch.onnx import symbolic_helper

    s = symbolic_helper._get_const(stride, "i", "stride")
    p = symbolic_helper._get_const(padding, "i", "padding")
    return g.op(
        "DeformConv",
        x,
        weight,
        offset,
        bias,
        mask,
        dilations_i=[1, 1],
        group_i=1,
        kernel_shape_i=[3, 3],
        offset_group_i=1,
        pads_i=[p, p, p, p],
        strides_i=[s, s],
    )


torch.onnx.register_custom_op_symbolic("glipcli::modulated_deform_conv", _deform_symbolic, OPSET)


@contextlib.contextmanager
def deform_implementation(model: nn.Module, name: str) -> Iterator[None]:
    """Route every deformable conv of ``model`` through ONNX's DeformConv while exporting."""
    if name not in DEFORM_IMPLEMENTATIONS:
        raise ValueError(f"unknown deformable conv implementation {name!r}")
    convs = [m for m in model.modules() if isinstance(m, ModulatedDeformConv)]
    originals = [m.forward for m in convs]
    if name == "deform_conv":
        for conv in convs:
            conv.forward = _native_forward(conv)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for conv, forward in zip(convs, originals):
            conv.forward = forward  # type: ignore[method-assign]


def _native_forward(conv: ModulatedDeformConv):  # noqa: ANN202
    def forward(x: Tensor, offset: Tensor, mask: Tensor) -> Tensor:
        return torch.ops.glipcli.modulated_deform_conv(
            x, conv.weight, offset, mask, conv.bias, conv.stride, conv.padding
        )

    return forward


# ---------------------------------------------------------------------------------------------


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str], axes: dict) -> None:
    module.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings about shape arithmetic are expected
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=axes,
            do_constant_folding=True,
        )


def export_text(
    model: GLIP, path: Path, sample_ids: Tensor, sample_mask: Tensor, dtype: torch.dtype = torch.float32
) -> None:
    tokens = {0: "batch", 1: "tokens"}
    _export(
        TextGraph(model, dtype),
        (sample_ids, sample_mask),
        path,
        ["input_ids", "attention_mask"],
        ["text_features"],
        {"input_ids": tokens, "attention_mask": tokens, "text_features": tokens},
    )


def export_backbone(model: GLIP, path: Path, sample_images: Tensor, dtype: torch.dtype = torch.float32) -> None:
    axes = {"images": {0: "batch", 2: "height", 3: "width"}}
    axes.update({n: {0: "batch", 2: f"{n}_height", 3: f"{n}_width"} for n in LEVELS})
    _export(BackboneGraph(model, dtype), (sample_images,), path, ["images"], list(LEVELS), axes)


def export_head(
    model: GLIP,
    path: Path,
    sample_levels: list[Tensor],
    sample_text: Tensor,
    sample_mask: Tensor,
    deform: str,
    dtype: torch.dtype = torch.float32,
) -> None:
    axes = {n: {0: "batch", 2: f"{n}_height", 3: f"{n}_width"} for n in LEVELS}
    axes.update(
        {
            "text_features": {0: "batch", 1: "tokens"},
            "text_mask": {0: "batch", 1: "tokens"},
            "boxes": {0: "batch", 1: "anchors"},
            "centerness": {0: "batch", 1: "anchors"},
            "token_logits": {0: "batch", 1: "anchors", 2: "tokens"},
        }
    )
    with deform_implementation(model, deform), factored_fusion(model):
        _export(
            HeadGraph(model, dtype),
            (*sample_levels, sample_text, sample_mask),
            path,
            [*LEVELS, "text_features", "text_mask"],
            ["boxes", "centerness", "token_logits"],
            axes,
        )
