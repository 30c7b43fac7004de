"""The proposal container shared by the generator, the loaders and the matchers."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from icnseg.errors import InputError


@dataclass(frozen=True)
class Proposals:
    """N mask proposals, optionally factorised as unions of one shared superpixel map.

    ``masks``: bool [N, H, W]. ``superpixels``: int32 [H, W] with labels 0..S-1, or None.
    ``membership``: bool [N, S], proposal n = union of superpixels s with membership[n, s],
    or None. Both factorisation fields are given together or not at all.
    """

    masks: np.ndarray
    superpixels: np.ndarray | None = None
    membership: np.ndarray | None = None
    # Derived per-set data (e.g. proposal contours for PRM scoring), computed once on demand.
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        masks = np.asarray(self.masks)
        if masks.ndim != 3:
            raise InputError(f"proposal masks must be [N, H, W], got shape {masks.shape}")
        object.__setattr__(self, "masks", masks.astype(bool, copy=False))
        if (self.superpixels is None) != (self.membership is None):
            raise InputError("superpixels and membership must be given together")
        if self.superpixels is None:
            return
        sp = np.asarray(self.superpixels)
        member = np.asarray(self.membership).astype(bool, copy=False)
        if sp.shape != masks.shape[1:]:
            raise InputError(f"superpixel map shape {sp.shape} != mask shape {masks.shape[1:]}")
        if member.ndim != 2 or member.shape[0] != masks.shape[0]:
            raise InputError(f"membership must be [N={masks.shape[0]}, S], got {member.shape}")
        if sp.size and (sp.min() < 0 or sp.max() >= member.shape[1]):
            raise InputError(f"superpixel labels must lie in [0, {member.shape[1]})")
        sp = sp.astype(np.int32, copy=False)
        # Cheap consistency check: each mask's area must equal its superpixels' total area.
        sp_area = np.bincount(sp.ravel(), minlength=member.shape[1])
        if not np.array_equal(member.astype(np.int64) @ sp_area, self.areas()):
            raise InputError("masks are not the unions of superpixels given by membership")
        object.__setattr__(self, "superpixels", sp)
        object.__setattr__(self, "membership", member)

    @classmethod
    def from_membership(cls, superpixels: np.ndarray, membership: np.ndarray,
                        check: bool = True) -> Proposals:
        """Build the masks of a superpixel factorisation: mask n = union of its superpixels."""
        sp = np.asarray(superpixels, dtype=np.int32)
        member = np.asarray(membership, dtype=bool)
        if member.ndim != 2 or sp.ndim != 2:
            raise InputError(f"need superpixels [H, W] and membership [N, S], got "
                             f"{sp.shape} and {member.shape}")
        if sp.size and (sp.min() < 0 or sp.max() >= member.shape[1]):
            raise InputError(f"superpixel labels must lie in [0, {member.shape[1]})")
        if check:
            return cls(np.take(member, sp, axis=1), sp, member)
        # consistent by construction: no area check, and the masks are made on first use
        out = object.__new__(_Factored)
        for name, value in (("superpixels", sp), ("membership", member), ("_cache", {})):
            object.__setattr__(out, name, value)
        return out

    def mask_rows(self, index: np.ndarray) -> np.ndarray:
        """The masks of the proposals ``index`` (int [M]), bool [M, H, W]."""
        return self.masks[np.asarray(index, dtype=np.int64)]

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        """Image size (H, W) the masks live on."""
        return int(self.masks.shape[1]), int(self.masks.shape[2])

    def areas(self) -> np.ndarray:
        """Pixel count of every mask, int64 [N]."""
        return self.masks.reshape(len(self), -1 if len(self) else 0).sum(axis=1, dtype=np.int64)

    def packed(self) -> np.ndarray:
        """Bit-packed masks, uint32 [N, ceil(H*W/32)].

        Pixels are taken in row-major order (p = y*W + x); bit i (value 1 << i) of word w holds
        pixel w*32 + i; bits past H*W in the last word are 0. This is the matcher kernels' layout.
        """
        return pack_masks(self.masks)


class _Factored(Proposals):
    """Proposals made by ``from_membership(check=False)``: the dense masks [N, H, W] (N x H x W
    bytes, most of the generator's time at 1024 px) are built only when first asked for; the
    matcher works from the factorisation and NMS takes only the rows it needs."""

    @property
    def masks(self) -> np.ndarray:  # type: ignore[override]
        """bool [N, H, W], built once on first use."""
        masks = self.__dict__.get("_masks")
        if masks is None:
            masks = np.take(self.membership, self.superpixels, axis=1)
            object.__setattr__(self, "_masks", masks)
        return masks

    def mask_rows(self, index: np.ndarray) -> np.ndarray:
        """The masks of the proposals ``index``, without building the others."""
        if "_masks" in self.__dict__:
            return super().mask_rows(index)
        member = self.membership[np.asarray(index, dtype=np.int64)]
        return np.take(member, self.superpixels, axis=1)

    def __len__(self) -> int:
        return int(self.membership.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        """Image size (H, W) the masks live on."""
        return int(self.superpixels.shape[0]), int(self.superpixels.shape[1])

    def areas(self) -> np.ndarray:
        """Pixel count of every mask, int64 [N], from the superpixel sizes."""
        sizes = np.bincount(self.superpixels.ravel(), minlength=self.membership.shape[1])
        return self.membership.astype(np.int64) @ sizes.astype(np.int64)


def pack_masks(masks: np.ndarray) -> np.ndarray:
    """Bit-pack bool [N, H, W] into uint32 [N, ceil(H*W/32)] (layout of ``Proposals.packed``)."""
    masks = np.asarray(masks, dtype=bool)
    n = masks.shape[0]
    flat = masks.reshape(n, masks.shape[1] * masks.shape[2])
    words = -(-flat.shape[1] // 32)
    padded = np.zeros((n, words * 32), dtype=bool)
    padded[:, : flat.shape[1]] = flat
    # Little-endian bit order within bytes and little-endian bytes within words give
    # bit i of word w == pixel 32*w + i, independent of the host's byte order.
    as_bytes = np.packbits(padded, axis=1, bitorder="little")
    return np.ascontiguousarray(as_bytes).view("<u4").astype(np.uint32)


def unpack_masks(packed: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Inverse of ``Proposals.packed``: uint32 [N, W32] -> bool [N, H, W]."""
    packed = np.asarray(packed)
    h, w = int(shape[0]), int(shape[1])
    if packed.ndim != 2 or packed.shape[1] != -(-h * w // 32):
        raise InputError(f"packed masks of shape {packed.shape} do not fit an image of {h}x{w}")
    as_bytes = np.ascontiguousarray(packed.astype("<u4")).view(np.uint8)
    bits = np.unpackbits(as_bytes, axis=1, bitorder="little")[:, : h * w]
    return bits.astype(bool).reshape(packed.shape[0], h, w)
