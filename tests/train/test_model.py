import numpy as np
import pytest
import torch

from cache.stations import (
    STATION_CUTOFF,
    group_mask,
    n_stage,
    rule_set_names,
    stage_scans,
    station_calls,
    station_names,
)
from train.data import balanced_weights
from train.losses import LossWeights, group_masks, n_stage_loss, pseudo_targets
from train.model import (
    N_STAGES,
    N_STATIONS,
    SIDE_CODES,
    NStageModel,
    StationClassifier,
    encode_side,
    fit_output_scale,
    init_head_at_rule,
    rule_head_units,
    scale_head_output,
)


def test_six_blocks_reduce_64_patch_to_one_logit_per_sample():
    model = StationClassifier(channels=(8, 16, 32, 64, 128, 256), patch_size_vox=64, station_encoding="embedding")
    logits = model(torch.rand(2, 2, 64, 64, 64), torch.tensor([0, 16]))
    assert logits.shape == (2,)
    assert model.classifier.in_features == 256 + 8  # the learned embedding's 8 values
    assert all(not block[0].bias for block in model.features)  # Conv3d without bias
    assert [block[2].p for block in model.features] == [0.05, 0.1, 0.2, 0.2, 0.2, 0.2]


def test_five_block_variant_for_32_patches_with_scalar_station_index_and_mask_channel():
    model = StationClassifier(in_channels=3, channels=(8, 16, 32, 64, 128), dropout=(0.05, 0.1, 0.2, 0.2, 0.2),
                              patch_size_vox=32, station_encoding="index")
    assert model(torch.rand(3, 3, 32, 32, 32), torch.tensor([0, 5, 16])).shape == (3,)
    assert model.classifier.in_features == 128 + 1


@pytest.mark.parametrize("encoding", ["index", "embedding"])
def test_station_identity_changes_the_logit(encoding):
    torch.manual_seed(0)
    model = StationClassifier(channels=(4, 8), dropout=(0.0, 0.0), patch_size_vox=4, station_encoding=encoding)
    patch = torch.rand(1, 2, 4, 4, 4).repeat(2, 1, 1, 1, 1)
    logits = model.eval()(patch, torch.tensor([0, 1]))
    assert logits[0] != logits[1]


def test_the_paper_station_index_is_the_default():
    assert StationClassifier(channels=(4, 8), dropout=(0.0, 0.0), patch_size_vox=4).classifier.in_features == 8 + 1


def test_n_stage_model_shares_the_classifier_over_17_stations():
    torch.manual_seed(0)
    classifier = StationClassifier(channels=(4, 8), dropout=(0.0, 0.0), patch_size_vox=4).eval()
    model = NStageModel(classifier, hidden=8).eval()
    patches = torch.rand(2, N_STATIONS, 2, 4, 4, 4)
    stage_logits, station_logits = model(patches, encode_side(["R", None]))
    assert stage_logits.shape == (2, N_STAGES) and station_logits.shape == (2, N_STATIONS)
    expected = classifier(patches[1, 5:6], torch.tensor([5]))
    torch.testing.assert_close(station_logits[1, 5:6], expected)


def test_side_encoding_marks_unknown_as_zeros():
    assert encode_side(["R", "L", None]).tolist() == [[1, 0], [0, 1], [0, 0]]


def test_batch_norm_keeps_the_absolute_uptake_that_instance_norm_removes():
    """Two patches that differ only by a constant factor: instance norm makes them identical, batch norm not."""
    torch.manual_seed(0)
    patch = torch.rand(1, 2, 8, 8, 8)
    pair = torch.cat([patch, 3.0 * patch])
    station = torch.tensor([4, 4])
    instance = StationClassifier(channels=(4, 8), dropout=(0.0, 0.0), patch_size_vox=8, norm="instance").eval()
    batch = StationClassifier(channels=(4, 8), dropout=(0.0, 0.0), patch_size_vox=8, norm="batch").eval()
    with torch.no_grad():
        logits_instance, logits_batch = instance(pair, station), batch(pair, station)
    torch.testing.assert_close(logits_instance[0], logits_instance[1], atol=1e-4, rtol=1e-4)
    assert abs(float(logits_batch[0] - logits_batch[1])) > 1e-3


def test_unknown_norm_is_refused():
    with pytest.raises(ValueError, match="norm must be one of"):
        StationClassifier(channels=(4,), dropout=(0.0,), patch_size_vox=4, norm="layer")


