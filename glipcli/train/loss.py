"""GLIP's training objective: ATSS anchor assignment and the unified grounding loss.

Same semantics as the official ``ATSSLossComputation`` with ``USE_DOT_PRODUCT_TOKEN_LOSS``
(maskrcnn_benchmark/modeling/rpn/loss.py), for one process:

* ATSS: per GT and per pyramid level the ``topk`` anchors whose centres are nearest the GT
  centre are candidates; a candidate is positive if its IoU reaches mean + std of the GT's
  candidate IoUs and its centre lies inside the GT (by more than 0.01 px); an anchor positive
  for several GTs goes to the one with the highest IoU.
* token loss: sigmoid focal loss (alpha 0.25, gamma 2) between every anchor's dot-product
  logits and the positive-map row of its GT (zeros for background), over valid text tokens
  only, summed and divided by the number of positive anchors. Background targets are all zero:
  the official code also writes 1 into the last token column (an unfinished "[NoObj]" slot),
  but with captions padded to MAX_QUERY_LEN that column is padding and the text mask drops it,
  so zeros are what GLIP trains in practice, and stay right when captions are padded only to
  the longest one (there the last column can be a real token).
* box loss: GIoU of the decoded prediction and the GT, weighted by the centerness target,
  divided by the sum of the centerness targets, times ``reg_weight``.
* centerness loss: binary cross-entropy of the centerness logits against the centerness
  targets of the positive anchors, divided by the number of positive anchors.

Boxes use the detectron/maskrcnn ``+1`` pixel conventions (IoU, box coder), as GLIP does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from glipcli.errors import DataError
from glipcli.model.anchors import decode_boxes, encode_boxes
from glipcli.model.dyhead import HeadOutputs

_INSIDE_MARGIN = 0.01  # official is_in_gts threshold on min(l, t, r, b)


@dataclass
class GroundingTarget:
    """The boxes of one image and the caption tokens each box is grounded to.

    A box whose ``positive_map`` row is all zero (its phrase was truncated away) is kept, as in
    GLIP: it still trains box regression and centerness, and its anchors learn "no token".
    """

    boxes: Tensor  # (n, 4) float32 xyxy in the padded input's pixel coordinates
    positive_map: Tensor  # (n, T) float32 0/1
    # Names the boxes compete among, as token weights of the model's phrase score (P, T), and each
    # box's own name (n,), -1 for none: the name ranking term (name_rank_loss). Empty: no such term.
    name_weights: Tensor | None = None
    box_names: Tensor | None = None


@dataclass(frozen=True)
class LossConfig:
    """Defaults are the official ones (MODEL.ATSS.*, MODEL.DYHEAD.FUSE_CONFIG.*)."""

    topk: int = 9  # ATSS.TOPK (one anchor per location)
    focal_alpha: float = 0.25  # FUSE_CONFIG.TOKEN_ALPHA
    focal_gamma: float = 2.0  # FUSE_CONFIG.TOKEN_GAMMA
    reg_weight: float = 2.0  # ATSS.REG_LOSS_WEIGHT, applied to the GIoU loss only
    token_weight: float = 1.0  # FUSE_CONFIG.DOT_PRODUCT_TOKEN_LOSS_WEIGHT
    # Ours, not GLIP's: the weight of name_rank_loss, which only targets carrying competing names
    # have (per-word targets on labelled data, glipcli.train.targets); pre-training has none.
    name_weight: float = 1.0
    name_temperature: float = 0.5  # below 1 the ranking looks at close rivals only (see name_rank_loss)


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """(N, 4) x (M, 4) xyxy -> (N, M) IoU with maskrcnn's inclusive (+1) widths."""
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt + 1).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def _centres(boxes: Tensor) -> Tensor:
    return torch.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], dim=1)


