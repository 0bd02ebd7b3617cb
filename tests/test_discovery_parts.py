from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.networks.nets import DiffusionModelUNet
from monai.networks.schedulers import DDPMScheduler

from monai_ext.engines import volume_keys
from monai_ext.losses import ConsistencyLoss, DiscoveryLoss, NestingLoss, PhotometricInvarianceLoss
from monai_ext.metrics import MeanMaxProbabilityMetric, PartsUsedMetric
from monai_ext.networks import DiffusionFeatureExtractor, FeatureCache, HierarchicalSegmenter


def _kmeans_objective(labels: np.ndarray, values: np.ndarray) -> float:
    """Hard-mask K-means objective / N, computed independently with numpy: sum of squared distances to means."""
    total = 0.0
    for k in np.unique(labels):
        members = values[:, labels == k]
        total += ((members - members.mean(axis=1, keepdims=True)) ** 2).sum()
    return total / labels.size


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_consistency_equals_hard_kmeans_objective_for_one_hot_masks(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, size=(6, 5, 7))
    values = rng.normal(size=(3, 6, 5, 7))
    masks = torch.nn.functional.one_hot(torch.as_tensor(labels), 4).permute(3, 0, 1, 2)[None].double()
    loss = ConsistencyLoss(eps=1e-12)(masks, torch.as_tensor(values)[None])
    assert float(loss) == pytest.approx(_kmeans_objective(labels, values), rel=1e-6)


def _soft_consistency(masks: torch.Tensor, values: torch.Tensor, eps: float) -> torch.Tensor:
    """Eq. 5 term by term in float64: 1/N sum_k sum_u M_ku ||z_k - h_u||^2, z_k the mask-weighted mean."""
    m, h = masks.flatten(2).double(), values.flatten(2).double()
    losses = []
    for b in range(m.shape[0]):
        total = 0.0
        for k in range(m.shape[1]):
            centre = (m[b, k] * h[b]).sum(-1) / (m[b, k].sum() + eps)
            total = total + (m[b, k] * ((h[b] - centre[:, None]) ** 2).sum(0)).sum()
        losses.append(total / m.shape[-1])
    return torch.stack(losses).mean()


def test_consistency_matches_eq5_term_by_term_for_soft_masks_with_gradients():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 6, 7, 5, dtype=torch.float64, requires_grad=True)
    values = torch.randn(2, 3, 6, 7, 5, dtype=torch.float64) * 2 + 10  # an offset, as raw features have
    loss = ConsistencyLoss(eps=1e-5)(torch.softmax(logits, 1), values)
    (grad,) = torch.autograd.grad(loss, logits)
    reference = _soft_consistency(torch.softmax(logits, 1), values, eps=1e-5)
    (reference_grad,) = torch.autograd.grad(reference, logits)
    assert float(loss) == pytest.approx(float(reference), rel=1e-4)
    torch.testing.assert_close(grad.double(), reference_grad, rtol=1e-3, atol=1e-6)


def test_consistency_is_zero_on_a_piecewise_constant_image_split_on_its_pieces():
    labels = torch.zeros(8, 8, 8, dtype=torch.long)
    labels[2:6, 2:6, 2:6] = 1
    labels[3:5, 3:5, 3:5] = 2
    image = torch.tensor([0.1, 0.5, 0.9])[labels][None, None]
    masks = torch.nn.functional.one_hot(labels, 3).permute(3, 0, 1, 2)[None].float()
    assert float(ConsistencyLoss()(masks, image)) == pytest.approx(0.0, abs=1e-6)
    wrong = torch.roll(masks, shifts=2, dims=2)
    assert float(ConsistencyLoss()(wrong, image)) > 0.01


def test_consistency_gradients_are_finite_even_for_empty_parts():
    logits = torch.randn(2, 4, 6, 6, 6, requires_grad=True)
    masks = torch.softmax(logits, dim=1) * torch.tensor([1.0, 1.0, 1.0, 0.0]).view(1, 4, 1, 1, 1)
    loss = ConsistencyLoss()(masks, torch.randn(2, 5, 6, 6, 6))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_normalized_consistency_is_the_unexplained_share_of_variance():
    masks = torch.softmax(torch.randn(2, 3, 6, 6, 6), dim=1)
    features = torch.randn(2, 4, 6, 6, 6) * 3 + 1
    raw = ConsistencyLoss(eps=1e-12)
    normalized = ConsistencyLoss(eps=1e-12, normalize=True)
    total_variance = features.flatten(2).var(dim=-1, unbiased=False).sum(1)
    expected = torch.stack([raw(masks[i : i + 1], features[i : i + 1]) / total_variance[i] for i in range(2)]).mean()
    assert float(normalized(masks, features)) == pytest.approx(float(expected), rel=1e-5)
    assert float(normalized(masks, features * 100)) == pytest.approx(float(expected), rel=1e-4)
    assert 0 < float(expected) <= 1


