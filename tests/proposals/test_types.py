"""Proposals container: bit packing layout and validation."""

import numpy as np
import pytest

from icnseg.errors import InputError
from icnseg.proposals.types import Proposals, unpack_masks


def test_packed_matches_bit_loop_and_round_trips():
    rng = np.random.default_rng(0)
    masks = rng.random((4, 5, 7)) < 0.5  # 35 pixels: not a multiple of 32
    packed = Proposals(masks).packed()
    assert packed.dtype == np.uint32 and packed.shape == (4, 2)
    expected = np.zeros((4, 2), dtype=np.uint64)
    for n in range(4):
        flat = masks[n].ravel()  # row-major
        for p in range(35):
            if flat[p]:
                expected[n, p // 32] |= np.uint64(1) << np.uint64(p % 32)
    np.testing.assert_array_equal(packed, expected.astype(np.uint32))
    np.testing.assert_array_equal(unpack_masks(packed, (5, 7)), masks)


def test_packed_empty_and_exact_multiple():
    assert Proposals(np.zeros((0, 3, 3), bool)).packed().shape == (0, 1)
    masks = np.ones((1, 4, 8), bool)
    np.testing.assert_array_equal(Proposals(masks).packed(), [[0xFFFFFFFF]])
    with pytest.raises(InputError):
        unpack_masks(np.zeros((1, 3), np.uint32), (4, 8))


def test_factorisation_and_validation():
    sp = np.array([[0, 0, 1], [2, 2, 1]], dtype=np.int32)
    member = np.array([[1, 0, 1], [0, 1, 0]], dtype=bool)
    props = Proposals.from_membership(sp, member)
    assert len(props) == 2 and props.shape == (2, 3)
    np.testing.assert_array_equal(props.masks[0], [[1, 1, 0], [1, 1, 0]])
    np.testing.assert_array_equal(props.areas(), [4, 2])
    with pytest.raises(InputError):
        Proposals(np.zeros((2, 3), bool))  # not [N, H, W]
    with pytest.raises(InputError):
        Proposals(props.masks, sp, None)  # half a factorisation
    with pytest.raises(InputError):
        Proposals(props.masks, sp[:, :2], member)  # map shape
    with pytest.raises(InputError):
        Proposals(props.masks, sp, member[:, :2])  # label out of range
    with pytest.raises(InputError):
        Proposals(props.masks[::-1], sp, member)  # masks disagree with membership


def test_unchecked_factorisation_builds_masks_on_demand_and_equal_a_loop():
    rng = np.random.default_rng(4)
    sp = rng.integers(0, 9, (7, 11)).astype(np.int32)
    member = rng.random((5, 9)) < 0.4
    props = Proposals.from_membership(sp, member, check=False)
    assert len(props) == 5 and props.shape == (7, 11)
    assert "_masks" not in props.__dict__  # nothing dense made yet
    loop = np.zeros((5, 7, 11), bool)
    for n in range(5):
        for y in range(7):
            for x in range(11):
                loop[n, y, x] = member[n, sp[y, x]]
    np.testing.assert_array_equal(props.mask_rows([3, 1]), loop[[3, 1]])
    np.testing.assert_array_equal(props.areas(), loop.sum(axis=(1, 2)))
    assert "_masks" not in props.__dict__
    np.testing.assert_array_equal(props.masks, loop)
    np.testing.assert_array_equal(props.mask_rows([0]), loop[[0]])
