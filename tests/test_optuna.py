"""Optuna's samplers as search strategies (lswag.search.samplers): runs, seeding, exact resume, the
persistent study, multi-objective search, duplicates and the refused settings."""
from __future__ import annotations

import pytest

optuna = pytest.importorskip("optuna")

from lswag import spaces  # noqa: E402
from lswag.cli import main  # noqa: E402
from lswag.engine import Engine  # noqa: E402
from lswag.errors import LswagError  # noqa: E402
from lswag.search import SearchConfig, load_result, search  # noqa: E402
from lswag.search.samplers import TrialChooser, study_name  # noqa: E402
from lswag.settings import Scoring  # noqa: E402
from lswag.store import Store  # noqa: E402

NB201 = spaces.get("nb201")
TINY = {"C": 4, "N": 1}
STRATEGIES = ("optuna-tpe", "optuna-nsga2")


def scoring(proxies=("params",), space="nb201", build=TINY) -> Scoring:
    return Scoring(space, tuple(proxies), data="digits", batch_size=8, image_size=8, build=build)


def config(strategy: str, fitness: str = "nwot", **kwargs) -> SearchConfig:
    """16 candidates: two NSGA-II generations of 8; TPE past its 10 random start-up candidates."""
    settings = {"population": 8, "generations": 2, "parents": 2, "seed": 3, **kwargs}
    return SearchConfig(scoring(), strategy=strategy, fitness=fitness, **settings)


def interrupt_on_call(monkeypatch, call: int) -> None:
    """Make the engine's ``call``-th scoring of candidates (a call with a progress bar) raise Ctrl-C."""
    original, calls = Engine.score, []

    def score(self, archs, proxies=None, bar=None):
        if bar is not None:
            calls.append(archs)
            if len(calls) == call:
                raise KeyboardInterrupt
        return original(self, archs, proxies, bar)

    monkeypatch.setattr(Engine, "score", score)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_seeded_optuna_search_returns_its_best_candidate_and_repeats_exactly(tmp_path, strategy):
    first = search(config(strategy), tmp_path / "a.sqlite", progress=False)
    assert first.evaluations == len(first.candidates) == len(set(first.candidates)) == 16
    assert first.strategy == strategy and first.arch in first.candidates
    with Store(tmp_path / "a.sqlite", "nb201") as store:
        assert store.count() > 0
    assert first.settings["optuna_study"] == f"lswag-nb201-{strategy}-nwot-seed3"
    assert first.settings["optuna_trials"] >= 16 and "stopped" not in first.settings
    # the best by fitness, in a fresh store: the same draws, the same values
    again = search(config(strategy), tmp_path / "b.sqlite", progress=False)
    assert again.candidates == first.candidates and again.arch == first.arch and again.history == first.history
    other = search(config(strategy, seed=4), tmp_path / "b.sqlite", progress=False)
    assert other.candidates != first.candidates


def test_tpe_learns_one_candidate_at_a_time_and_nsga2_a_generation(tmp_path):
    tpe = search(config("optuna-tpe"), tmp_path / "s.sqlite", progress=False)
    nsga2 = search(config("optuna-nsga2"), tmp_path / "s.sqlite", progress=False)
    assert len(tpe.history) == 16 and len(nsga2.history) == 2
    assert tpe.history == sorted(tpe.history) and nsga2.history == sorted(nsga2.history)


@pytest.mark.parametrize("strategy,call,minimise", [("optuna-tpe", 12, ()), ("optuna-nsga2", 2, ()),
                                                    ("optuna-nsga2", 2, ("params",))])