def test_consistency_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="share batch and spatial shape"):
        ConsistencyLoss()(torch.rand(1, 2, 4, 4, 4), torch.rand(1, 1, 4, 4, 5))


def test_invariance_matches_equation_8():
    a = torch.softmax(torch.randn(2, 3, 5, 5, 5), dim=1)
    b = torch.softmax(torch.randn(2, 3, 5, 5, 5), dim=1)
    dims = (2, 3, 4)
    expected = 1 - (2 * (a * b).sum(dims) / ((a**2).sum(dims) + (b**2).sum(dims))).mean()
    assert float(PhotometricInvarianceLoss()(a, b)) == pytest.approx(float(expected), abs=1e-5)
    assert float(PhotometricInvarianceLoss()(a, a)) == pytest.approx(0.0, abs=1e-5)


def test_discovery_loss_weights_and_validation():
    masks = [torch.softmax(torch.randn(1, 2, 4, 4, 4), 1)]
    image, features = torch.rand(1, 1, 4, 4, 4), [torch.randn(1, 3, 4, 4, 4)]
    total, terms = DiscoveryLoss(1.0, 2.0, 0.0)(masks, None, image, features)
    assert float(total) == pytest.approx(terms["loss_v"] + 2 * terms["loss_f"], rel=1e-5)
    with pytest.raises(ValueError, match="at least one positive"):
        DiscoveryLoss(0.0, 0.0, 0.0)


@pytest.fixture(scope="module")
def tiny_unet():
    torch.manual_seed(0)
    unet = DiffusionModelUNet(
        spatial_dims=3,
        in_channels=1,
        out_channels=1,
        channels=(8, 8, 16),
        attention_levels=(False, False, False),
        num_res_blocks=1,
        norm_num_groups=8,
    )
    return unet, DDPMScheduler(num_train_timesteps=250, schedule="cosine", prediction_type="sample")


def test_feature_extractor_stage_shapes(tiny_unet):
    unet, scheduler = tiny_unet
    x0 = torch.rand(2, 1, 16, 16, 16)
    extractor = DiffusionFeatureExtractor(unet, scheduler, stages=(1, 2, 3))
    native = extractor.native(x0)
    assert {s: tuple(f.shape) for s, f in native.items()} == {
        1: (2, 16, 4, 4, 4),
        2: (2, 8, 8, 8, 8),
        3: (2, 8, 16, 16, 16),
    }
    assert extractor.channels == [16, 8, 8]
    assert extractor(x0).shape == (2, 32, 16, 16, 16)
    resized = DiffusionFeatureExtractor(unet, scheduler, stages=(2,), input_size=(16, 16, 16))
    assert resized(torch.rand(1, 1, 12, 12, 12)).shape == (1, 8, 12, 12, 12)
    assert not any(p.requires_grad for p in extractor.unet.parameters())


def test_feature_extractor_mean_over_seeded_draws_repeats_and_leaves_the_global_state(tiny_unet):
    unet, scheduler = tiny_unet
    extractor = DiffusionFeatureExtractor(unet, scheduler, stages=(2,), num_draws=2)
    x0 = torch.rand(1, 1, 16, 16, 16)
    torch.manual_seed(5)
    first = extractor.native_mean(x0, generator=torch.Generator().manual_seed(1))[2]
    after = torch.rand(1)
    torch.manual_seed(5)
    again = extractor.native_mean(x0, generator=torch.Generator().manual_seed(1))[2]
    assert torch.equal(first, again) and torch.equal(after, torch.rand(1))  # no global draw was taken
    draws = torch.Generator().manual_seed(1)
    noises = [torch.randn(1, 1, 16, 16, 16, generator=draws) for _ in range(2)]
    expected = torch.stack([extractor.native(x0, noise)[2] for noise in noises]).mean(0)
    assert torch.allclose(first, expected)
    assert not torch.allclose(first, extractor.native_mean(x0, generator=torch.Generator().manual_seed(2))[2])


