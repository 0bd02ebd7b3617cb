"""The MONAI model zoo's checks on every bundle, and the zip ``package-bundle`` writes for the zoo.

The zoo's CI (``Project-MONAI/model-zoo`` ``ci/verify_bundle.py``) checks the required files, the version in the
changelog and the metadata, then runs ``monai.bundle.verify_net_in_out`` and ``monai.bundle.ckpt_export`` on
``network_def`` of ``configs/inference.json`` with ``bundle_root`` set to the bundle folder; so do these tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ckpt_export, verify_net_in_out

from monai_ext.zoo import (
    REQUIRED_FILES,
    WEIGHTS,
    bundle_files,
    file_problems,
    metadata_problems,
    package_bundle,
    read_metadata,
    version_problems,
    weight_problems,
)

ROOT = Path(__file__).resolve().parents[1]
BUNDLES = sorted(path.parent.parent.name for path in (ROOT / "bundles").glob("*/configs/metadata.json"))
# forward arguments besides the image, as verify_net_in_out's extra_forward_args
EXTRA_FORWARD_ARGS = {"diffusion_pretraining": {"timesteps": torch.tensor([0])}}
# bundles whose network ckpt_export cannot export (the zoo's exclude_verify_torchscript_list); each has a test
# below that asserts the failure, so a MONAI release that fixes it shows up
NOT_TORCHSCRIPT = {"diffusion_pretraining", "diffusion_segmentation"}
# bundles whose metadata describes the bundle's input and output rather than the raw network's (the zoo's
# exclude_verify_shape_list); each has a test below of what its network takes and returns
NOT_SHAPE_VERIFIED = {"diffusion_segmentation"}


def bundle_args(bundle: str) -> dict:
    root = ROOT / "bundles" / bundle
    return {
        "meta_file": str(root / "configs" / "metadata.json"),
        "config_file": str(root / "configs" / "inference.json"),
        "bundle_root": str(root),
    }


def eager_network(bundle: str) -> torch.nn.Module:
    """``network_def`` of the bundle's inference config with its shipped weights, in eval mode."""
    args = bundle_args(bundle)
    parser = ConfigParser()
    parser.read_config(args["config_file"])
    parser["bundle_root"] = args["bundle_root"]
    network = parser.get_parsed_content("network_def")
    network.load_state_dict(torch.load(Path(args["bundle_root"]) / WEIGHTS, map_location="cpu", weights_only=True))
    return network.eval()


def input_shape(bundle: str) -> list[int]:
    image = read_metadata(ROOT / "bundles" / bundle)["network_data_format"]["inputs"]["image"]
    return [1, image["num_channels"], *image["spatial_shape"]]


@pytest.mark.parametrize("bundle", BUNDLES)
def test_required_files(bundle):
    assert file_problems(ROOT / "bundles" / bundle) == []


@pytest.mark.parametrize("bundle", BUNDLES)
def test_version_is_in_changelog(bundle):
    assert version_problems(read_metadata(ROOT / "bundles" / bundle)) == []


@pytest.mark.parametrize("bundle", BUNDLES)
def test_metadata_keys(bundle):
    assert metadata_problems(read_metadata(ROOT / "bundles" / bundle)) == []


@pytest.mark.parametrize("bundle", BUNDLES)
def test_weights_are_plain_state_dicts(bundle):
    assert weight_problems(ROOT / "bundles" / bundle) == []


@pytest.mark.parametrize("bundle", sorted(set(BUNDLES) - NOT_SHAPE_VERIFIED))
def test_verify_net_in_out(bundle):
    verify_net_in_out(
        net_id="network_def", device="cpu", extra_forward_args=EXTRA_FORWARD_ARGS.get(bundle, {}), **bundle_args(bundle)
    )


