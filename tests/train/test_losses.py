import numpy as np
import pytest
import torch

from train.losses import (
    LossWeights,
    expected_stage_mse,
    group_masks,
    group_probabilities,
    n_stage_loss,
    pseudo_loss,
    pseudo_targets,
    scan_station_bce,
    station_bce,
)


def test_pseudo_targets_follow_table_3_and_unknown_side_gives_no_targets():
    assert pseudo_targets(0, "R").tolist() == [0, 0, 0]
    assert pseudo_targets(1, "L").tolist() == [1, 0, 0]
    assert pseudo_targets(2, "R").tolist() == [-1, 1, 0]
    assert pseudo_targets(3, "R").tolist() == [-1, -1, 1]
    assert pseudo_targets(2, None).tolist() == [-1, -1, -1]
    assert pseudo_targets(-1, "R").tolist() == [-1, -1, -1]


def test_group_probability_is_the_max_over_the_sides_groups():
    probs = torch.zeros(1, 17)
    probs[0, 14] = 0.9  # 10R: group 1 for side R, group 3 for side L
    probs[0, 10] = 0.4  # 7: group 2 for both
    right = group_probabilities(probs, torch.from_numpy(group_masks("R", "paper"))[None])
    left = group_probabilities(probs, torch.from_numpy(group_masks("L", "paper"))[None])
    assert right[0].tolist() == pytest.approx([0.9, 0.4, 0.0])
    assert left[0].tolist() == pytest.approx([0.0, 0.4, 0.9])
    assert not group_masks(None, "paper").any()


def test_pseudo_loss_balanced_batch_is_the_mean_of_eq3():
    # two scans, entries: scan 0 targets (1, 0), scan 1 (1, 0) -> two ones, two zeros: weights 1
    group_probs = torch.tensor([[0.8, 0.3, 0.0], [0.6, 0.1, 0.0]])
    targets = torch.tensor([[1.0, 0.0, -1.0], [1.0, 0.0, -1.0]])
    expected = ((0.2 + 0.3) + (0.4 + 0.1)) / 2
    assert pseudo_loss(group_probs, targets).item() == pytest.approx(expected)


def test_pseudo_loss_weights_rare_target_values_up():
    # one N0 scan (0, 0, 0) and nothing else known: 3 zeros, weight 1 each
    group_probs = torch.tensor([[0.5, 0.2, 0.1], [0.9, 0.9, 0.9]])
    targets = torch.tensor([[0.0, 0.0, 0.0], [-1.0, -1.0, 1.0]])
    # entries: 3 zeros, 1 one -> weights zeros 4 / (2 * 3), one 4 / (2 * 1)
    expected = (4 / 6 * (0.5 + 0.2 + 0.1) + 2 * 0.1) / 2
    assert pseudo_loss(group_probs, targets).item() == pytest.approx(expected)


def test_pseudo_loss_is_zero_with_a_gradient_when_nothing_is_known():
    group_probs = torch.rand(2, 3, requires_grad=True)
    loss = pseudo_loss(group_probs, torch.full((2, 3), -1.0))
    loss.backward()
    assert loss.item() == 0 and group_probs.grad is not None


def test_expected_stage_mse_has_a_gradient_and_hand_value():
    logits = torch.log(torch.tensor([[0.5, 0.5, 0.0001, 0.0001]])).requires_grad_()
    loss = expected_stage_mse(logits, torch.tensor([2]))
    assert loss.item() == pytest.approx(1.5**2, rel=1e-3)
    loss.backward()
    assert logits.grad.abs().sum() > 0


def test_station_bce_ignores_unknown_stations():
    logits = torch.tensor([[0.0, 5.0, -5.0]])
    status = torch.tensor([[1, -1, 0]])
    assert station_bce(logits, status).item() == pytest.approx((np.log(2) + np.log1p(np.exp(-5))) / 2, rel=1e-5)


