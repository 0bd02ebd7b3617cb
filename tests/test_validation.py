"""Input checks: ValidateImaged names the file, the key and the expected form; command-line flags parse."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor

from monai_ext.flags import as_flag
from monai_ext.transforms import ValidateImaged, ValidateMaskd


def _item(image: torch.Tensor, **extra) -> dict:
    return {"image": MetaTensor(image, meta={"filename_or_obj": "/data/case_007.nii.gz"}), **extra}


def test_a_good_volume_passes_unchanged():
    item = _item(torch.rand(1, 8, 8, 8), label=torch.zeros(1, 8, 8, 8))
    out = ValidateImaged("image", match_keys=["label"])(item)
    assert out["image"] is item["image"]


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (torch.rand(1, 8, 8), r"shape \(1, 8, 8\); expected 3 spatial dimensions"),
        (torch.rand(2, 8, 8, 8), "2 channels; the network .*network_def#in_channels.* expects 1"),
        (torch.full((1, 8, 8, 8), float("nan")), "NaN"),
        (torch.ones(1, 8, 8, 8), "is constant"),
        (torch.tensor([-3e38, 3e38]).repeat(256).reshape(1, 8, 8, 8), "overflows float32"),  # issue 29, case 3
    ],
)
def test_bad_volumes_name_file_and_key(image, message):
    with pytest.raises(ValueError, match=message) as error:
        ValidateImaged("image")(_item(image))
    assert "'image' of '/data/case_007.nii.gz'" in str(error.value)


def test_a_picture_with_transparency_is_not_four_contrasts():
    """Issue 29, case 13: an RGBA PNG was accepted as four MR contrasts."""
    rgba = MetaTensor(torch.rand(4, 8, 8), meta={"filename_or_obj": "/data/photo.png", "mode": "RGBA"})
    with pytest.raises(ValueError, match=r"'image' of '/data/photo.png' is a RGBA picture: its alpha"):
        ValidateImaged("image", spatial_dims=2, channels=4, channels_config_id="image_channels")({"image": rgba})
    rgb = MetaTensor(torch.rand(3, 8, 8), meta={"filename_or_obj": "/data/photo.png", "mode": "RGB"})
    ValidateImaged("image", spatial_dims=2, channels=3)({"image": rgb})  # colour without alpha is image data


def test_label_of_another_shape_is_rejected():
    item = _item(torch.rand(1, 8, 8, 8), label=torch.zeros(1, 8, 8, 6))
    with pytest.raises(ValueError, match=r"case_007.*\(8, 8, 6\)"):
        ValidateImaged("image", match_keys=["label"])(item)


def test_masks_must_be_binary_and_may_be_empty():
    mask = MetaTensor(torch.zeros(1, 8, 8), meta={"filename_or_obj": "/data/z040_label.nii.gz"})
    assert ValidateMaskd("label")({"label": mask})["label"] is mask  # an empty mask is a valid slice
    with pytest.raises(ValueError, match=r"'label' of '/data/z040_label.nii.gz' must be a binary mask.*2\.0"):
        ValidateMaskd("label")({"label": mask + 2})
    with pytest.raises(ValueError, match="2 channels; expected 1"):
        ValidateMaskd("label")({"label": torch.zeros(2, 8, 8)})


def test_png_masks_of_0_and_255_leave_as_0_and_1():
    png = torch.zeros(1, 8, 8, dtype=torch.uint8)
    png[0, 2:5, 3:6] = 255
    scaled = ValidateMaskd("label", foreground_value=255)({"label": png})["label"]
    assert scaled.dtype == torch.uint8 and torch.equal(scaled, (png > 0).to(torch.uint8))
    with pytest.raises(ValueError, match=r"values 0 and 255, config id mask_foreground_value\), got values \[0, 1\]"):
        ValidateMaskd("label", foreground_value=255)({"label": (png > 0).to(torch.uint8)})
    with pytest.raises(ValueError, match="foreground_value must be > 0"):
        ValidateMaskd("label", foreground_value=0)


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="spatial_dims"):
        ValidateImaged("image", spatial_dims=4)
    with pytest.raises(ValueError, match="channels"):
        ValidateImaged("image", channels=0)


@pytest.mark.parametrize(
    ("value", "expected"), [(True, True), ("false", False), ("True", True), (0, False), ("1", True)]
)
def test_command_line_flags_mean_what_they_say(value, expected):
    assert as_flag(value, "overwrite") is expected


def test_other_flag_values_name_the_option():
    with pytest.raises(ValueError, match="option 'use_feature_cache' must be True or False, got 'maybe'"):
        as_flag("maybe", "use_feature_cache")