@pytest.mark.parametrize("bundle", sorted(set(BUNDLES) - NOT_TORCHSCRIPT))
def test_torchscript_export_matches_the_network(bundle, tmp_path):
    """ckpt_export scripts the network when it can, else traces it on an input of the metadata's shape."""
    path, args = tmp_path / "model.ts", bundle_args(bundle)
    try:
        ckpt_export(net_id="network_def", filepath=str(path), ckpt_file=f"{args['bundle_root']}/{WEIGHTS}", **args)
    except RuntimeError:  # TorchScript cannot compile it (HierarchicalSegmenter, at present)
        ckpt_export(
            net_id="network_def",
            filepath=str(path),
            ckpt_file=f"{args['bundle_root']}/{WEIGHTS}",
            use_trace=True,
            input_shape=input_shape(bundle),
            **args,
        )
    extra = {"metadata.json": ""}
    exported = torch.jit.load(str(path), map_location="cpu", _extra_files=extra).eval()
    assert json.loads(extra["metadata.json"])["version"] == read_metadata(args["bundle_root"])["version"]
    network, shape = eager_network(bundle), input_shape(bundle)
    torch.manual_seed(0)
    for size in (shape, [2, shape[1], *[32] * (len(shape) - 2)]):  # the metadata's shape, another batch and grid
        x = torch.rand(size)
        with torch.no_grad():
            torch.testing.assert_close(exported(x), network(x))


def test_diffusion_unet_needs_the_zoo_exclusions(tmp_path):
    """MONAI's DiffusionModelUNet does not script (SpatialAttentionBlock reshapes with ``*shape[:2]``) and
    ckpt_export's tracing feeds only the image, not the timesteps forward() needs: the bundle is not exportable
    with ``ckpt_export``, as the zoo's generative bundles (exclude_verify_torchscript_list). The zoo's own
    verify_net_in_out passes no timesteps either (exclude_verify_shape_list). A manual
    ``torch.jit.trace(net, (x, t))`` works."""
    args = bundle_args("diffusion_pretraining")
    with pytest.raises(TypeError, match="timesteps"):
        verify_net_in_out(net_id="network_def", device="cpu", **args)
    export = {"net_id": "network_def", "ckpt_file": f"{args['bundle_root']}/{WEIGHTS}", **args}
    with pytest.raises(RuntimeError, match="spatialattention"):
        ckpt_export(filepath=str(tmp_path / "scripted.ts"), **export)
    with pytest.raises(TypeError, match="timesteps"):
        ckpt_export(filepath=str(tmp_path / "traced.ts"), use_trace=True, **export)
    network = eager_network("diffusion_pretraining")
    with torch.no_grad():
        traced = torch.jit.trace(network, (torch.rand(1, 1, 16, 16, 16), torch.tensor([0])))
        x, t = torch.rand(2, 1, 24, 24, 24), torch.tensor([10, 200])
        torch.testing.assert_close(traced(x, t), network(x, t))


def test_mask_diffusion_network_takes_the_noisy_mask_beside_the_image():
    """diffusion_segmentation's metadata describes what the bundle takes and gives (the four contrasts, one mask
    channel: what MONAI Label reads); its network takes the noisy mask concatenated to the image plus the timesteps
    and returns, per mask channel, the noise and the variance interpolation (learned variance). verify_net_in_out
    feeds the metadata's image alone and fails; the shipped weights are checked here, and traced with timesteps."""
    metadata = read_metadata(ROOT / "bundles" / "diffusion_segmentation")["network_data_format"]
    image, pred = metadata["inputs"]["image"], metadata["outputs"]["pred"]
    args = bundle_args("diffusion_segmentation")
    with pytest.raises(RuntimeError, match="channels"):
        verify_net_in_out(
            net_id="network_def", device="cpu", extra_forward_args={"timesteps": torch.tensor([0])}, **args
        )
    network = eager_network("diffusion_segmentation")
    torch.manual_seed(0)
    x = torch.rand(1, pred["num_channels"] + image["num_channels"], *image["spatial_shape"])
    with torch.no_grad():
        out = network(x, torch.tensor([0]))
        assert out.shape == (1, 2 * pred["num_channels"], *image["spatial_shape"])
        traced = torch.jit.trace(network, (x, torch.tensor([0])))
        x, t = torch.rand(2, *x.shape[1:2], 32, 32), torch.tensor([10, 900])
        torch.testing.assert_close(traced(x, t), network(x, t))