def atss_assign(anchors: list[Tensor], boxes: Tensor, cfg: LossConfig = LossConfig()) -> tuple[Tensor, Tensor]:
    """Match the anchors of one image (per level (A_l, 4), P3 first) to its GT boxes (n, 4).

    Returns ``matched_gt`` (A,) long, the GT index per anchor or -1 for background, and
    ``reg_targets`` (A, 4), the matched GT encoded against each anchor (zeros for background).
    """
    flat = torch.cat(anchors).to(boxes.dtype)
    num_anchors, num_gt = flat.shape[0], boxes.shape[0]
    matched = torch.full((num_anchors,), -1, dtype=torch.long, device=flat.device)
    reg_targets = torch.zeros_like(flat)
    if num_gt == 0:
        return matched, reg_targets
    ious = box_iou(flat, boxes)  # (A, n)
    anchor_centres = _centres(flat)
    distances = (anchor_centres[:, None, :] - _centres(boxes)[None, :, :]).pow(2).sum(-1).sqrt()
    candidates, start = [], 0
    for level in anchors:
        end = start + level.shape[0]
        k = min(cfg.topk, level.shape[0])
        candidates.append(distances[start:end].topk(k, dim=0, largest=False).indices + start)
        start = end
    cand = torch.cat(candidates)  # (K, n) anchor indices, distinct within each column
    cand_ious = ious.gather(0, cand)
    threshold = cand_ious.mean(0) + cand_ious.std(0)
    cx, cy = anchor_centres[cand, 0], anchor_centres[cand, 1]
    inside = torch.stack([cx - boxes[:, 0], cy - boxes[:, 1], boxes[:, 2] - cx, boxes[:, 3] - cy]).amin(0)
    is_pos = (cand_ious >= threshold) & (inside > _INSIDE_MARGIN)
    positive = torch.zeros_like(ious, dtype=torch.bool).scatter_(0, cand, is_pos)
    best_gt = torch.where(positive, ious, torch.full_like(ious, -float("inf"))).max(dim=1).indices
    fg = positive.any(dim=1)
    matched[fg] = best_gt[fg]
    reg_targets[fg] = encode_boxes(boxes[best_gt[fg]], flat[fg])
    return matched, reg_targets


def token_focal_loss(logits: Tensor, targets: Tensor, text_mask: Tensor, alpha: float, gamma: float) -> Tensor:
    """Summed binary focal loss over (B, A, T) logits, counting only tokens with ``text_mask`` 1."""
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return (loss * (text_mask > 0).unsqueeze(1).to(loss.dtype)).sum()


def centerness_targets(boxes: Tensor, anchors: Tensor) -> Tensor:
    """sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b)) from each anchor centre to its box."""
    centres = _centres(anchors)
    left_right = torch.stack([centres[:, 0] - boxes[:, 0], boxes[:, 2] - centres[:, 0]], dim=1)
    top_bottom = torch.stack([centres[:, 1] - boxes[:, 1], boxes[:, 3] - centres[:, 1]], dim=1)
    ratio_x = left_right.amin(1) / left_right.amax(1)
    ratio_y = top_bottom.amin(1) / top_bottom.amax(1)
    return torch.sqrt(ratio_x * ratio_y)


def giou_loss(pred: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """Summed ``weight * (1 - GIoU)`` of (N, 4) xyxy boxes; areas without +1, as official GIoULoss."""
    px1, py1 = pred[:, 0], pred[:, 1]
    px2, py2 = torch.max(px1, pred[:, 2]), torch.max(py1, pred[:, 3])
    tx1, ty1, tx2, ty2 = target.unbind(1)
    pred_area = (px2 - px1) * (py2 - py1)
    target_area = (tx2 - tx1) * (ty2 - ty1)
    inter_w = (torch.min(px2, tx2) - torch.max(px1, tx1)).clamp(min=0)
    inter_h = (torch.min(py2, ty2) - torch.max(py1, ty1)).clamp(min=0)
    inter = inter_w * inter_h
    enclosing = (torch.max(px2, tx2) - torch.min(px1, tx1)) * (torch.max(py2, ty2) - torch.min(py1, ty1)) + 1e-7
    union = pred_area + target_area - inter + 1e-7
    giou = inter / union - (enclosing - union) / enclosing
    return ((1 - giou) * weight).sum()


def _check_target(index: int, target: GroundingTarget, num_tokens: int) -> None:
    boxes, pmap = target.boxes, target.positive_map
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"target {index}: boxes must be (n, 4), got {tuple(boxes.shape)}")
    if pmap.ndim != 2 or pmap.shape != (boxes.shape[0], num_tokens):
        raise ValueError(
            f"target {index}: positive_map must be ({boxes.shape[0]}, {num_tokens}), got {tuple(pmap.shape)}"
        )
    if not torch.isfinite(boxes).all() or (boxes[:, 2:] < boxes[:, :2]).any():
        raise DataError(f"image {index}: boxes must be finite xyxy with x2 >= x1 and y2 >= y1")


