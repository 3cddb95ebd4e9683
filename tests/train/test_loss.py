"""GLIP's training objective: ATSS assignment, the token focal loss, GIoU, centerness, and that
the whole objective trains the model."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
import torch

from glipcli.config import GLIPConfig, HeadConfig, LanguageConfig, SwinConfig
from glipcli.errors import DataError
from glipcli.model.anchors import decode_boxes
from glipcli.model.dyhead import HeadOutputs
from glipcli.model.glip import GLIP
from glipcli.train.loss import (
    GroundingTarget,
    LossConfig,
    atss_assign,
    box_iou,
    centerness_targets,
    giou_loss,
    glip_loss,
    token_focal_loss,
)


def grid_anchors(n: int, stride: int, size: int) -> torch.Tensor:
    """n x n square anchors, row-major, centred on the cells, with the +1 width convention."""
    c = torch.arange(n, dtype=torch.float32) * stride + stride / 2
    cy, cx = torch.meshgrid(c, c, indexing="ij")
    cx, cy = cx.reshape(-1), cy.reshape(-1)
    h = (size - 1) / 2
    return torch.stack([cx - h, cy - h, cx + h, cy + h], dim=1)


# ---------------------------------------------------------------------------------------------
# ATSS
# ---------------------------------------------------------------------------------------------


def test_box_iou_uses_inclusive_widths():
    a = torch.tensor([[0.0, 0.0, 9.0, 9.0]])  # 10 x 10 pixels
    b = torch.tensor([[5.0, 0.0, 14.0, 9.0], [10.0, 0.0, 19.0, 9.0]])  # half overlap, touching
    assert torch.allclose(box_iou(a, b), torch.tensor([[50 / 150, 0.0]]))


def test_atss_picks_the_level_that_fits_each_box():
    # Level 0: 4x4 anchors of 16 px (stride 16); level 1: 2x2 anchors of 32 px (stride 32).
    levels = [grid_anchors(4, 16, 16), grid_anchors(2, 32, 32)]
    large = levels[1][0]  # exactly the top-left level-1 anchor (flat index 16)
    small = levels[0][15]  # exactly the bottom-right level-0 anchor
    matched, reg = atss_assign(levels, torch.stack([large, small]))
    expected = torch.full((20,), -1)
    expected[16], expected[15] = 0, 1
    assert matched.tolist() == expected.tolist()
    assert torch.allclose(reg[15], torch.zeros(4), atol=1e-6) and torch.allclose(reg[16], torch.zeros(4), atol=1e-6)


def test_atss_spreads_a_box_over_the_anchors_around_its_centre():
    # A 32 px box centred between four 16 px anchors: the four have equal IoU, so with four
    # candidates std is 0 and all reach the mean.
    anchors = grid_anchors(4, 16, 16)
    box = torch.tensor([[16.5, 16.5, 47.5, 47.5]])  # centre (32, 32); anchors 5, 6, 9, 10 lie inside
    matched, _ = atss_assign([anchors], box, LossConfig(topk=4))
    assert sorted(torch.nonzero(matched >= 0).flatten().tolist()) == [5, 6, 9, 10]


def test_atss_requires_the_anchor_centre_inside_the_box():
    anchors = torch.tensor([[0.0, 0.0, 63.0, 63.0], [64.0, 0.0, 127.0, 63.0], [128.0, 0.0, 191.0, 63.0]])
    # Anchor 0 is the only one overlapping, so its IoU passes mean + std; its centre x is 31.5.
    outside = torch.tensor([[34.0, 0.0, 63.0, 63.0]])
    inside = torch.tensor([[28.0, 0.0, 63.0, 63.0]])
    assert atss_assign([anchors], outside)[0].tolist() == [-1, -1, -1]
    assert atss_assign([anchors], inside)[0].tolist() == [0, -1, -1]


def test_atss_gives_a_shared_anchor_to_the_box_with_higher_iou():
    anchors = grid_anchors(4, 16, 16)
    exact = anchors[5]  # IoU 1 with anchor 5
    wider = anchors[5] + torch.tensor([-2.0, -2.0, 2.0, 2.0])  # IoU 0.64, also positive there
    matched, _ = atss_assign([anchors], torch.stack([wider, exact]))
    assert matched[5].item() == 1
    assert atss_assign([anchors], wider[None])[0][5].item() == 0  # alone, it would take it


def test_atss_without_boxes_is_all_background():
    levels = [grid_anchors(4, 16, 16), grid_anchors(2, 32, 32)]
    matched, reg = atss_assign(levels, torch.zeros(0, 4))
    assert matched.shape == (20,) and (matched == -1).all()
    assert reg.shape == (20, 4) and (reg == 0).all()


def reference_atss(levels: list[torch.Tensor], boxes: torch.Tensor, topk: int) -> list[int]:
    """ATSS written plainly, one GT and one level at a time, with Python floats."""
    anchors = torch.cat(levels).tolist()
    ious = box_iou(torch.cat(levels), boxes).tolist()

    def centre(b):
        return (b[0] + b[2]) / 2, (b[1] + b[3]) / 2

    positives: dict[int, list[int]] = {}
    for g, box in enumerate(boxes.tolist()):
        gx, gy = centre(box)
        cands, start = [], 0
        for level in levels:
            idx = list(range(start, start + len(level)))
            idx.sort(key=lambda a: math.dist(centre(anchors[a]), (gx, gy)))
            cands += idx[:topk]
            start += len(level)
        vals = [ious[a][g] for a in cands]
        thresh = statistics.mean(vals) + statistics.stdev(vals)
        for a in cands:
            ax, ay = centre(anchors[a])
            inside = min(ax - box[0], ay - box[1], box[2] - ax, box[3] - ay) > 0.01
            if ious[a][g] >= thresh and inside:
                positives.setdefault(a, []).append(g)
    return [max(positives[a], key=lambda g: ious[a][g]) if a in positives else -1 for a in range(len(anchors))]


@pytest.mark.parametrize("seed", range(5))
def test_atss_matches_a_plain_reference_on_random_scenes(seed):
    g = torch.Generator().manual_seed(seed)
    levels = [grid_anchors(8, 8, 32), grid_anchors(4, 16, 64), grid_anchors(2, 32, 128)]
    n = 1 + seed
    xy = torch.rand(n, 2, generator=g) * 48
    wh = 4 + torch.rand(n, 2, generator=g) * 40
    boxes = torch.cat([xy, xy + wh], dim=1)
    matched, reg = atss_assign(levels, boxes)
    assert matched.tolist() == reference_atss(levels, boxes, topk=9)
    assert (matched >= 0).sum() >= n - 1  # a scene where ATSS matches nothing would test nothing
    # Regression targets decode back to the matched box; background rows stay zero.
    fg = matched >= 0
    flat = torch.cat(levels)
    assert torch.allclose(decode_boxes(reg[fg], flat[fg]), boxes[matched[fg]], atol=1e-4)
    assert (reg[~fg] == 0).all()


# ---------------------------------------------------------------------------------------------
# Loss terms
# ---------------------------------------------------------------------------------------------


def test_token_focal_loss_matches_the_formula_per_element():
    logits = torch.tensor([[[2.0, -1.0, 0.5, 3.0], [-2.0, 0.0, 1.5, -4.0], [0.3, -0.7, 2.2, 9.0]]])
    targets = torch.tensor([[[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]])
    mask = torch.tensor([[1, 1, 1, 0]])  # the last token is padding and must not count
    alpha, gamma = 0.25, 2.0
    expected = 0.0
    for a in range(3):
        for t in range(3):
            x, y = logits[0, a, t].item(), targets[0, a, t].item()
            p = 1 / (1 + math.exp(-x))
            if y == 1:
                expected += -alpha * (1 - p) ** gamma * math.log(p)
            else:
                expected += -(1 - alpha) * p**gamma * math.log(1 - p)
    got = token_focal_loss(logits, targets, mask, alpha, gamma)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_centerness_target_by_hand():
    anchors = torch.tensor([[5.0, 5.0, 15.0, 15.0]])  # centre (10, 10)
    box = torch.tensor([[0.0, 0.0, 40.0, 20.0]])  # l 10, r 30, t 10, b 10
    assert centerness_targets(box, anchors).item() == pytest.approx(math.sqrt(1 / 3))


def test_giou_loss_by_hand():
    target = torch.tensor([[20.0, 0.0, 30.0, 10.0]])
    same = giou_loss(target.clone(), target, torch.ones(1))
    disjoint = giou_loss(torch.tensor([[0.0, 0.0, 10.0, 10.0]]), target, torch.ones(1))  # enclosing 300, union 200
    half = giou_loss(torch.tensor([[25.0, 0.0, 35.0, 10.0]]), target, torch.tensor([0.5]))  # IoU 50/150
    # An inverted prediction collapses to zero width: union 100, enclosing 200.
    inverted = giou_loss(torch.tensor([[10.0, 0.0, 5.0, 10.0]]), target, torch.ones(1))
    assert same.item() == pytest.approx(0.0, abs=1e-6)
    assert inverted.item() == pytest.approx(1.5)
    assert disjoint.item() == pytest.approx(1 + 100 / 300)
    assert half.item() == pytest.approx(0.5 * (1 - 50 / 150))


# ---------------------------------------------------------------------------------------------
# glip_loss on hand-made head outputs
# ---------------------------------------------------------------------------------------------

LEVELS = [grid_anchors(4, 16, 32), grid_anchors(2, 32, 64)]


def fake_outputs(batch: int, num_tokens: int, seed: int = 0) -> HeadOutputs:
    g = torch.Generator().manual_seed(seed)
    reg = [torch.randn(1, 4, s, s, generator=g).repeat(batch, 1, 1, 1).requires_grad_() for s in (4, 2)]
    ctr = [torch.randn(1, 1, s, s, generator=g).repeat(batch, 1, 1, 1).requires_grad_() for s in (4, 2)]
    dot = [torch.randn(1, s * s, num_tokens, generator=g).repeat(batch, 1, 1).requires_grad_() for s in (4, 2)]
    return HeadOutputs(reg, ctr, dot, [], [])


def one_box_target() -> GroundingTarget:
    pmap = torch.tensor([[0.0, 1.0, 1.0, 0.0, 0.0]])
    return GroundingTarget(torch.tensor([[6.0, 10.0, 40.0, 30.0]]), pmap)


def test_token_loss_is_the_focal_sum_over_positive_anchors():
    out = fake_outputs(1, 5)
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    target = one_box_target()
    losses = glip_loss(out, LEVELS, [target], mask)
    matched, _ = atss_assign(LEVELS, target.boxes)
    logits = torch.cat(out.dot_product_logits, 1)[0]
    expected, num_pos = 0.0, int((matched >= 0).sum())
    assert num_pos > 0
    for a, gt in enumerate(matched.tolist()):
        for t in range(4):
            y = target.positive_map[gt, t].item() if gt >= 0 else 0.0
            p = torch.sigmoid(logits[a, t]).item()
            expected += -0.25 * (1 - p) ** 2 * math.log(p) if y else -0.75 * p**2 * math.log(1 - p)
    assert losses["loss_token"].item() == pytest.approx(expected / num_pos, rel=1e-5)


def test_reg_and_centerness_losses_follow_the_official_normalisation():
    out = fake_outputs(1, 5)
    target = one_box_target()
    cfg = LossConfig(reg_weight=3.0)
    losses = glip_loss(out, LEVELS, [target], torch.ones(1, 5), cfg)
    matched, _ = atss_assign(LEVELS, target.boxes)
    fg = matched >= 0
    anchors = torch.cat(LEVELS)[fg]
    deltas = torch.cat([r.permute(0, 2, 3, 1).reshape(-1, 4) for r in out.bbox_regression])[fg]
    logits = torch.cat([c.reshape(-1) for c in out.centerness])[fg]
    gt = target.boxes.expand(int(fg.sum()), 4)
    w = centerness_targets(gt, anchors)
    giou = giou_loss(decode_boxes(deltas, anchors), gt, w) / w.sum()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, w, reduction="sum") / fg.sum()
    assert losses["loss_reg"].item() == pytest.approx(3.0 * giou.item(), rel=1e-5)
    assert losses["loss_centerness"].item() == pytest.approx(bce.item(), rel=1e-5)


def test_duplicating_an_image_in_the_batch_keeps_the_loss():
    mask = torch.ones(1, 5)
    single = glip_loss(fake_outputs(1, 5), LEVELS, [one_box_target()], mask)
    double = glip_loss(fake_outputs(2, 5), LEVELS, [one_box_target()] * 2, mask.repeat(2, 1))
    for key in single:
        assert double[key].item() == pytest.approx(single[key].item(), rel=1e-5)


def test_images_without_boxes_contribute_only_negatives():
    out = fake_outputs(1, 5)
    empty = GroundingTarget(torch.zeros(0, 4), torch.zeros(0, 5))
    losses = glip_loss(out, LEVELS, [empty], torch.ones(1, 5))
    assert losses["loss_reg"].item() == 0.0 and losses["loss_centerness"].item() == 0.0
    assert losses["loss_token"].item() > 0
    sum(losses.values()).backward()
    grad = out.dot_product_logits[0].grad
    assert grad is not None and (grad > 0).all()  # every logit is pushed down


def named_target(own: int) -> GroundingTarget:
    """One box among three names over 5 tokens: "a b" (tokens 1, 2), "a c" (1, 3), "d" (4)."""
    names = torch.tensor([[0, 0.5, 0.5, 0, 0], [0, 0.5, 0, 0.5, 0], [0, 0, 0, 0, 1.0]])
    return GroundingTarget(one_box_target().boxes, one_box_target().positive_map, names, torch.tensor([own]))


def test_name_term_is_the_cross_entropy_of_the_own_name_scored_as_the_model_scores_names():
    out = fake_outputs(1, 5)
    target = named_target(own=0)
    losses = glip_loss(out, LEVELS, [target], torch.ones(1, 5), LossConfig(name_weight=2.0, name_temperature=0.5))
    matched, _ = atss_assign(LEVELS, target.boxes)
    fg = matched >= 0
    log_p = torch.nn.functional.logsigmoid(torch.cat(out.dot_product_logits, 1)[0, fg])
    scores = torch.stack([(log_p[:, 1] + log_p[:, 2]) / 2, (log_p[:, 1] + log_p[:, 3]) / 2, log_p[:, 4]], 1).exp()
    squared = scores**2  # softmax of log scores / 0.5 = squared scores normalised
    expected = -(squared[:, 0] / squared.sum(1)).log().mean()
    assert losses["loss_names"].item() == pytest.approx(2.0 * expected.item(), rel=1e-5)
    # the other terms are GLIP's, untouched by the names
    plain = glip_loss(out, LEVELS, [one_box_target()], torch.ones(1, 5))
    assert "loss_names" not in plain and all(losses[k].item() == plain[k].item() for k in plain)


def test_name_term_pushes_the_own_name_above_the_one_sharing_a_word():
    out = fake_outputs(1, 5)
    losses = glip_loss(out, LEVELS, [named_target(own=0)], torch.ones(1, 5), LossConfig(name_weight=1.0))
    losses["loss_names"].backward()
    grads = [level.grad[0] for level in out.dot_product_logits]
    grad = torch.cat(grads)
    pos = grad.abs().sum(1) > 0
    assert pos.any()
    assert (grad[pos, 2] < 0).all() and (grad[pos, 3] > 0).all()  # "b" (own only) up, "c" (the rival's) down


def test_boxes_without_an_own_name_and_a_zero_weight_add_no_name_term():
    out = fake_outputs(1, 5)
    unnamed = glip_loss(out, LEVELS, [named_target(own=-1)], torch.ones(1, 5))
    assert unnamed["loss_names"].item() == 0.0
    off = glip_loss(out, LEVELS, [named_target(own=0)], torch.ones(1, 5), LossConfig(name_weight=0.0))
    assert "loss_names" not in off


def test_empty_positive_map_row_still_trains_the_box():
    out = fake_outputs(1, 5)
    target = GroundingTarget(one_box_target().boxes, torch.zeros(1, 5))
    losses = glip_loss(out, LEVELS, [target], torch.ones(1, 5))
    assert losses["loss_reg"].item() > 0 and losses["loss_centerness"].item() > 0


def test_bad_targets_are_rejected():
    out = fake_outputs(1, 5)
    mask = torch.ones(1, 5)
    flipped = GroundingTarget(torch.tensor([[30.0, 10.0, 6.0, 30.0]]), torch.zeros(1, 5))
    with pytest.raises(DataError, match="image 0"):
        glip_loss(out, LEVELS, [flipped], mask)
    with pytest.raises(ValueError, match="positive_map"):
        glip_loss(out, LEVELS, [GroundingTarget(one_box_target().boxes, torch.zeros(1, 4))], mask)
    with pytest.raises(ValueError, match="targets"):
        glip_loss(out, LEVELS, [], mask)


# ---------------------------------------------------------------------------------------------
# The objective trains a (tiny) GLIP
# ---------------------------------------------------------------------------------------------


def tiny_config() -> GLIPConfig:
    bert = {
        "vocab_size": 64,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 32,
        "type_vocab_size": 2,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
    }
    return GLIPConfig(
        name="tiny",
        swin=SwinConfig(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2)),
        language=LanguageConfig(bert=bert, max_query_len=8),
        head=HeadConfig(
            fpn_channels=32, channels=32, num_convs=1, fusion_dim=64, fusion_heads=2, joint_emb_size=32, gn_groups=8
        ),
    )


def run(model: GLIP, image, ids, mask, targets):
    features = model.encode_image(image)
    out = model.head(features, model.encode_text(ids, mask), mask)
    return glip_loss(out, model.rpn.anchor_generator(features), targets, mask)


def test_gradients_reach_backbone_text_encoder_and_head(one_thread):
    torch.manual_seed(0)
    model = GLIP(tiny_config()).train()
    image = torch.randn(1, 3, 64, 96)
    ids = torch.tensor([[1, 5, 6, 7, 2, 0]])
    mask = (ids > 0).long()
    pmap = torch.tensor([[0.0, 1.0, 1.0, 0.0, 0.0, 0.0]])
    losses = run(model, image, ids, mask, [GroundingTarget(torch.tensor([[20.0, 10.0, 60.0, 50.0]]), pmap)])
    assert all(torch.isfinite(v) and v.ndim == 0 for v in losses.values())
    sum(losses.values()).backward()
    for part in (model.backbone, model.language_backbone, model.rpn):
        grads = [p.grad for p in part.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads), type(part).__name__


def test_overfits_one_synthetic_image(one_thread):
    torch.manual_seed(0)
    model = GLIP(tiny_config()).eval()  # no dropout: the test is about the objective, not noise
    rgb = np.zeros((64, 64, 3), np.float32)
    rgb[8:32, 8:32] = (1.0, 0.0, 0.0)  # red square
    rgb[30:54, 36:60] = (0.0, 0.0, 1.0)  # blue square
    image = torch.from_numpy((rgb - 0.5) / 0.25).permute(2, 0, 1)[None]
    ids = torch.tensor([[1, 5, 6, 7, 8, 2]])  # [CLS] red square blue square [SEP]
    mask = torch.ones_like(ids)
    pmap = torch.tensor([[0.0, 1, 1, 0, 0, 0], [0.0, 0, 0, 1, 1, 0]])
    target = GroundingTarget(torch.tensor([[8.0, 8.0, 31.0, 31.0], [36.0, 30.0, 59.0, 53.0]]), pmap)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    history = []
    for _ in range(50):
        total = sum(run(model, image, ids, mask, [target]).values())
        optimiser.zero_grad()
        total.backward()
        optimiser.step()
        history.append(total.item())
    assert all(math.isfinite(v) for v in history)
    assert history[-1] < 0.5 * history[0], history