def test_feature_extractor_rejects_bad_stage_and_size(tiny_unet):
    unet, scheduler = tiny_unet
    with pytest.raises(ValueError, match=r"stages .* in 1\.\.3"):
        DiffusionFeatureExtractor(unet, scheduler, stages=(4,))
    with pytest.raises(ValueError, match="timestep"):
        DiffusionFeatureExtractor(unet, scheduler, timestep=250)
    with pytest.raises(ValueError, match="set input_size"):
        DiffusionFeatureExtractor(unet, scheduler).native(torch.rand(1, 1, 10, 10, 10))


@pytest.mark.parametrize("storage", ["memory", "disk"])
def test_cached_features_agree_with_direct_extraction(tiny_unet, tmp_path, storage):
    unet, scheduler = tiny_unet
    extractor = DiffusionFeatureExtractor(unet, scheduler, stages=(1, 3))
    cache = FeatureCache(extractor, num_draws=2, storage=storage, cache_dir=tmp_path / "cache")
    assert (tmp_path / "cache").is_dir() == (storage == "disk"), "a memory cache leaves no folder behind"
    x0 = torch.rand(2, 1, 16, 16, 16)
    keys = ["a.nii.gz", "b.nii.gz"]
    first = cache.native(x0, keys, draw=1)
    again = cache.native(x0, keys, draw=1)
    assert cache.misses == 2 and cache.hits == 2
    direct = extractor.native(x0[1:], noise=cache.noise("b.nii.gz", 1, (1, 1, 16, 16, 16)))
    for stage in (1, 3):
        assert torch.equal(first[stage], again[stage])
        torch.testing.assert_close(first[stage][1:], direct[stage], atol=2e-2, rtol=1e-2)
    other_draw = cache.native(x0, keys, draw=0)
    assert not torch.allclose(other_draw[1], first[1])


def test_disk_cache_never_serves_features_of_another_diffusion_model(tiny_unet, tmp_path):
    unet, scheduler = tiny_unet
    x0, keys = torch.rand(1, 1, 16, 16, 16), ["a.nii.gz"]
    FeatureCache(DiffusionFeatureExtractor(unet, scheduler), storage="disk", cache_dir=tmp_path).native(x0, keys, 0)
    retrained = copy.deepcopy(unet)
    with torch.no_grad():
        next(retrained.parameters()).add_(1.0)
    cache = FeatureCache(DiffusionFeatureExtractor(retrained, scheduler), storage="disk", cache_dir=tmp_path)
    cache.native(x0, keys, 0)
    assert cache.misses == 1 and cache.hits == 0
    same = FeatureCache(DiffusionFeatureExtractor(unet, scheduler), storage="disk", cache_dir=tmp_path)
    same.native(x0, keys, 0)
    assert same.hits == 1


def test_disk_cache_of_loaded_images_is_read_back_by_a_later_run(tiny_unet, tmp_path):
    """Regression (issue 31): features of a MetaTensor image were stored with its metadata, which the safe loading of
    the next epoch or run refused (``UnpicklingError: ... TraceKeys``)."""
    unet, scheduler = tiny_unet
    x0 = MetaTensor(torch.rand(1, 1, 16, 16, 16), meta={"filename_or_obj": "a.nii.gz"})
    first = FeatureCache(DiffusionFeatureExtractor(unet, scheduler), storage="disk", cache_dir=tmp_path)
    stored = first.native(x0, ["a.nii.gz"], 0)
    later = FeatureCache(DiffusionFeatureExtractor(unet, scheduler), storage="disk", cache_dir=tmp_path)
    read = later.native(x0, ["a.nii.gz"], 0)
    assert later.hits == 1 and type(read[1]) is torch.Tensor
    assert torch.equal(read[1], stored[1])


def test_volume_keys_need_file_names():
    with pytest.raises(ValueError, match="source file name"):
        volume_keys(torch.rand(2, 1, 4, 4, 4))
    named = MetaTensor(torch.rand(2, 1, 4, 4, 4), meta={"filename_or_obj": ["a.nii.gz", "b.nii.gz"]})
    assert volume_keys(named) == ["a.nii.gz", "b.nii.gz"]