def glip_loss(
    outputs: HeadOutputs,
    anchors: list[Tensor],
    targets: list[GroundingTarget],
    text_mask: Tensor,
    cfg: LossConfig = LossConfig(),
) -> dict[str, Tensor]:
    """GLIP's grounding loss for a batch; ``anchors`` per level are shared by all images.

    Images without boxes contribute only negatives. Keys: ``loss_token`` (dot-product token
    focal loss), ``loss_reg`` (weighted GIoU), ``loss_centerness``.
    """
    batch = outputs.dot_product_logits[0].shape[0]
    if len(targets) != batch:
        raise ValueError(f"{len(targets)} targets for a batch of {batch} images")
    # The official loss runs under autocast with inputs cast to float32.
    logits = torch.cat(outputs.dot_product_logits, dim=1).float()  # (B, A, T)
    deltas = torch.cat([r.float().permute(0, 2, 3, 1).reshape(batch, -1, 4) for r in outputs.bbox_regression], 1)
    centerness = torch.cat([c.float().reshape(batch, -1) for c in outputs.centerness], dim=1)
    flat_anchors = torch.cat(anchors).to(logits)
    num_tokens = logits.shape[2]

    token_targets = torch.zeros_like(logits)
    matched_all, reg_all = [], []
    for i, target in enumerate(targets):
        _check_target(i, target, num_tokens)
        matched, reg = atss_assign(anchors, target.boxes.to(logits), cfg)
        fg = matched >= 0
        token_targets[i, fg] = target.positive_map.to(logits)[matched[fg]]
        matched_all.append(matched)
        reg_all.append(reg)
    positive = torch.stack(matched_all) >= 0  # (B, A)
    num_pos = max(float(positive.sum()), 1.0)

    loss_token = token_focal_loss(logits, token_targets, text_mask, cfg.focal_alpha, cfg.focal_gamma) / num_pos

    pos_deltas = deltas[positive]
    pos_centerness = centerness[positive]
    if pos_deltas.shape[0] == 0:
        # Empty sums: zero, but still attached to the graph.
        loss_reg, loss_centerness = pos_deltas.sum(), pos_centerness.sum()
    else:
        pos_anchors = flat_anchors.expand(batch, -1, -1)[positive]
        gt_boxes = decode_boxes(torch.stack(reg_all)[positive], pos_anchors)
        ctr_targets = centerness_targets(gt_boxes, pos_anchors)
        pred_boxes = decode_boxes(pos_deltas, pos_anchors)
        loss_reg = giou_loss(pred_boxes, gt_boxes, ctr_targets) / ctr_targets.sum()
        loss_centerness = F.binary_cross_entropy_with_logits(pos_centerness, ctr_targets, reduction="sum") / num_pos
    losses = {
        "loss_token": loss_token * cfg.token_weight,
        "loss_reg": loss_reg * cfg.reg_weight,
        "loss_centerness": loss_centerness,
    }
    if cfg.name_weight > 0 and any(t.name_weights is not None and len(t.name_weights) for t in targets):
        losses["loss_names"] = name_rank_loss(logits, matched_all, targets, cfg.name_temperature) * cfg.name_weight
    return losses


def name_rank_loss(
    logits: Tensor, matched: list[Tensor], targets: list[GroundingTarget], temperature: float = 1.0
) -> Tensor:
    """Cross-entropy of each positive anchor's own name among the names it competes with, scored
    as the model scores phrases: log score = log sigmoid(token logits) @ name weights (for
    glip-nano the geometric mean of its words' probabilities), softmax over the names' log scores
    divided by ``temperature``. Divided by the number of anchors it scores.

    Per-word targets teach each word where it holds but not that "red hexagon" must outscore "red
    circle" on a red hexagon, which is what COCO mAP and one-label-per-object output rank. At
    ``temperature`` 1 the softmax normalises raw scores, so names sharing no word with the object
    (scores near 0.01, seven of them against 0.5) still carry loss; at 0.5 they weigh their square
    and only close rivals count. Prompt tuning glip-nano (K = 5, 100 steps, mAP@0.5 on fresh sets,
    bench/probes/tune_phrase_loss.py): the 56 trained names +0.019 / +0.025 with per-word targets
    alone, +0.034 / +0.036 with this term at temperature 1, +0.039 / +0.044 at 0.5; the 8
    held-out names +0.036 alone, +0.015 at temperature 1, +0.036 at 0.5.
    """
    total, count = logits.new_zeros(()), 0
    for i, (assigned, target) in enumerate(zip(matched, targets, strict=True)):
        if target.name_weights is None or target.box_names is None or not len(target.name_weights):
            continue
        own = target.box_names.to(assigned.device)
        fg = assigned >= 0
        fg[fg.clone()] = own[assigned[fg]] >= 0
        if not fg.any():
            continue
        weights = target.name_weights.to(logits)  # (P, T)
        log_scores = F.logsigmoid(logits[i, fg]) @ weights.T  # (n, P)
        log_scores = log_scores.masked_fill(weights.sum(1) <= 0, -float("inf"))  # names truncated away
        total = total + F.cross_entropy(log_scores / temperature, own[assigned[fg]], reduction="sum")
        count += int(fg.sum())
    return total / max(count, 1)