def rule_cohort(n: int, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
    """Scans whose station logits the rule set explains: ~6 % malignant stations (logit 3, else -3, plus unit
    noise), either tumour side; (logits, side, N-stage by cache.stations.n_stage, group masks, pseudo-targets)."""
    names = station_names()
    malignant = rng.random((n, N_STATIONS)) < 0.06
    sides = [str(s) for s in rng.choice(["R", "L"], n)]
    stages = np.array([n_stage([names[i] for i in np.flatnonzero(row)], side)
                       for row, side in zip(malignant, sides, strict=True)])
    logits = np.where(malignant, 3.0, -3.0) + rng.normal(0.0, 1.0, malignant.shape)
    masks = np.stack([group_masks(side, "paper") for side in sides])
    targets = np.stack([pseudo_targets(int(n), side) for n, side in zip(stages, sides, strict=True)])
    return (torch.tensor(logits, dtype=torch.float32), encode_side(sides), torch.from_numpy(stages),
            torch.from_numpy(masks), torch.from_numpy(targets))


def test_a_ts3_head_trained_on_logits_generated_by_the_rule_set_recovers_the_rule():
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    train, test = rule_cohort(1024, rng), rule_cohort(1000, rng)
    head = NStageModel(StationClassifier(channels=(4, 8), dropout=(0.0, 0.0), patch_size_vox=4)).head
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2, weight_decay=1e-3)
    draw = balanced_weights(train[2].numpy())  # N-stage classes in equal shares, as the trainer's epoch plan
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: more threads only wait on each other
    try:
        for _ in range(600):
            batch = torch.from_numpy(rng.choice(1024, 256, p=draw))
            logits, side, stage, masks, targets = (t[batch] for t in train)
            loss = n_stage_loss(head(torch.cat([logits, side], dim=1)), logits, stage,
                                torch.full(logits.shape, -1), masks, targets, LossWeights())
            optimizer.zero_grad()
            loss.total.backward()
            optimizer.step()
        with torch.no_grad():
            predicted = head(torch.cat(test[:2], dim=1)).argmax(dim=1)
    finally:
        torch.set_num_threads(threads)
    truth, right_side = test[2], test[1][:, 0] == 1
    assert (predicted == truth).float().mean() >= 0.85  # the rule on the logits' signs scores 0.98, N0 alone 0.35
    for stage in range(N_STAGES):
        assert (predicted[truth == stage] == stage).float().mean() >= 0.6, stage
    for side in (right_side, ~right_side):  # side-dependent groups: 4R is N2 with a right tumour, N3 with a left
        assert (predicted[side] == truth[side]).float().mean() >= 0.8


@pytest.mark.parametrize("rule_set", rule_set_names())
def test_a_head_started_at_the_rule_stages_as_the_rule_set_does(rule_set):
    """Random station logits (none within 0.05 of the cutoff) and both sides: the head's argmax is the rule's
    N-stage for every scan, including those of unknown side that the rule stages (the two sides agree)."""
    torch.manual_seed(0)
    model = NStageModel(StationClassifier(channels=(4, 8), dropout=(0.0, 0.0), patch_size_vox=4), hidden=64)
    masks = np.stack([group_mask(side, rule_set) for side in SIDE_CODES])
    init_head_at_rule(model.head, masks, STATION_CUTOFF)
    rng = np.random.default_rng(1)
    # sparse positives, so every stage occurs: each station malignant with probability 0.08
    logits = np.where(rng.random((4000, N_STATIONS)) < 0.08, rng.uniform(0.05, 8, (4000, N_STATIONS)),
                      rng.uniform(-8, -0.05, (4000, N_STATIONS)))
    sides = [("R", "L", None)[i] for i in rng.integers(0, 3, len(logits))]
    stage_logits, _ = model(None, encode_side(sides), station_logits=torch.tensor(logits, dtype=torch.float32))
    head = stage_logits.argmax(1).numpy()
    calls = station_calls(1 / (1 + np.exp(-logits)))
    known = np.array([side is not None for side in sides])
    rule = stage_scans(calls, sides, rule_set)
    assert set(rule[known]) == {0, 1, 2, 3}
    np.testing.assert_array_equal(head[known], rule[known])
    agreed = ~known & (rule >= 0)
    # the sides agree on some unknown-side scans whose stations sit in different groups on the two sides
    lower = (masks * np.arange(1, 4)[None, :, None]).max(axis=1).min(axis=0)  # each station's lower group
    assert ((calls * lower).max(axis=1) != rule)[agreed].any()
    np.testing.assert_array_equal(head[agreed], rule[agreed])


def test_the_rule_needs_fewer_units_than_the_default_head_and_a_narrow_head_is_refused():
    masks = np.stack([group_mask(side, "paper") for side in SIDE_CODES])
    assert len(rule_head_units(masks)) == 27  # 17 stations, 10 of them lifted a group for one side: 54 units
    narrow = NStageModel(StationClassifier(channels=(4, 8), dropout=(0.0, 0.0), patch_size_vox=4), hidden=8)
    with pytest.raises(ValueError, match="needs 54 hidden units; head_hidden is 8"):
        init_head_at_rule(narrow.head, masks)


def test_the_output_scale_recovers_the_temperature_of_the_labels_and_keeps_the_argmax():
    """Labels drawn from softmax(0.2 * logits): the fitted scale is 0.2, and scaling the head keeps its argmax."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(20000, N_STAGES, generator=generator) * 20
    labels = torch.multinomial(torch.softmax(0.2 * logits, dim=1), 1, generator=generator).squeeze(1)
    assert fit_output_scale(lambda scale: logits * scale, labels) == pytest.approx(0.2, rel=0.05)
    model = NStageModel(StationClassifier(channels=(4, 8), dropout=(0.0, 0.0), patch_size_vox=4), hidden=64)
    init_head_at_rule(model.head, np.stack([group_mask(side, "paper") for side in SIDE_CODES]))
    station_logits, side = torch.randn(500, N_STATIONS, generator=generator) * 4, encode_side(["R"] * 500)
    before = model(None, side, station_logits=station_logits)[0]
    scale_head_output(model.head, 0.05)
    after = model(None, side, station_logits=station_logits)[0]
    torch.testing.assert_close(after, before * 0.05)
    assert after.argmax(1).equal(before.argmax(1))