def test_hierarchical_segmenter_outputs_softmax_per_level():
    net = HierarchicalSegmenter(num_parts=(2, 3), channels=(4, 8, 8), strides=(1, 2))
    out = net(torch.rand(2, 1, 8, 8, 8))
    assert out.shape == (2, 5, 8, 8, 8)
    for level in net.split(out):
        torch.testing.assert_close(level.sum(1), torch.ones(2, 8, 8, 8))
    with pytest.raises(ValueError, match="divide by 2"):
        net(torch.rand(1, 1, 9, 8, 8))
    with pytest.raises(ValueError, match="input must have shape"):
        net(torch.rand(1, 2, 8, 8, 8))
    with pytest.raises(ValueError, match="K >= 2"):
        HierarchicalSegmenter(num_parts=(1,))
    with pytest.raises(ValueError, match="more parts than the input has voxels"):
        HierarchicalSegmenter(num_parts=(2, 8), channels=(4, 4), strides=(1,))(torch.rand(1, 1, 2, 2, 1))


def test_mean_max_probability():
    metric = MeanMaxProbabilityMetric()
    certain = torch.zeros(1, 2, 4, 4)
    certain[:, 0] = 1
    metric(torch.cat([certain, torch.full((1, 2, 4, 4), 0.5)]))
    torch.testing.assert_close(metric.get_buffer().flatten(), torch.tensor([1.0, 0.5]))
    assert float(metric.aggregate()) == pytest.approx(0.75)


def test_parts_used_counts_the_parts_holding_half_a_percent_of_a_hand_made_label_map():
    """Four parts on 1000 voxels: 900 / 95 / 5 / 0 voxels. Part 2 holds exactly 0.5 %: it counts; part 3 none."""
    labels = np.repeat([0, 1, 2], [900, 95, 5]).reshape(10, 10, 10)
    metric = PartsUsedMetric()
    metric(_one_hot(labels, 4).float())
    metric(_one_hot(np.where(labels == 2, 0, labels), 4).float())  # part 2 merged into part 0: three parts left
    metric(_one_hot(np.zeros((10, 10, 10), np.int64), 4).float() * 0.7 + 0.3 / 4)  # soft, one part everywhere
    torch.testing.assert_close(metric.get_buffer().flatten(), torch.tensor([3.0, 2.0, 1.0]))
    assert PartsUsedMetric(min_share=0.006)(_one_hot(labels, 4).float()).item() == 2.0
    with pytest.raises(ValueError, match="min_share"):
        PartsUsedMetric(min_share=0.0)


def _conditional_entropy(coarse: np.ndarray, fine: np.ndarray, k_coarse: int) -> float:
    """H(coarse | fine) / log K_coarse of two hard label maps, by counting voxel pairs (independent of the loss)."""
    total = 0.0
    for j in np.unique(fine):
        inside = coarse[fine == j]
        for k in np.unique(inside):
            p_jk, p_k_given_j = np.sum(inside == k) / fine.size, np.mean(inside == k)
            total -= p_jk * np.log(p_k_given_j)
    return total / np.log(k_coarse)


def _one_hot(labels: np.ndarray, k: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.as_tensor(labels), k).movedim(-1, 0)[None].double()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nesting_loss_is_the_conditional_entropy_of_hard_partitions(seed):
    rng = np.random.default_rng(seed)
    coarse, fine = rng.integers(0, 2, size=(5, 6, 4)), rng.integers(0, 4, size=(5, 6, 4))
    loss = NestingLoss(eps=1e-12)(_one_hot(coarse, 2), _one_hot(fine, 4))
    assert float(loss) == pytest.approx(_conditional_entropy(coarse, fine, 2), rel=1e-6)


def test_nesting_loss_is_zero_for_nested_levels_and_one_for_even_spread():
    rng = np.random.default_rng(0)
    fine = rng.integers(0, 8, size=(6, 6, 6))
    nested = fine // 2  # every fine part inside one coarse part
    assert float(NestingLoss()(_one_hot(nested, 4), _one_hot(fine, 8))) == pytest.approx(0.0, abs=1e-6)
    uniform = torch.full((1, 4, 6, 6, 6), 0.25, dtype=torch.float64)  # every voxel spread over all coarse parts
    assert float(NestingLoss()(uniform, _one_hot(fine, 8))) == pytest.approx(1.0, rel=1e-6)
    with pytest.raises(ValueError, match="must share batch and spatial shape"):
        NestingLoss()(uniform, _one_hot(fine, 8)[..., :5])


