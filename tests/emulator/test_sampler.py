"""The sampler: reproducible block-wise generation that does not depend on how it is sliced."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from emulator.conditions import parse_conditions
from emulator.domains.calo import FRONT_SPOT_MEV
from emulator.sampler import BLOCK_SIZE, Sampler, block_seed
from emulator.testing import make_tiny_model


@pytest.fixture(scope="module")
def sampler(tmp_path_factory):
    return Sampler.from_dir(make_tiny_model(tmp_path_factory.mktemp("m") / "tiny"), device="cpu")


N = 2 * BLOCK_SIZE + 100  # three blocks, the last one partial


def spec(sampler, n=N):
    return parse_conditions(sampler.domain, "1:100", n)


def test_same_seed_gives_identical_bytes(sampler):
    a = sampler.generate(N, spec(sampler), seed=7)
    b = sampler.generate(N, spec(sampler), seed=7)
    assert a.samples.tobytes() == b.samples.tobytes()
    assert a.conditions.tobytes() == b.conditions.tobytes()
    c = sampler.generate(N, spec(sampler), seed=8)
    assert not np.array_equal(a.samples, c.samples)


def test_blocks_do_not_depend_on_slicing(sampler):
    full = sampler.generate(N, spec(sampler), seed=3)
    assert sampler.n_blocks(N) == 3
    parts = list(sampler.iter_blocks(N, spec(sampler), seed=3, start_block=1))
    assert [p.index for p in parts] == [1, 2]
    np.testing.assert_array_equal(np.concatenate([p.samples for p in parts]), full.samples[BLOCK_SIZE:])
    (middle,) = sampler.iter_blocks(N, spec(sampler), seed=3, start_block=1, stop_block=2)
    np.testing.assert_array_equal(middle.samples, full.samples[BLOCK_SIZE : 2 * BLOCK_SIZE])
    np.testing.assert_array_equal(middle.conditions, full.conditions[BLOCK_SIZE : 2 * BLOCK_SIZE])


def test_outputs_are_physical_and_shaped(sampler):
    out = sampler.generate(500, spec(sampler, 500), seed=0)
    assert out.samples.shape == (500, 507) and out.samples.dtype == np.float32
    assert out.conditions.shape == (500, 1)
    assert (out.samples >= 0).all() and (out.samples == 0).any() and (out.samples > 0).any()
    assert out.conditions.min() >= 1 and out.conditions.max() <= 100


def test_fixed_condition_and_list(sampler):
    out = sampler.generate(10, parse_conditions(sampler.domain, {"energy": list(range(1, 11))}, 10), seed=0)
    np.testing.assert_array_equal(out.conditions[:, 0], np.arange(1, 11))


def test_argument_errors(sampler):
    with pytest.raises(ValueError, match="parsed for 5 samples"):
        sampler.generate(6, spec(sampler, 5), seed=0)
    with pytest.raises(ValueError, match="block range"):
        list(sampler.iter_blocks(N, spec(sampler), seed=0, start_block=2, stop_block=5))
    with pytest.raises(ValueError, match="non-negative"):
        block_seed(-1, 0)


def test_zero_samples(sampler):
    out = sampler.generate(0, spec(sampler, 0), seed=0)
    assert out.samples.shape == (0, 507)


def test_threads_sharing_a_sampler_get_their_own_bytes(sampler):
    """The service shares one Sampler between threads: concurrent runs equal serial ones."""
    seeds = [11, 12, 13, 14]
    serial = [sampler.generate(N, spec(sampler), seed=s).samples for s in seeds]
    with ThreadPoolExecutor(4) as pool:
        concurrent = list(pool.map(lambda s: sampler.generate(N, spec(sampler), seed=s).samples, seeds))
    for a, b in zip(serial, concurrent, strict=True):
        assert a.tobytes() == b.tobytes()


def test_a_domain_that_draws_in_its_output_stage_is_still_fixed_by_the_seed(tmp_path):
    """calo's Poisson spots draw from the sampler's seeded generator: same seed, same bytes, any slicing."""
    model = make_tiny_model(tmp_path / "poisson", preprocessing="log1p_threshold_poisson_spots")
    drawing = Sampler.from_dir(model, device="cpu")
    assert drawing.domain.random_output
    a = drawing.generate(N, spec(drawing), seed=7)
    assert a.samples.tobytes() == drawing.generate(N, spec(drawing), seed=7).samples.tobytes()
    assert not np.array_equal(a.samples, drawing.generate(N, spec(drawing), seed=8).samples)
    (last,) = drawing.iter_blocks(N, spec(drawing), seed=7, start_block=2)
    np.testing.assert_array_equal(last.samples, a.samples[2 * BLOCK_SIZE :])
    spots = a.samples[:, :288] / FRONT_SPOT_MEV  # whole spots, up to the response's rescaling (a few per cent)
    lit = spots > 0
    assert lit.mean() > 0.05
    whole = np.abs(spots - np.round(spots))[lit] <= 0.05 * np.round(spots)[lit] + 1e-3
    assert whole.mean() > 0.95  # (this untrained model's showers put up to half their energy in the front layer,
    # so the rescaling moves some by more)
