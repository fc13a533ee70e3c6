import math

import pytest
import torch
from torch.nn import functional as F

from matminer_clasp.train.losses import (
    CosFaceLoss,
    InfoNCELoss,
    SigLIPLoss,
    make_loss,
    positive_mask,
)


def _unit(x):
    return F.normalize(torch.as_tensor(x, dtype=torch.float64), dim=1)


def test_cosface_hand_computed_identity():
    eye = torch.eye(2, dtype=torch.float64)
    loss = CosFaceLoss(s=3.0, m=0.5)(eye, eye)
    # logits = 3 * (I - 0.5 I) = 1.5 I ; each row CE = log(1 + e^-1.5)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1.5)), abs=1e-12)


def test_cosface_hand_computed_general():
    crystal = _unit([[1.0, 0.0], [0.6, 0.8]])
    text = _unit([[0.8, 0.6], [0.0, 1.0]])
    s, m = 3.0, 0.5
    cos = [[0.8, 0.48 + 0.48], [0.0, 0.8]]  # t_i . c_j
    cos[0][1] = 0.8 * 0.6 + 0.6 * 0.8
    logits = [[s * (cos[i][j] - (m if i == j else 0.0)) for j in range(2)] for i in range(2)]

    def ce(rows):
        return sum(
            -rows[i][i] + math.log(sum(math.exp(v) for v in rows[i])) for i in range(2)
        ) / 2

    cols = [[logits[j][i] for j in range(2)] for i in range(2)]
    expected = 0.5 * (ce(logits) + ce(cols))
    got = CosFaceLoss(s=s, m=m)(crystal, text)
    assert got.item() == pytest.approx(expected, abs=1e-12)


def test_cosface_duplicates_hand_computed():
    eye = torch.eye(2, dtype=torch.float64)
    ids = torch.tensor([7, 7])
    loss = CosFaceLoss(s=3.0, m=0.5)(eye, eye, ids)
    # logits = 3*(I - 0.5*ones) = [[1.5, -1.5], [-1.5, 1.5]]; target (0.5, 0.5)
    # row loss = soft cross-entropy minus the target entropy log 2
    p_hi = 1 / (1 + math.exp(-3.0))
    expected = -0.5 * (math.log(p_hi) + math.log(1 - p_hi)) - math.log(2)
    assert loss.item() == pytest.approx(expected, abs=1e-12)


def test_single_positive_ids_equal_official_labels():
    torch.manual_seed(0)
    crystal = F.normalize(torch.randn(6, 8), dim=1)
    text = F.normalize(torch.randn(6, 8), dim=1)
    logits = 3.0 * (text @ crystal.t() - 0.5 * torch.eye(6))
    labels = torch.arange(6)
    official = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))
    loss = CosFaceLoss()
    assert loss(crystal, text).item() == pytest.approx(official.item(), abs=1e-6)
    distinct = loss(crystal, text, torch.arange(6) * 3)
    assert distinct.item() == pytest.approx(official.item(), abs=1e-6)


@pytest.mark.parametrize(
    "name, kwargs", [("cosface", {}), ("infonce", {}), ("siglip", {"init_bias": -5.0})]
)
def test_duplicate_captions_lower_loss(name, kwargs):
    torch.manual_seed(1)
    # pairs 0 and 1 share one caption (identical text vectors); their crystals are similar
    t = F.normalize(torch.randn(1, 16), dim=1)
    text = torch.cat([t, t, F.normalize(torch.randn(2, 16), dim=1)])
    crystal = F.normalize(text + 0.05 * torch.randn(4, 16), dim=1)
    loss = make_loss(name, **kwargs)
    as_negatives = loss(crystal, text)
    as_positives = loss(crystal, text, torch.tensor([0, 0, 1, 2]))
    assert as_positives.item() < as_negatives.item()


@pytest.mark.parametrize("name", ["cosface", "infonce", "siglip"])
def test_symmetric_and_gradients(name):
    torch.manual_seed(2)
    crystal = torch.randn(5, 8, requires_grad=True)
    text = torch.randn(5, 8, requires_grad=True)
    ids = torch.tensor([0, 1, 0, 2, 3])
    loss = make_loss(name)
    value = loss(F.normalize(crystal, dim=1), F.normalize(text, dim=1), ids)
    swapped = loss(F.normalize(text, dim=1), F.normalize(crystal, dim=1), ids)
    assert value.item() == pytest.approx(swapped.item(), rel=1e-6)
    value.backward()
    assert crystal.grad is not None and crystal.grad.abs().sum() > 0
    assert text.grad is not None and text.grad.abs().sum() > 0
    for p in loss.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()


def test_infonce_temperature_and_clamp():
    loss = InfoNCELoss()
    assert loss.logit_scale.exp().item() == pytest.approx(1 / 0.07)
    eye = torch.eye(3)
    with torch.no_grad():
        loss.logit_scale.fill_(10.0)  # exp(10) >> 100: clamped
    expected = math.log(1 + 2 * math.exp(-100.0))
    assert loss(eye, eye).item() == pytest.approx(expected, abs=1e-6)


def test_siglip_hand_computed():
    loss = SigLIPLoss()
    assert loss.logit_scale.exp().item() == pytest.approx(10.0)
    assert loss.logit_bias.item() == -10.0
    eye = torch.eye(2, dtype=torch.float64)
    # positives: 10*1 - 10 = 0 -> log 2 each; negatives: -(10*0 - 10) = 10 -> log(1 + e^-10)
    expected = (2 * math.log(2) + 2 * math.log(1 + math.exp(-10))) / 2
    assert loss(eye.float(), eye.float()).item() == pytest.approx(expected, rel=1e-5)


def test_logit_scale_and_bias_is_what_the_loss_applies_to_cosines():
    assert CosFaceLoss(s=3.0, m=0.5).logit_scale_and_bias() == (3.0, None)
    infonce = InfoNCELoss()
    assert infonce.logit_scale_and_bias() == (pytest.approx(1 / 0.07), None)
    with torch.no_grad():
        infonce.logit_scale.fill_(10.0)
    assert infonce.logit_scale_and_bias() == (100.0, None)  # clamped, as in the loss
    scale, bias = SigLIPLoss(init_scale=5.0, init_bias=-2.0).logit_scale_and_bias()
    assert scale == pytest.approx(5.0) and bias == -2.0


def test_positive_mask_and_errors():
    mask = positive_mask(3, torch.tensor([1, 2, 1]))
    assert mask.tolist() == [[True, False, True], [False, True, False], [True, False, True]]
    with pytest.raises(ValueError, match="caption_ids"):
        positive_mask(3, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="unknown loss"):
        make_loss("triplet")
    with pytest.raises(ValueError, match="bad arguments"):
        make_loss("cosface", temperature=1.0)
    with pytest.raises(ValueError, match="same shape"):
        CosFaceLoss()(torch.zeros(3, 4), torch.zeros(3, 5))