def test_n_stage_loss_without_station_labels_still_trains_the_stage_terms():
    stage_logits = torch.zeros(2, 4, requires_grad=True)
    station_logits = torch.zeros(2, 17, requires_grad=True)
    masks = torch.from_numpy(np.stack([group_masks("R", "paper"), group_masks(None, "paper")]))
    targets = torch.from_numpy(np.stack([pseudo_targets(2, "R"), pseudo_targets(1, None)]))
    loss = n_stage_loss(stage_logits, station_logits, torch.tensor([2, 1]), torch.full((2, 17), -1), masks,
                        targets, LossWeights())
    assert loss.bce.item() == 0
    assert loss.ce.item() == pytest.approx(np.log(4))
    assert loss.mse.item() == pytest.approx(((1.5 - 2) ** 2 + (1.5 - 1) ** 2) / 2)
    assert loss.pseudo.item() == pytest.approx(0.5 + 0.5)  # targets (?, 1, 0), probs 0.5
    loss.total.backward()
    assert stage_logits.grad.abs().sum() > 0 and station_logits.grad.abs().sum() > 0


def bce(logit: float, target: int) -> float:
    return float(np.log1p(np.exp(-logit)) if target else np.log1p(np.exp(logit)))


def test_scan_station_bce_sums_over_a_scans_stations_and_averages_over_scans():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
    status = torch.tensor([[1, 0, -1], [-1, -1, 0]])
    expected = ((bce(2.0, 1) + bce(-1.0, 0)) + bce(-2.0, 0)) / 2  # a sum per scan (Eq. 2), not a mean per station
    assert scan_station_bce(logits, status, balance=False).item() == pytest.approx(expected, rel=1e-5)


def test_balanced_station_bce_gives_the_rare_malignant_stations_the_weight_of_all_benign_ones():
    logits = torch.zeros(2, 5)
    status = torch.tensor([[1, 0, 0, 0, 0], [0, 0, 0, 0, -1]])  # 1 malignant, 8 benign known entries
    # weights: malignant 9 / (2 * 1), benign 9 / (2 * 8): both classes carry half of the 9 entries' weight
    expected = (9 / 2 * np.log(2) + 8 * 9 / 16 * np.log(2)) / 2
    assert scan_station_bce(logits, status).item() == pytest.approx(expected, rel=1e-5)
    one_class = torch.tensor([[0, 0, 0, 0, 0], [0, 0, -1, -1, -1]])  # nothing to balance: plain sum
    assert scan_station_bce(logits, one_class).item() == pytest.approx(7 * np.log(2) / 2, rel=1e-5)


@pytest.mark.parametrize("balance", [False, True])
def test_a_scan_without_station_labels_adds_nothing_to_the_station_term(balance):
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0], [1.0, 1.0, 1.0]], requires_grad=True)
    status = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 1, 0]])
    labelled = torch.tensor([True, False, True])
    loss = scan_station_bce(logits, status, labelled, balance)
    alone = scan_station_bce(logits[[0, 2]].detach(), status[[0, 2]], balance=balance)
    assert loss.item() == pytest.approx(alone.item(), rel=1e-6)
    loss.backward()
    assert logits.grad[1].abs().sum() == 0 and logits.grad[0].abs().sum() > 0
    none = scan_station_bce(logits, status, torch.tensor([False, False, False]), balance)
    assert none.item() == 0 and none.requires_grad


def test_n_stage_loss_leaves_unlabelled_scans_out_of_the_station_term_only():
    stage_logits = torch.zeros(2, 4)
    station_logits = torch.tensor([[3.0] * 17, [-3.0] * 17])
    status = torch.zeros(2, 17, dtype=torch.long)
    masks = torch.from_numpy(np.stack([group_masks("R", "paper")] * 2))
    targets = torch.from_numpy(np.stack([pseudo_targets(0, "R")] * 2))
    args = (stage_logits, station_logits, torch.tensor([0, 0]), status, masks, targets, LossWeights())
    both = n_stage_loss(*args)
    second = n_stage_loss(*args, station_labelled=torch.tensor([False, True]))
    assert second.bce.item() == pytest.approx(17 * bce(-3.0, 0), rel=1e-5)  # the first scan's 17 wrong calls gone
    assert both.bce.item() > second.bce.item()
    assert second.pseudo.item() == both.pseudo.item() and second.ce.item() == both.ce.item()
