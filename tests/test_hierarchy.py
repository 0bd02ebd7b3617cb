"""Tests for monai_ext.transforms.hierarchy and monai_ext.visualize: level splitting, hierarchy trees, writers."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Engine
from matplotlib.image import imread
from monai.data import MetaTensor

from monai_ext.engines import DiscoveryFigureWriter, HierarchyWriter
from monai_ext.transforms import (
    HierarchyAccumulator,
    SplitLevelsd,
    hierarchy_tree,
    level_label_maps,
    level_output_transform,
    level_slices,
    split_levels,
)
from monai_ext.visualize import discovery_figure

NUM_PARTS = [2, 4]


def _probs_from_maps(maps: list[np.ndarray], num_parts: list[int]) -> torch.Tensor:
    """Concatenated one-hot 'probabilities' (sum K, *S) whose per-level argmax is ``maps``."""
    return torch.cat(
        [
            torch.nn.functional.one_hot(torch.as_tensor(m), k).movedim(-1, 0).float()
            for m, k in zip(maps, num_parts, strict=True)
        ]
    )


def _nested_maps() -> tuple[np.ndarray, np.ndarray]:
    """4x4 coarse = left/right halves; fine = quadrants, fine parts 0,1 in coarse 0 and 2,3 in coarse 1."""
    coarse = np.zeros((4, 4), dtype=np.int64)
    coarse[:, 2:] = 1
    fine = np.zeros((4, 4), dtype=np.int64)
    fine[2:, :2] = 1
    fine[:2, 2:] = 2
    fine[2:, 2:] = 3
    return coarse, fine


# ---------------------------------------------------------------------------------------------------------------
# level_slices, split_levels, level_label_maps, level_output_transform


def test_level_slices():
    assert level_slices([2, 4, 8]) == [slice(0, 2), slice(2, 6), slice(6, 14)]


@pytest.mark.parametrize("bad", [[], [1, 4], [2, 0], [2.0, 4], [True, 4]])
def test_level_slices_rejects(bad):
    with pytest.raises(ValueError, match="K >= 2"):
        level_slices(bad)


def test_split_levels():
    probs = torch.arange(6 * 3, dtype=torch.float32).reshape(6, 3)
    low, high = split_levels(probs, [2, 4])
    assert torch.equal(low, probs[:2]) and torch.equal(high, probs[2:])
    assert [a.shape for a in split_levels(np.zeros((6, 2, 2)), [2, 4])] == [(2, 2, 2), (4, 2, 2)]


@pytest.mark.parametrize("shape", [(5, 3, 3), (7, 3, 3), (6,), (1, 6, 3, 3)])
def test_split_levels_wrong_channels(shape):
    with pytest.raises(ValueError, match=r"sum\(num_parts\)"):
        split_levels(torch.zeros(shape), [2, 4])


def test_level_label_maps_dtype_checked():
    with pytest.raises(ValueError, match="integer type"):
        level_label_maps(torch.zeros(6, 2), [2, 4], dtype=torch.float32)
    with pytest.raises(ValueError, match="integer type"):
        level_label_maps(torch.zeros(302, 2), [2, 300], dtype=torch.uint8)


def test_level_output_transform():
    coarse, fine = _nested_maps()
    probs = _probs_from_maps([coarse, fine], NUM_PARTS)
    label = torch.stack([torch.as_tensor(coarse), torch.as_tensor(fine)])
    output = [{"pred": probs, "label": label}, {"pred": probs * 2, "label": label + 0}]
    preds, labels = level_output_transform(NUM_PARTS, level=1)(output)
    assert len(preds) == len(labels) == 2
    assert torch.equal(preds[1], probs[2:] * 2)
    assert labels[0].shape == (1, 4, 4) and torch.equal(labels[0][0], torch.as_tensor(fine))
    preds, none = level_output_transform(NUM_PARTS, level=0, label=False)(output)
    assert none is None and torch.equal(preds[0], probs[:2])
    # a batched dict is decollated first
    batched = {"pred": torch.stack([probs, probs]), "label": torch.stack([label, label])}
    preds, labels = level_output_transform(NUM_PARTS, level=0)(batched)
    assert len(preds) == 2 and torch.equal(labels[1][0], torch.as_tensor(coarse))


def test_level_output_transform_rejects():
    with pytest.raises(ValueError, match=r"0-based level index in 0 \.\. 1"):
        level_output_transform(NUM_PARTS, level=2)
    short_label = [{"pred": torch.zeros(9, 2, 2), "label": torch.zeros(2, 2, 2)}]
    with pytest.raises(ValueError, match="at least 3 channels"):
        level_output_transform([2, 3, 4], level=2)(short_label)


def test_a_one_channel_label_scores_every_level():
    """One label map (a tumour mask) scores every level, e.g. the 3 merged and the 6 trained parts."""
    label = torch.randint(0, 2, (1, 2, 2))
    output = [{"pred": torch.rand(6, 2, 2), "label": label}]
    for level in (0, 1):
        _, labels = level_output_transform(NUM_PARTS, level=level)(output)
        assert torch.equal(labels[0], label)


# ---------------------------------------------------------------------------------------------------------------
# SplitLevelsd


def test_split_levelsd():
    coarse, fine = _nested_maps()
    meta = {"filename_or_obj": "case_1.nii.gz", "affine": torch.diag(torch.tensor([2.0, 2.0, 1.0]))}
    probs = MetaTensor(_probs_from_maps([coarse, fine], NUM_PARTS) * 0.5 + 0.1, meta=meta)
    out = SplitLevelsd("pred", num_parts=NUM_PARTS)({"pred": probs, "image": 1})
    assert set(out) == {"pred", "image", "pred_l1", "pred_l2"}
    assert out["pred"] is probs
    for key, expected in (("pred_l1", coarse), ("pred_l2", fine)):
        m = out[key]
        assert isinstance(m, MetaTensor) and m.dtype == torch.uint8 and m.shape == (1, 4, 4)
        np.testing.assert_array_equal(m[0].numpy(), expected)
        assert m.meta["filename_or_obj"] == "case_1.nii.gz"
        assert torch.equal(m.affine, meta["affine"].double())
    custom = SplitLevelsd("pred", num_parts=NUM_PARTS, postfix="_level{level}", dtype=torch.int64)({"pred": probs})
    assert custom["pred_level2"].dtype == torch.int64


def test_split_levelsd_rejects():
    with pytest.raises(ValueError, match="must contain"):
        SplitLevelsd(num_parts=NUM_PARTS, postfix="_split")
    with pytest.raises(ValueError, match="K >= 2"):
        SplitLevelsd(num_parts=[1])
    with pytest.raises(ValueError, match=r"sum\(num_parts\)"):
        SplitLevelsd(num_parts=NUM_PARTS)({"pred": torch.zeros(5, 2, 2)})


# ---------------------------------------------------------------------------------------------------------------
# hierarchy_tree, HierarchyAccumulator


def test_tree_perfectly_nested():
    coarse, fine = _nested_maps()
    tree = hierarchy_tree([coarse, fine], NUM_PARTS)
    assert tree["num_parts"] == NUM_PARTS and tree["voxels"] == 16
    (pair,) = tree["pairs"]
    assert (pair["coarse_level"], pair["fine_level"]) == (1, 2)
    assert pair["contingency"] == [[4, 0], [4, 0], [0, 4], [0, 4]]
    assert [p["parent"] for p in pair["parts"]] == [0, 0, 1, 1]
    assert [p["voxels"] for p in pair["parts"]] == [4, 4, 4, 4]
    assert [p["outside_share"] for p in pair["parts"]] == [0.0] * 4
    assert pair["children"] == [[0, 1], [2, 3]]
    assert pair["break_share"] == 0.0
    json.dumps(tree)  # plain JSON


def test_tree_broken_nesting():
    coarse, fine = _nested_maps()
    fine = fine.copy()
    fine[0, 2] = 0  # one voxel of coarse part 1 now in fine part 0 (parent 0): breaks the nesting
    fine[3, 0:2] = 3  # two voxels of coarse part 0 in fine part 3 (parent 1)
    fine[1, 1] = 2  # one voxel of coarse part 0 in fine part 2 (parent 1)
    tree = hierarchy_tree([torch.as_tensor(coarse), torch.as_tensor(fine)], NUM_PARTS)
    (pair,) = tree["pairs"]
    # by hand: fine 0 = 3 in coarse 0 + 1 in coarse 1; fine 1 = 2 in coarse 0; fine 2 = 1 + 3; fine 3 = 2 + 4
    assert pair["contingency"] == [[3, 1], [2, 0], [1, 3], [2, 4]]
    assert [p["parent"] for p in pair["parts"]] == [0, 0, 1, 1]
    assert [p["outside_share"] for p in pair["parts"]] == pytest.approx([1 / 4, 0.0, 1 / 4, 2 / 6])
    assert pair["break_share"] == pytest.approx(4 / 16)


def test_tree_empty_part_and_three_levels():
    top = np.zeros(8, dtype=np.int64)
    mid = np.array([0, 0, 0, 0, 2, 2, 2, 2])  # part 1 and 3 empty
    low = np.array([0, 1, 2, 3, 4, 5, 6, 7])
    tree = hierarchy_tree([top, mid, low], [2, 4, 8])
    first, second = tree["pairs"]
    assert first["parts"][1] == {"part": 1, "parent": None, "voxels": 0, "outside_share": None}
    assert first["children"] == [[0, 2], []]
    assert [p["parent"] for p in second["parts"]] == [0, 0, 0, 0, 2, 2, 2, 2]
    assert second["break_share"] == 0.0


@pytest.mark.parametrize(
    ("maps", "num_parts", "match"),
    [
        ([np.zeros(4, dtype=int)], [2, 4], "one label map per level"),
        ([np.zeros(4, dtype=int), np.zeros(5, dtype=int)], [2, 4], "one shape"),
        ([np.zeros(4, dtype=int), np.full(4, 4)], [2, 4], r"0 \.\. 3"),
        ([np.zeros(4), np.full(4, 0.5)], [2, 4], "non-integer"),
        ([np.zeros(4, dtype=int)], [2], "at least 2 level"),
    ],
)
def test_tree_rejects(maps, num_parts, match):
    with pytest.raises(ValueError, match=match):
        hierarchy_tree(maps, num_parts)


def test_accumulator_equals_concatenated_volumes():
    rng = np.random.default_rng(0)
    vols = [[rng.integers(0, k, size=shape) for k in (2, 4, 8)] for shape in ((3, 4, 5), (2, 6, 2))]
    acc = HierarchyAccumulator([2, 4, 8])
    with pytest.raises(ValueError, match="no voxel"):
        acc.tree()
    for maps in vols:
        acc.add(maps)
    together = [np.concatenate([v[level].ravel() for v in vols]) for level in range(3)]
    assert acc.tree() == hierarchy_tree(together, [2, 4, 8])
    assert acc.tree() != hierarchy_tree(vols[0], [2, 4, 8])
    acc.reset()
    acc.add(vols[1])
    assert acc.tree() == hierarchy_tree(vols[1], [2, 4, 8])


# ---------------------------------------------------------------------------------------------------------------
# handlers on a tiny ignite Engine


def _items(with_meta: bool = True) -> list[dict]:
    """Two decollated items: a nested 3D volume and a broken one (16 voxels each), with labels."""
    coarse, fine = _nested_maps()
    broken = fine.copy()
    broken[0, 2] = 0
    items = []
    for name, f in (("/data/a.nii.gz", fine), ("/data/b.nii.gz", broken)):
        maps3d = [np.repeat(m[..., None], 2, axis=-1) for m in (coarse, f)]  # (4, 4, 2): 32 voxels
        meta = {"filename_or_obj": name} if with_meta else {}
        items.append(
            {
                "image": MetaTensor(torch.rand(1, 8, 8, 4)),  # another grid than pred, as before Invertd
                "pred": MetaTensor(_probs_from_maps(maps3d, NUM_PARTS), meta=meta),
                "label": torch.as_tensor(np.stack(maps3d)),
            }
        )
    return items


def _run(handler, items: list[dict]) -> Engine:
    engine = Engine(lambda engine, batch: batch)
    handler.attach(engine)
    engine.run([items[:1], items[1:]], max_epochs=1)
    return engine


def test_hierarchy_writer(tmp_path):
    items = _items()
    _run(HierarchyWriter(tmp_path / "out", num_parts=NUM_PARTS), items)
    content = json.loads((tmp_path / "out" / "hierarchy.json").read_text())
    assert content["num_parts"] == NUM_PARTS
    assert list(content["volumes"]) == ["/data/a.nii.gz", "/data/b.nii.gz"]
    assert content["volumes"]["/data/a.nii.gz"]["pairs"][0]["break_share"] == 0.0
    assert content["volumes"]["/data/b.nii.gz"]["pairs"][0]["break_share"] == pytest.approx(2 / 32)
    assert content["dataset"]["voxels"] == 64
    assert content["dataset"]["pairs"][0]["break_share"] == pytest.approx(2 / 64)

    with pytest.raises(FileExistsError, match="overwrite=True"):
        HierarchyWriter(tmp_path / "out", num_parts=NUM_PARTS).attach(Engine(lambda e, b: b))
    # overwrite: a second run restarts the counts and names volumes without meta by index
    _run(HierarchyWriter(tmp_path / "out", num_parts=NUM_PARTS, overwrite=True), _items(with_meta=False))
    content = json.loads((tmp_path / "out" / "hierarchy.json").read_text())
    assert list(content["volumes"]) == ["0", "1"] and content["dataset"]["voxels"] == 64


def test_writers_restart_at_each_run(tmp_path):
    """An evaluator run every few epochs rewrites the files with its latest run only."""
    hierarchy = HierarchyWriter(tmp_path, num_parts=NUM_PARTS)
    figure = DiscoveryFigureWriter(tmp_path, num_parts=NUM_PARTS)
    engine = Engine(lambda engine, batch: batch)
    hierarchy.attach(engine)
    figure.attach(engine)
    for _ in range(2):
        engine.run([_items()], max_epochs=1)
    content = json.loads((tmp_path / "hierarchy.json").read_text())
    assert content["dataset"]["voxels"] == 64 and len(content["volumes"]) == 2
    assert len(figure.images) == 2


def test_hierarchy_writer_rejects_wrong_channels(tmp_path):
    with pytest.raises(ValueError, match=r"sum\(num_parts\)"):
        _run(HierarchyWriter(tmp_path, num_parts=[2, 8]), _items())


def test_discovery_figure_writer(tmp_path):
    items = _items()
    writer = DiscoveryFigureWriter(tmp_path, num_parts=NUM_PARTS, num_volumes=1)
    _run(writer, items)
    assert len(writer.images) == 1 and writer.titles == ["a.nii.gz"]
    assert writer.level_maps[0].shape == (2, 4, 4, 2) and writer.labels[0].shape == (2, 4, 4, 2)
    image = imread(tmp_path / "discovery.png")
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 5 * 50  # 1 row, 5 columns
    with pytest.raises(FileExistsError, match="overwrite=True"):
        DiscoveryFigureWriter(tmp_path, num_parts=NUM_PARTS).attach(Engine(lambda e, b: b))
    no_label = DiscoveryFigureWriter(tmp_path, num_parts=NUM_PARTS, label_key=None, overwrite=True)
    _run(no_label, items)
    assert no_label.labels == [None, None]
    narrower = imread(tmp_path / "discovery.png")
    assert narrower.shape[1] < image.shape[1]  # no ground-truth columns


def test_discovery_figure_writer_rejects():
    with pytest.raises(ValueError, match="num_volumes"):
        DiscoveryFigureWriter(".", num_volumes=0)
    with pytest.raises(ValueError, match=r"'\.png'"):
        DiscoveryFigureWriter(".", filename="sub/fig.png")


# ---------------------------------------------------------------------------------------------------------------
# discovery_figure


def test_discovery_figure_with_and_without_labels(tmp_path, monkeypatch):
    coarse, fine = _nested_maps()
    perm = np.array([3, 2, 1, 0])  # predicted parts are a permutation of the ground-truth labels
    images = [np.random.default_rng(0).random((1, 4, 4))] * 2
    preds = [[1 - coarse, perm[fine]], np.stack([coarse, fine])]
    gts = [np.stack([coarse, fine]), None]

    import monai_ext.visualize as vis

    seen = []
    real = vis._recolour

    def spy(pred, label):
        out = real(pred, label)
        seen.append(out)
        return out

    monkeypatch.setattr(vis, "_recolour", spy)
    path = discovery_figure(tmp_path / "figs" / "with.png", images, preds, gts, titles=["a", "b"])
    assert imread(path).ndim == 3
    # the permuted parts are recoloured onto the ground truth, with a perfect matched Dice
    np.testing.assert_array_equal(seen[0][0], coarse)
    np.testing.assert_array_equal(seen[1][0], fine)
    assert [d for _, d in seen] == [1.0, 1.0]

    plain = discovery_figure(tmp_path / "without.png", images, preds)
    assert imread(plain).shape[1] < imread(path).shape[1]


def test_discovery_figure_unmatched_parts_get_new_colours():
    from monai_ext.visualize import _recolour

    label = np.array([0, 0, 0, 1, 1, 1])
    pred = np.array([2, 2, 0, 1, 1, 3])  # part 2 -> class 0, part 1 -> class 1 (Dice 0.8); parts 0, 3 unmatched
    recoloured, dice = _recolour(pred, label)
    np.testing.assert_array_equal(recoloured, [0, 0, 2 + 0, 1, 1, 2 + 3])  # unmatched: max(label) + 1 + part
    assert dice == pytest.approx(0.8)


@pytest.mark.parametrize(
    ("images", "maps", "labels", "match"),
    [
        ([], [], None, "one entry per volume"),
        ([np.zeros((1, 4, 4))], [[np.zeros((4, 4))], [np.zeros((4, 4))]], None, "one entry per volume"),
        ([np.zeros((4, 4))], [[np.zeros((4, 4))]], None, "channel-first"),
        ([np.zeros((1, 4, 4))], [[np.zeros((4, 4)), np.zeros((3, 4))]], None, "one shape"),
        ([np.zeros((1, 4, 4))], [[np.zeros((4, 4))] * 3], [np.zeros((2, 4, 4))], "one channel per level"),
    ],
)
def test_discovery_figure_rejects(tmp_path, images, maps, labels, match):
    with pytest.raises(ValueError, match=match):
        discovery_figure(tmp_path / "x.png", images, maps, labels)


def test_discovery_figure_draws_a_one_channel_label_at_every_level(tmp_path):
    """A tumour mask beside the 3 merged and the 6 trained parts (merged_parts): one label for both levels."""
    label = np.zeros((1, 8, 8), dtype=np.int64)
    label[0, 2:4, 2:4] = 1
    maps = [np.arange(64).reshape(8, 8) % 3, np.arange(64).reshape(8, 8) % 6]
    discovery_figure(tmp_path / "x.png", [np.random.rand(1, 8, 8)], [maps], [label])
    assert (tmp_path / "x.png").stat().st_size > 0


def test_discovery_figure_writer_reads_the_stored_image_when_asked(tmp_path):
    items = _items()
    stored = tmp_path / "a.nii.gz"
    nib.save(nib.Nifti1Image(np.random.rand(4, 4, 2).astype(np.float32), np.eye(4)), str(stored))
    items[0]["pred"].meta["filename_or_obj"] = str(stored)
    writer = DiscoveryFigureWriter(tmp_path / "fig", num_parts=NUM_PARTS, num_volumes=1, image_key=None)
    _run(writer, items)
    assert writer.images[0].shape == (1, 4, 4, 2)
    assert (tmp_path / "fig" / "discovery.png").stat().st_size > 0
    missing = DiscoveryFigureWriter(tmp_path / "fig2", num_parts=NUM_PARTS, image_key=None)
    with pytest.raises(ValueError, match="filename_or_obj"):
        _run(missing, _items(with_meta=False))
