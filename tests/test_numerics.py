"""Stored values do not depend on the number of workers, the executor or the caller's torch threads
(issue 32): every process scores on ``lswag.engine.SCORING_THREADS`` threads."""
from __future__ import annotations

import pytest
import torch

import lswag
from lswag import engine
from lswag.engine import Engine
from lswag.settings import Execution, Scoring
from lswag.store import Store

SPACE = lswag.spaces.get("nb201")
#: tiny cells on 8x8 digits: 1 and 2 threads already give different zico and l_swag values here
SETUP = Scoring("nb201", ("zico", "l_swag"), batch_size=32, image_size=8, build={"C": 8, "N": 1})
ARCHS = [SPACE.format(a) for a in SPACE.sample(10, seed=1)]


@pytest.fixture
def caller_threads():
    """The caller on 2 torch threads: in-process scoring that followed them would differ from the
    workers' one thread (:func:`test_the_test_would_see_a_thread_count_that_leaked`)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield 2
    torch.set_num_threads(before)


def stored(tmp_path, name: str, execution: Execution) -> dict[str, dict[str, float]]:
    """``{proxy: {arch: value}}`` as a fresh store holds them after scoring ``ARCHS`` as ``execution`` says."""
    with Store(tmp_path / f"{name}.sqlite", "nb201") as store, Engine(SETUP, store, execution) as scorer:
        scorer.score(ARCHS)
        values = {proxy: {arch: result.value for arch, result in store.results(proxy, scorer.keys[proxy]).items()}
                  for proxy in SETUP.names}
    assert all(len(v) == len(ARCHS) and all(isinstance(x, float) for x in v.values()) for v in values.values())
    return values


def test_one_and_two_workers_store_bit_identical_values(tmp_path, caller_threads):
    one = stored(tmp_path, "one", Execution(workers=1))
    assert torch.get_num_threads() == caller_threads                 # the caller's threads given back
    assert stored(tmp_path, "two", Execution(workers=2)) == one       # float ==: bit-identical


def test_the_test_would_see_a_thread_count_that_leaked(tmp_path, monkeypatch):
    """The check above is not vacuous: scored on 2 threads, these cells give other values."""
    one = stored(tmp_path, "one", Execution(workers=1))
    monkeypatch.setattr(engine, "SCORING_THREADS", 2)
    two_threads = stored(tmp_path, "two_threads", Execution(workers=1))
    assert two_threads != one


def test_scoring_threads_restores_the_callers_count_even_on_an_exception(caller_threads):
    with pytest.raises(RuntimeError), engine.scoring_threads():
        assert torch.get_num_threads() == engine.SCORING_THREADS
        raise RuntimeError("a proxy's bug")
    assert torch.get_num_threads() == caller_threads


@pytest.mark.slow
def test_ray_stores_the_values_of_one_local_worker(tmp_path, caller_threads):
    pytest.importorskip("ray", reason="Ray is the optional extra lswag[ray]; install it to test the Ray executor")
    one = stored(tmp_path, "one", Execution(workers=1))
    assert stored(tmp_path, "ray", Execution(executor="ray", workers=2)) == one
