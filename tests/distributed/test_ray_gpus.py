"""A cluster that has GPUs gives each worker one by default (Ray's declared resources: no GPU needed)."""

from __future__ import annotations

import pytest

from layerscope.errors import LayerscopeError

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def gpu_cluster():
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_one_gpu_per_worker_by_default_and_one_worker_per_gpu(gpu_cluster):
    from layerscope.distributed.ray_pool import RayPool
    from layerscope.testing.units import tiny_spec

    with RayPool(tiny_spec(), None, "auto", None, 1) as pool:
        assert pool.gpus == 1.0 and len(pool.actors) == 2  # one actor per declared GPU
        placed = ray.get([a.placement.remote() for a in pool.actors])
        assert sorted(ids[0] for _, ids, _ in placed) == ["0", "1"]  # each its own GPU
    with RayPool(tiny_spec(), None, "auto", 0.5, 1) as pool:
        assert len(pool.actors) == 2  # half a GPU each would make 4, but each actor takes a CPU too
    with pytest.raises(LayerscopeError, match=r"room for 2 worker\(s\).*ask for at most 2"):
        RayPool(tiny_spec(), 3, "auto", 0.0, 1).__enter__()  # more than fit: an error, not a wait forever
    with RayPool(tiny_spec(), 1, "auto", 0.0, 1) as pool:
        assert ray.get(pool.actors[0].placement.remote())[1] == []  # asked for none: none given
    with pytest.raises(LayerscopeError, match="gpus_per_worker must be 0 or more"):
        RayPool(tiny_spec(), 1, "auto", -1.0, 1).__enter__()