def test_an_interrupted_optuna_search_resumes_exactly(tmp_path, monkeypatch, strategy, call, minimise):
    settings = config(strategy, minimise=minimise)
    uninterrupted = search(settings, tmp_path / "fresh.sqlite", progress=False)
    store = tmp_path / "s.sqlite"
    with monkeypatch.context() as patch:
        interrupt_on_call(patch, call)
        with pytest.raises(KeyboardInterrupt):
            search(settings, store, progress=False)
    with Store(store, "nb201") as kept:
        before = kept.count()
    assert 0 < before < uninterrupted.new_results
    resumed = search(settings, store, progress=False)
    assert resumed.candidates == uninterrupted.candidates and resumed.arch == uninterrupted.arch
    assert resumed.history == uninterrupted.history and resumed.scores == uninterrupted.scores
    assert resumed.new_results == uninterrupted.new_results - before     # only the unfinished ones computed


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_the_storage_url_mirrors_every_trial_once_with_its_arch(tmp_path, monkeypatch, strategy):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    store = tmp_path / "s.sqlite"
    with monkeypatch.context() as patch:
        interrupt_on_call(patch, 2)
        with pytest.raises(KeyboardInterrupt):
            search(config(strategy, optuna_storage=url), store, progress=False)
    name = study_name(config(strategy))
    partial = len(optuna.load_study(study_name=name, storage=url).trials)
    assert partial >= 1                                   # trials finished before Ctrl-C were mirrored at once
    result = search(config(strategy, optuna_storage=url), store, progress=False)
    assert result.settings["optuna_study"] == name and result.settings["optuna_storage"] == url
    trials = optuna.load_study(study_name=name, storage=url).trials
    assert len(trials) == result.settings["optuna_trials"] > partial
    assert [t.number for t in trials] == list(range(len(trials)))
    assert all(t.state.is_finished() for t in trials)
    assert {t.user_attrs["arch"] for t in trials} == set(result.candidates)   # repeats among them
    assert all(NB201.format(NB201.parse(t.user_attrs["arch"])) == t.user_attrs["arch"] for t in trials)
    # a rerun adds nothing: the persistent study already holds every trial
    search(config(strategy, optuna_storage=url), store, progress=False)
    assert len(optuna.load_study(study_name=name, storage=url).trials) == len(trials)


