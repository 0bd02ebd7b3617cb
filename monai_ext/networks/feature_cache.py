"""Reuse the features of a frozen diffusion model across epochs (Tursynbek & Niethammer, MICCAI 2023)."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import torch

from monai_ext.networks.feature_extractor import DiffusionFeatureExtractor
from monai_ext.weights import atomic_save

STORAGES = ("memory", "disk")
ENTRY_FORMAT = 2  # 2: plain tensors (entries of format 1 could hold MetaTensors, which weights_only loading refuses)


class FeatureCache:
    """Decoder activations of a frozen extractor, computed once per (volume, noise draw) and reused.

    The diffusion model does not change while the discovery network trains, so the features of each training
    volume for each of ``num_draws`` noise draws can be computed once. They are kept on the stages' own (coarse)
    grids in ``dtype`` (float16 by default), in memory or as ``.pt`` files, and upsampled when used. The noise of
    draw d of volume v comes from a generator seeded by (seed, v, d), so a cache entry equals what
    ``extractor.native(x0, noise)`` gives with that noise, whether it was computed now or in an earlier run.
    Disk entries are named by a fingerprint of the extractor (U-Net weights, stages, timestep, input size, padding) and
    of the storage settings, so a folder shared by runs with another diffusion checkpoint or other stages never
    serves their features. Each training step samples one of the draws (the draws act as an augmentation; the
    paper's averaged features are ``DiffusionFeatureExtractor.native_mean``).

    Args:
        extractor: the frozen ``DiffusionFeatureExtractor``.
        num_draws: distinct noise draws kept per volume, >= 1; each call uses one, drawn at random.
        storage: ``"memory"`` or ``"disk"``.
        cache_dir: folder of the ``.pt`` files when ``storage="disk"`` (created then; ignored in memory).
        dtype: storage dtype.
        seed: seed of the noise and of the choice of draw.
    """

    def __init__(
        self,
        extractor: DiffusionFeatureExtractor,
        num_draws: int = 4,
        storage: str = "memory",
        cache_dir: str | Path | None = None,
        dtype: torch.dtype = torch.float16,
        seed: int = 0,
    ) -> None:
        if num_draws < 1:
            raise ValueError(f"num_draws must be >= 1, got {num_draws}.")
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {STORAGES}, got '{storage}'.")
        if storage == "disk" and cache_dir is None:
            raise ValueError("storage='disk' needs cache_dir.")
        self.extractor = extractor
        self.num_draws = num_draws
        self.storage = storage
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        if storage == "disk":
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.dtype = dtype
        self.seed = seed
        self.fingerprint = self._fingerprint() if storage == "disk" else None  # names disk entries only
        self._memory: dict[tuple[str, int], dict[int, torch.Tensor]] = {}
        self._choice = torch.Generator().manual_seed(seed)
        self.hits = 0
        self.misses = 0

    def noise(self, key: str, draw: int, shape: Sequence[int]) -> torch.Tensor:
        """The noise of draw ``draw`` of volume ``key`` (shape of the U-Net input for one volume)."""
        generator = torch.Generator().manual_seed(zlib.crc32(f"{self.seed}|{key}|{draw}".encode()))
        return torch.randn(tuple(shape), generator=generator)

    def _fingerprint(self) -> str:
        """Checksum of everything an entry depends on besides the volume and the draw."""
        checksum = zlib.crc32(
            repr(
                (
                    ENTRY_FORMAT,
                    self.extractor.stages,
                    self.extractor.timestep,
                    self.extractor.input_size,
                    self.extractor.padding,
                    self.dtype,
                    self.seed,
                )
            ).encode()
        )
        for tensor in self.extractor.unet.state_dict().values():
            checksum = zlib.crc32(tensor.detach().cpu().contiguous().numpy().tobytes(), checksum)
        return f"{checksum:08x}"

    def _path(self, key: str, draw: int) -> Path:
        assert self.cache_dir is not None
        return self.cache_dir / f"{self.fingerprint}_{zlib.crc32(key.encode()):08x}_{draw}.pt"

    def _load(self, key: str, draw: int) -> dict[int, torch.Tensor] | None:
        if self.storage == "memory":
            return self._memory.get((key, draw))
        path = self._path(key, draw)
        return torch.load(path, weights_only=True) if path.is_file() else None

    def _store(self, key: str, draw: int, native: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        """Keep the compact copy and return it, so a first use sees the same values as every later one."""
        # plain tensors: a MetaTensor (the features of a loaded image) would pickle its metadata, which the safe
        # ``torch.load(weights_only=True)`` of a later run refuses
        compact = {s: f.detach().to("cpu", self.dtype).as_subclass(torch.Tensor) for s, f in native.items()}
        if self.storage == "memory":
            self._memory[(key, draw)] = compact
        else:
            atomic_save(compact, self._path(key, draw))
        return compact

    def native(self, x0: torch.Tensor, keys: Sequence[str], draw: int | None = None) -> dict[int, torch.Tensor]:
        """Stage activations of a batch (as ``extractor.native``), from the cache where present.

        Args:
            x0: clean images (B, C, *spatial) in [0, 1].
            keys: one identifier per volume (its file name), stable across epochs.
            draw: the noise draw to use; None picks one at random for each volume.
        """
        if len(keys) != x0.shape[0]:
            raise ValueError(f"need one key per volume: {len(keys)} keys for a batch of {x0.shape[0]}.")
        per_volume = []
        for index, key in enumerate(keys):
            d = int(torch.randint(self.num_draws, (1,), generator=self._choice)) if draw is None else draw
            if not 0 <= d < self.num_draws:
                raise ValueError(f"draw must be in [0, {self.num_draws}), got {d}.")
            cached = self._load(key, d)
            if cached is None:
                self.misses += 1
                volume = x0[index : index + 1]
                noise = self.noise(key, d, self.extractor.unet_input(volume).shape)
                cached = self._store(key, d, self.extractor.native(volume, noise=noise))
            else:
                self.hits += 1
            per_volume.append(cached)
        return {s: torch.cat([v[s] for v in per_volume]).to(x0.device, torch.float32) for s in self.extractor.stages}