def test_discovery_loss_adds_the_nesting_term_of_consecutive_levels():
    torch.manual_seed(0)
    masks = [torch.softmax(torch.randn(1, k, 4, 4, 4), 1) for k in (2, 4, 8)]
    image = torch.rand(1, 1, 4, 4, 4)
    total, terms = DiscoveryLoss(1.0, 0.0, 0.0, lambda_nest=0.5)(masks, None, image, [None] * 3)
    nesting = NestingLoss()
    expected_nest = float(nesting(masks[0], masks[1]) + nesting(masks[1], masks[2]))
    assert terms["loss_nest"] == pytest.approx(expected_nest, rel=1e-6)
    assert float(total) == pytest.approx(terms["loss_v"] + 0.5 * expected_nest, rel=1e-6)
    with pytest.raises(ValueError, match="loss weights must be >= 0"):
        DiscoveryLoss(lambda_nest=-1.0)


def test_reflect_padded_features_equal_the_plain_path_on_the_reflected_volume(tiny_unet):
    """Padding after noising is the plain extraction of the reflect-extended volume (with the noise reflected
    alike), cropped back to the volume: stage by stage, on each stage's own grid."""
    unet, scheduler = tiny_unet
    x0, noise = torch.rand(1, 1, 16, 16, 16), torch.randn(1, 1, 16, 16, 16)
    padded = DiffusionFeatureExtractor(unet, scheduler, stages=(1, 2, 3), padding=4)
    plain = DiffusionFeatureExtractor(unet, scheduler, stages=(1, 2, 3))
    reflect = torch.nn.functional.pad
    # x0 -> 2 x0 - 1 commutes with reflection, so reflecting x0 in [0, 1] reflects the U-Net input
    reference = plain.native(reflect(x0, [4] * 6, mode="reflect"), noise=reflect(noise, [4] * 6, mode="reflect"))
    features = padded.native(x0, noise=noise)
    for stage, margin in ((1, 1), (2, 2), (3, 4)):
        assert features[stage].shape[2:] == (16 // 2 ** (3 - stage),) * 3  # the plain path's shapes
        crop = reference[stage][..., margin:-margin, margin:-margin, margin:-margin]
        torch.testing.assert_close(features[stage], crop)
    assert not torch.allclose(features[3], plain.native(x0, noise=noise)[3]), "padding changes the border"


def test_padding_must_be_a_multiple_of_the_downsampling(tiny_unet):
    unet, scheduler = tiny_unet
    with pytest.raises(ValueError, match=r"feature_padding.*multiple of 4"):
        DiffusionFeatureExtractor(unet, scheduler, padding=6)
    with pytest.raises(ValueError, match="above it"):
        DiffusionFeatureExtractor(unet, scheduler, padding=16).native(torch.rand(1, 1, 16, 16, 16))


def test_visual_target_is_the_denoised_volume_computed_once_per_volume():
    from monai_ext.engines.discovery import DiscoveryTrainer

    calls = []

    def denoiser(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape)
        return 1.0 - x

    trainer = DiscoveryTrainer.__new__(DiscoveryTrainer)  # only the visual target's state, no engine
    trainer.visual_denoiser, trainer._denoised = denoiser, {}
    trainer.loss_function = DiscoveryLoss()
    images = MetaTensor(torch.rand(2, 1, 4, 4, 4), meta={"filename_or_obj": ["a.nii.gz", "b.nii.gz"]})
    first = trainer.visual_target(images)
    second = trainer.visual_target(images)
    torch.testing.assert_close(first, 1.0 - images.as_tensor())
    torch.testing.assert_close(second, first)
    assert len(calls) == 2, "one denoising per volume, reused afterwards"
    trainer.visual_denoiser = None
    assert trainer.visual_target(images) is images


def _blob_images(count: int) -> list[dict]:
    """16^3 images of a bright cube (0.8) on a dark ground (0.2) with a little noise, each with its own file name."""
    generator = torch.Generator().manual_seed(0)
    items = []
    for index in range(count):
        image = torch.full((1, 16, 16, 16), 0.2)
        image[:, 4 + index : 12, 4:12, 4:12] = 0.8
        image = image + 0.02 * torch.randn(image.shape, generator=generator)
        items.append({"image": MetaTensor(image, meta={"filename_or_obj": f"volume{index}.nii.gz"})})
    return items


def test_warm_start_loss_is_the_cross_entropy_against_the_k_means_partitions():
    from monai_ext.baselines.kmeans import kmeans_segment, order_by_mean
    from monai_ext.engines.discovery import DiscoveryTrainer

    trainer = DiscoveryTrainer.__new__(DiscoveryTrainer)  # only the warm start's state, no engine
    trainer.segmenter, trainer._partitions = HierarchicalSegmenter(num_parts=(2, 3)), {}
    image = _blob_images(1)[0]["image"][None]
    masks = []
    for k in (2, 3):
        values = image[0].numpy()
        parts = torch.as_tensor(order_by_mean(kmeans_segment(values, k, channel_first=True), values, True))
        masks.append(torch.nn.functional.one_hot(parts, k).movedim(-1, 0)[None].float() * 0.9 + 0.1 / k)
    loss, terms = trainer.warm_start_loss(masks, image.as_tensor(), ["volume0.nii.gz"])
    expected = -np.log(0.9 + 0.1 / 2) - np.log(0.9 + 0.1 / 3)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert terms == {"loss_warm_start": pytest.approx(expected, rel=1e-5)}


def test_warm_start_targets_number_the_parts_alike_in_every_volume():
    """Regression: the k-means partitions were fitted with k-means' own numbering, which differs from volume to
    volume, so one network could not fit them (on the brains the cross-entropy stayed near log K). Each target now
    numbers its parts by ascending mean of the visual target."""
    from monai_ext.engines.discovery import DiscoveryTrainer

    trainer = DiscoveryTrainer.__new__(DiscoveryTrainer)  # only the warm start's state, no engine
    trainer.segmenter, trainer._partitions = HierarchicalSegmenter(num_parts=(3,)), {}
    generator = torch.Generator().manual_seed(0)
    for index in range(6):
        image = torch.rand(1, 1, 12, 12, 12, generator=generator) ** (index + 1)  # other cluster layouts
        masks = [torch.full((1, 3, 12, 12, 12), 1 / 3)]
        trainer.warm_start_loss(masks, image, [f"volume{index}.nii.gz"])
        target = trainer._partitions[f"volume{index}.nii.gz"][0]
        means = [float(image[0, 0][target == part].mean()) for part in range(3)]
        assert means == sorted(means), f"volume {index}: part means {means} are not ascending"


def test_warm_start_epochs_fit_the_segmenter_to_the_k_means_partition_first():
    from ignite.engine import Events
    from monai.data import DataLoader

    from monai_ext.baselines.kmeans import kmeans_segment
    from monai_ext.engines.discovery import DiscoveryTrainer

    torch.manual_seed(0)
    items = _blob_images(4)
    network = HierarchicalSegmenter(num_parts=(2,), channels=(4, 8), strides=(2,), dropout=0.0)
    optimizer = torch.optim.Adam(network.parameters(), lr=0.03)
    trainer = DiscoveryTrainer(
        device="cpu", max_epochs=16, train_data_loader=DataLoader(items, batch_size=2), network=network,
        optimizer=optimizer, loss_function=DiscoveryLoss(lambda_f=0.0), feature_stages=[1], warm_start_epochs=15,
    )  # fmt: skip
    agreements, terms = [], []

    @trainer.on(Events.EPOCH_COMPLETED)
    def record(engine) -> None:
        terms.append(set(engine.state.output[0]))
        if engine.state.epoch != 15:
            return
        network.eval()
        with torch.no_grad():
            for item in items:
                parts = network(item["image"][None].as_tensor())[0].argmax(0).numpy()
                expected = kmeans_segment(item["image"].numpy(), 2, channel_first=True)
                agreements.append(max(np.mean(parts == expected), np.mean(parts != expected)))
        network.train()

    trainer.run()
    assert min(agreements) > 0.95  # after the warm start, the segmenter reproduces the k-means partition
    assert "loss_warm_start" in terms[14] and "loss_v" not in terms[14]
    assert "loss_v" in terms[15] and "loss_warm_start" not in terms[15]  # then eq. 4 trains
    with pytest.raises(ValueError, match="warm_start_epochs"):
        DiscoveryTrainer(
            device="cpu", max_epochs=2, train_data_loader=DataLoader(items), network=network, optimizer=optimizer,
            loss_function=DiscoveryLoss(lambda_f=0.0), feature_stages=[1], warm_start_epochs=2,
        )  # fmt: skip