@pytest.fixture
def bundle_copy(tmp_path) -> Path:
    """A copy of bundles/structure_discovery in ``tmp_path/bundles``; returns the bundle folder."""
    copy = tmp_path / "bundles" / "structure_discovery"
    shutil.copytree(ROOT / "bundles" / "structure_discovery", copy, ignore=shutil.ignore_patterns("runs"))
    return copy


def test_packaged_bundle_runs_from_its_unzipped_folder(tmp_path, tiny_phantoms):
    package = ["package-bundle", "structure_discovery", "--out", tmp_path / "zips", "--bundles_dir", ROOT / "bundles"]
    result = subprocess.run(
        [sys.executable, "-m", "monai_ext", *map(str, package)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    version = read_metadata(ROOT / "bundles" / "structure_discovery")["version"]
    archive = tmp_path / "zips" / f"structure_discovery_v{version}.zip"
    with zipfile.ZipFile(archive) as zipped:
        names = zipped.namelist()
        zipped.extractall(tmp_path / "unzipped")
    assert all(name.startswith("structure_discovery/") for name in names)
    assert {f"structure_discovery/{path}" for path in [*REQUIRED_FILES, WEIGHTS]} <= set(names)
    assert not any("/runs/" in name or "__pycache__" in name for name in names)

    output = tmp_path / "inference"
    overrides = ["--dataset_dir", tiny_phantoms, "--output_dir", output, "--spatial_size", "[24,24,24]"]
    result = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.json", *map(str, overrides)],
        cwd=tmp_path / "unzipped" / "structure_discovery",
        env={**os.environ, "MONAI_EXT_CACHE": str(tmp_path / "cache")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    labels = sorted(output.rglob("*.nii.gz"))
    assert labels, f"no label maps written to {output}"
    for path in labels:
        label = np.asarray(nib.load(path).dataobj)
        assert label.shape == (24, 24, 24) and np.issubdtype(label.dtype, np.integer)


def test_package_leaves_out_run_outputs_and_caches(bundle_copy, tmp_path):
    for junk in ["runs/train/model.pt", "eval/schema.json", "__pycache__/x.pyc", "configs/.cache/a", ".DS_Store"]:
        (bundle_copy / junk).parent.mkdir(parents=True, exist_ok=True)
        (bundle_copy / junk).write_text("junk")
    archive = package_bundle("structure_discovery", str(tmp_path / "zips"), bundles_dir=str(bundle_copy.parent))
    with zipfile.ZipFile(archive) as zipped:
        names = zipped.namelist()
    assert names == [f"structure_discovery/{path}" for path in bundle_files(ROOT / "bundles" / "structure_discovery")]
    assert all(info.date_time == (2022, 5, 30, 0, 0, 0) for info in zipfile.ZipFile(archive).infolist())


@pytest.mark.parametrize("link", ["docs/passwd", "configs/elsewhere"])
def test_package_refuses_symbolic_links_and_never_follows_them(bundle_copy, tmp_path, link):
    """Issue 29, case 8: a link to /etc/passwd inside the bundle folder put /etc/passwd into the zip."""
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "passwd").write_text("root:x:0:0")
    (bundle_copy / link).symlink_to(secret / "passwd" if link.endswith("passwd") else secret)
    with pytest.raises(ValueError, match=rf"{link} is a symbolic link \(to '.*secret.*'\)"):
        package_bundle("structure_discovery", str(tmp_path / "zips"), bundles_dir=str(bundle_copy.parent))
    assert not (tmp_path / "zips").exists()
    assert not any("secret" in path or "passwd" in path for path in bundle_files(bundle_copy))


def test_package_is_reproducible_and_refuses_to_replace(bundle_copy, tmp_path):
    archive = package_bundle("structure_discovery", str(tmp_path / "zips"), bundles_dir=str(bundle_copy.parent))
    first = archive.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        package_bundle("structure_discovery", str(tmp_path / "zips"), bundles_dir=str(bundle_copy.parent))
    package_bundle("structure_discovery", str(tmp_path / "zips"), bundles_dir=str(bundle_copy.parent), overwrite="true")
    assert archive.read_bytes() == first


def test_package_refuses_a_bundle_without_license(bundle_copy, tmp_path):
    (bundle_copy / "LICENSE").unlink()
    with pytest.raises(ValueError, match="required file LICENSE is missing"):
        package_bundle("structure_discovery", str(tmp_path / "zips"), bundles_dir=str(bundle_copy.parent))
    assert not (tmp_path / "zips").exists()


def test_package_refuses_a_version_missing_from_the_changelog(bundle_copy, tmp_path):
    path = bundle_copy / "configs" / "metadata.json"
    metadata = json.loads(path.read_text())
    path.write_text(json.dumps({**metadata, "version": "9.9.9"}))
    with pytest.raises(ValueError, match=r"'version' '9.9.9' is not a key of its 'changelog'"):
        package_bundle("structure_discovery", str(tmp_path / "zips"), bundles_dir=str(bundle_copy.parent))
    assert not (tmp_path / "zips").exists()


def test_package_refuses_a_training_checkpoint(bundle_copy, tmp_path):
    path = bundle_copy / WEIGHTS
    torch.save({**torch.load(path, weights_only=True), "epoch": 3}, path)
    with pytest.raises(ValueError, match=r"models/model.pt is not a plain state dict: entries \['epoch'\]"):
        package_bundle("structure_discovery", str(tmp_path / "zips"), bundles_dir=str(bundle_copy.parent))
    assert not (tmp_path / "zips").exists()


def test_package_refuses_pickled_weights(bundle_copy, tmp_path):
    torch.save(torch.nn.Linear(2, 2), bundle_copy / "models" / "network.pt")
    with pytest.raises(ValueError, match=r"models/network.pt cannot be read with torch.load\(weights_only=True\)"):
        package_bundle("structure_discovery", str(tmp_path / "zips"), bundles_dir=str(bundle_copy.parent))


def test_large_files_are_linked_and_present_in_the_zip(bundle_copy, tmp_path):
    with (bundle_copy / "models" / "big.bin").open("wb") as big:
        big.truncate(26 * 2**20)
    assert file_problems(bundle_copy) == [
        "models/big.bin has 26 MB; the zoo stores files over 25 MB elsewhere: upload it and list its url in "
        "large_files.yml"
    ]
    links = [{"path": path, "url": f"https://example.org/{path}"} for path in ("models/big.bin", WEIGHTS)]
    (bundle_copy / "large_files.json").write_text(json.dumps({"large_files": links}))
    (bundle_copy / WEIGHTS).unlink()
    assert file_problems(bundle_copy) == []
    with pytest.raises(FileNotFoundError, match=r"\['models/model.pt'\] are listed in large_files"):
        package_bundle("structure_discovery", str(tmp_path / "zips"), bundles_dir=str(bundle_copy.parent))
    shutil.copy(ROOT / "bundles" / "structure_discovery" / WEIGHTS, bundle_copy / WEIGHTS)
    with zipfile.ZipFile(package_bundle("structure_discovery", str(tmp_path / "zips"), str(bundle_copy.parent))) as z:
        names = z.namelist()
    assert "structure_discovery/models/big.bin" in names and "structure_discovery/large_files.json" not in names


def test_package_refuses_an_unknown_bundle(tmp_path):
    with pytest.raises(FileNotFoundError, match="structure_discovery"):
        package_bundle("structure_discover", str(tmp_path), bundles_dir=str(ROOT / "bundles"))
    with pytest.raises(ValueError, match="folder name"):
        package_bundle("../bundles", str(tmp_path), bundles_dir=str(ROOT / "bundles"))