def test_a_persistent_study_of_other_settings_is_an_error(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    search(config("optuna-tpe", optuna_storage=url), tmp_path / "s.sqlite", progress=False)
    other = SearchConfig(scoring(build={"C": 8, "N": 1}), strategy="optuna-tpe", fitness="nwot", population=8,
                         generations=2, parents=2, seed=3, optuna_storage=url)
    with pytest.raises(LswagError, match=r"^Optuna study lswag-nb201-optuna-tpe-nwot-seed3 in .* holds other "
                                         r"trials \(trial \d+: .*\), of a search with other settings"):
        search(other, tmp_path / "s.sqlite", progress=False)


def test_nsga2_minimising_params_is_a_two_objective_study(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    result = search(config("optuna-nsga2", minimise=("params",), optuna_storage=url), tmp_path / "s.sqlite",
                    progress=False)
    assert result.settings["optuna_study"] == "lswag-nb201-optuna-nsga2-nwot-seed3-min-params"
    study = optuna.load_study(study_name=result.settings["optuna_study"], storage=url)
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert complete and all(len(t.values) == 2 for t in complete)
    params = {t.user_attrs["arch"]: t.values[1] for t in complete}
    arch = next(iter(params))
    built = sum(p.numel() for p in NB201.build(arch, num_classes=10, **TINY).parameters()) / 1e6
    assert params[arch] == pytest.approx(built)


def test_an_exhausted_space_stops_the_search_with_a_note(tmp_path, monkeypatch):
    # two edges free, four fixed: 25 architectures, far fewer than the 40 asked for
    fixed = {"edge2": "none", "edge3": "none", "edge4": "none", "edge5": "none"}
    original = TrialChooser.choice
    monkeypatch.setattr(TrialChooser, "choice",
                        lambda self, name, options: fixed.get(name) or original(self, name, options))
    monkeypatch.setattr("lswag.search.samplers.DUPLICATE_LIMIT", 50)
    with pytest.warns(UserWarning, match="the search stopped after 50 proposals in a row of architectures"):
        result = search(config("optuna-tpe", "params", evaluations=40), tmp_path / "s.sqlite", progress=False)
    assert result.evaluations <= 25 and len(set(result.candidates)) == result.evaluations
    assert result.settings["stopped"].startswith("stopped after 50 proposals in a row")


def test_proposals_outside_the_truth_are_refused_after_too_many(tmp_path, monkeypatch):
    from lswag.settings import TruthSource

    path = tmp_path / "truth.csv"
    cells = NB201.sample(3, seed=0)
    path.write_text("arch_str,acc\n" + "".join(f"{NB201.format(c)},{i}\n" for i, c in enumerate(cells)))
    monkeypatch.setattr("lswag.search.samplers.REJECTION_LIMIT", 20)
    truth = TruthSource(str(path), metric="acc")
    with pytest.raises(LswagError, match="^Optuna proposed 20 architectures in a row outside the 3 of the truth "
                                         "file, and cannot be restricted to them"):
        search(config("optuna-tpe", truth=truth), tmp_path / "s.sqlite", progress=False)


@pytest.mark.parametrize("kwargs,message", [
    ({"fitness": "rank:nwot,params"}, "strategy optuna-tpe needs a fitness of each candidate alone (a proxy); "
                                      "rank:nwot,params ranks candidates against the archive"),
    ({"fitness": "az_nas"}, "az_nas ranks candidates against the archive"),
])
def test_a_pool_fitness_is_refused(tmp_path, kwargs, message):
    with pytest.raises(LswagError, match=message.replace("(", r"\(").replace(")", r"\)")):
        search(config("optuna-tpe", **kwargs), tmp_path / "s.sqlite", progress=False)
    assert not (tmp_path / "s.sqlite").exists()


@pytest.mark.parametrize("space", [name for name in ("nb101", "autoformer-t", "darts", "tnb101_macro")
                                   if not isinstance(spaces.get(name), spaces.ChoiceSpace)])
def test_a_space_not_made_of_named_choices_is_refused(tmp_path, space):
    settings = SearchConfig(scoring(space=space, build={}), strategy="optuna-nsga2", fitness="params", parents=2)
    with pytest.raises(LswagError, match=rf"^strategy optuna-nsga2 searches a space made of named choices \(.*nb201"
                                         rf".* or a define-by-run family, --space MODULE:FUNCTION\); {space} is not one"):
        search(settings, tmp_path / "s.sqlite", progress=False)


def test_missing_optuna_is_a_one_line_error(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def without_optuna(name, *args, **kwargs):
        if name == "optuna" or name.startswith("optuna."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_optuna)
    with pytest.raises(LswagError, match=r"^strategy optuna-tpe needs Optuna: pip install 'lswag\[optuna\]'$"):
        search(config("optuna-tpe"), tmp_path / "s.sqlite", progress=False)


def test_storage_is_refused_for_other_strategies():
    with pytest.raises(LswagError, match="--optuna-storage is for the optuna-\\* strategies, not evolution"):
        config("evolution", optuna_storage="sqlite:///x.db")


def test_cli_runs_an_optuna_search(tmp_path, capsys):
    out = tmp_path / "found.json"
    assert main(["search", "--strategy", "optuna-tpe", "--fitness", "params", "--evaluations", "12",
                 "--population", "4", "--parents", "2", "--build", "C=4", "--build", "N=1", "--image-size", "8",
                 "--batch-size", "8", "--store", str(tmp_path / "s.sqlite"), "--out", str(out)]) == 0
    result = load_result(out)
    assert f"best: {result['arch']}" in capsys.readouterr().out
    assert result["strategy"] == "optuna-tpe" and result["evaluations"] == 12
    assert result["settings"]["optuna_study"] == "lswag-nb201-optuna-tpe-params-seed0"
