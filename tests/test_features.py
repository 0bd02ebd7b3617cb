"""Pixel coordinates appended to an embedding before condensation (SLIC-style colour + position)."""

from __future__ import annotations

import pytest
import torch

from monai_ext.transforms import AppendCoordinates, AppendCoordinatesd


@pytest.mark.parametrize("spatial", [(6, 9), (4, 5, 3)])
@pytest.mark.parametrize("weight", [0.5, 2.0])
def test_coordinates_are_centred_and_scaled_to_the_features(spatial: tuple[int, ...], weight: float) -> None:
    features = torch.randn(7, *spatial) * torch.arange(1, 8).reshape(7, *[1] * len(spatial))
    out = AppendCoordinates(weight)(features)
    assert out.shape == (7 + len(spatial), *spatial)
    torch.testing.assert_close(out[:7], features)
    coordinates = out[7:].reshape(len(spatial), -1)
    spread = features.reshape(7, -1).std(dim=1).square().sum().sqrt()
    torch.testing.assert_close(coordinates.std(dim=1).square().sum().sqrt(), weight * spread)
    torch.testing.assert_close(coordinates.mean(dim=1), torch.zeros(len(spatial)), atol=1e-5, rtol=0)
    for axis in range(len(spatial)):  # coordinate `axis` grows along that axis only, by equal steps
        steps = out[7 + axis].diff(dim=axis)
        torch.testing.assert_close(steps, torch.full_like(steps, float(steps.flatten()[0])))
        assert steps.flatten()[0] > 0
        for other in set(range(len(spatial))) - {axis}:
            assert torch.all(out[7 + axis].diff(dim=other) == 0)


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="weight must be > 0"):
        AppendCoordinates(0.0)
    features = torch.zeros(3, 4, 4)
    features[1, 2, 2] = float("nan")
    with pytest.raises(ValueError, match=r"key 'pred'.*NaN"):
        AppendCoordinatesd("pred")({"pred": features})
    with pytest.raises(ValueError, match=r"\(C, \*spatial\)"):
        AppendCoordinates()(torch.zeros(5))
