"""LIBRA (Low Information gain and Bias Re-Alignment): choose three proxies for a benchmark, combine them.

From the proxy scores and the ground truth of calibration architectures (L-SWAG paper §3.2,
Algorithm 1, appendix E; ``METHOD.md`` §4):

1. ``z1`` = the proxy with the highest Spearman ρ with the accuracy.
2. ``z2`` = among the proxies with ρ ≥ ρ(z1) − tolerance (0.1), the one of lowest information
   gain ``IG(z) = H(y | z1) − H(y | z1, z)`` (:mod:`lswag.info`: equal-width bins, Sturges' count,
   bits). When no proxy is that close the tolerance is widened in steps of itself up to 0.2, as
   the paper did for two of its tasks; with none even then, LIBRA keeps fewer proxies.
3. ``z3`` = among the other proxies of that pool (widened the same way if z2 was the only one),
   the one whose bias is closest to the accuracy's own bias ("bias matching"). The bias of a
   quantity is the Pearson correlation of the ranks it induces with the ranks induced by a bias
   feature (#params by default), i.e. Spearman's ρ with the feature (:func:`bias`).
4. The fitted :class:`Libra` scores a pool of architectures by the sum of the three proxies'
   ranks over that pool (default) or by the product of their min–max normalised scores.

LIBRA uses the ground truth to choose, so the paper's protocol (fit and evaluate on the same
architectures) is optimistic. :func:`evaluate_held_out` also fits on a random calibration sample
(100 architectures) and reports Spearman on the rest, averaged over random splits, next to the
best single proxy, AZ-NAS, TE-NAS, T-CET and plain rank averaging on the same held-out sets, and
the paper's Tab. 4 ablations.

Scores come from a table (CSV: one row per architecture, one column per proxy; rows selected by
a ``dataset`` or ``task`` column, as NAS-Bench-Suite-Zero's tables) or from an ``lswag bench``
store joined with a ground-truth file (:func:`read_scores`). Failures (NaN, empty cells, the
suite's −1e8) are NaN here; they rank last and have their own information bin. A store's failures
keep their reasons beside the values (:attr:`ScoreTable.failures`).
"""
from __future__ import annotations

import csv
import fnmatch
import json
import math
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
from scipy import stats as _st

from lswag import spaces
from lswag.truth import FAILURE_SENTINEL, load_truth, read_csv_rows
from lswag.ensembles import AZ_NAS, TE_NAS, az_nas, ranks, te_nas
from lswag.errors import LswagError, unknown_choice
from lswag.settings import check_output
from lswag.info import bin_count, discretise, information_gain
from lswag.proxies import Failure
from lswag.stats import constant_note, correlate
from lswag.store import Store

__all__ = ["ScoreTable", "read_scores", "bias", "spearman_by_proxy", "tolerance_pool", "information_gains",
           "Choice", "Libra", "fit", "pair_by_type", "MethodResult", "Evaluation", "evaluate_held_out", "write_evaluation",
           "plot_evaluation", "GRADIENT_FREE", "GRADIENT_BASED"]

#: proxies that need no backward pass (counts, weights, activations, forward features)
GRADIENT_FREE = frozenset({"params", "flops", "l2_norm", "nwot", "zen", "swap", "reg_swap", "te_linear_regions",
                           "az_expressivity", "az_progressivity", "az_complexity"})
#: proxies computed from gradients (of the weights or of the input)
GRADIENT_BASED = frozenset({"grad_norm", "snip", "grasp", "fisher", "synflow", "plain", "jacov", "epe_nas",
                            "zico", "l_swag", "tcet", "te_ntk_cond", "az_trainability"})
#: the column of a lswag T-CET score
TCET = "tcet"
SECOND_RULES = ("min_ig", "max_ig")
THIRD_RULES = ("matching", "minimisation", "random", "none")
COMBINATIONS = ("rank_sum", "product")
BIAS_METHODS = ("rank", "raw")


# ----------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class ScoreTable:
    """Proxy scores and ground truth of the same architectures (rows), failures as NaN.

    ``failures`` holds why each failed score of a store failed, ``{proxy: {arch: reason}}``, for
    the rows of the table; a CSV table's failures are NaN cells without a reason, so none are there.
    """

    source: str
    metric: str
    archs: tuple
    truth: np.ndarray                      # the metric, finite, one per arch
    columns: dict[str, np.ndarray]         # every numeric column (proxies and features such as params)
    proxies: tuple[str, ...]               # the columns that are candidate proxies by default
    skipped: int = 0                       # rows of the truth left out for lacking the metric
    failures: dict[str, dict] = field(default_factory=dict)   # {proxy: {arch: reason}} of a store's failures

    def __post_init__(self):
        if len(self.truth) != len(self.archs) or any(len(v) != len(self.archs) for v in self.columns.values()):
            raise LswagError(f"{self.source}: columns of different lengths")

    def __len__(self) -> int:
        return len(self.archs)

    def rows(self, index: Sequence[int]) -> ScoreTable:
        """The table restricted to the rows ``index`` (in that order)."""
        index = np.asarray(index, dtype=int)
        archs = tuple(self.archs[i] for i in index)
        kept = set(archs)
        failures = {proxy: {arch: reason for arch, reason in reasons.items() if arch in kept}
                    for proxy, reasons in self.failures.items()}
        return replace(self, archs=archs, truth=self.truth[index],
                       columns={name: values[index] for name, values in self.columns.items()},
                       failures={proxy: reasons for proxy, reasons in failures.items() if reasons})

    def sample(self, n: int | None, seed: int = 0) -> ScoreTable:
        """``n`` rows drawn without replacement with ``seed`` (file order kept); all when ``n`` is None."""
        if n is None or n >= len(self):
            return self
        if n < 3:
            raise LswagError(f"a sample needs at least 3 architectures, got {n}")
        return self.rows(np.sort(np.random.default_rng(seed).choice(len(self), n, replace=False)))


def _cell(value) -> float | None:
    """A table cell as a float (NaN for empty, NaN, ±inf and the −1e8 failure sentinel), None if not numeric."""
    if value is None:
        return math.nan
    if isinstance(value, str):
        return None
    return math.nan if (not math.isfinite(value) or value == FAILURE_SENTINEL) else value


def _read_csv(path: Path, arch_column: str, dataset: str | None, space: str | None):
    """``(source, arch keys, {column: values})`` of a CSV; keys parsed with ``space`` when given."""
    source, fields, rows = read_csv_rows(path, arch_column, dataset)
    if not rows:
        raise LswagError(f"CSV file {source} has no rows")
    parse = spaces.get(space).parse if space else (lambda text: text)
    keys, seen = [], set()
    for label, written, _ in rows:
        try:
            key = parse(written)
        except LswagError as err:
            raise LswagError(f"{source}: {label}: cannot parse arch {written!r}: {err}") from None
        if key in seen:
            raise LswagError(f"{source}: {label} repeats the arch {written!r}")
        seen.add(key)
        keys.append(key)
    columns = {}
    for name in fields:
        values = [_cell(cells[name]) for _, _, cells in rows]
        if all(v is not None for v in values):
            columns[name] = np.array(values, dtype=float)
    return source, keys, columns


def _is_store(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(16) == b"SQLite format 3\x00"


def _settings_of(setting: Mapping[str, str], proxy: str) -> list[tuple[str, str]]:
    """The (key, pattern) pairs of ``setting`` that apply to ``proxy``: plain keys, and
    ``PROXY:KEY`` keys of that proxy (with the prefix removed)."""
    pairs = []
    for key, value in setting.items():
        owner, scoped, name = key.partition(":")
        if not scoped:
            pairs.append((key, value))
        elif owner == proxy:
            pairs.append((name, value))
    return pairs


def _read_store(path: Path, setting: Mapping[str, str], proxies: Sequence[str] | None):
    """``(space, {proxy: {arch text: value}}, {proxy: {arch text: failure reason}}, every proxy held)``
    of an ``lswag bench`` store; a failure's value is NaN.

    ``proxies`` reads only those (the others are not read, nor checked for several settings).

    ``setting`` keeps the results whose settings have those values (``{"data": "*cifar10*"}``:
    the text of the value, ``*`` and ``?`` as wildcards); a proxy with none is left out. A key
    ``PROXY:KEY`` applies to that proxy only (``{"l_swag:options": "*log*"}`` picks one of its
    variants and leaves the other proxies as they are). A proxy still scored under several
    settings is an error that names the settings that differ, so columns never mix data.
    """
    with Store(path) as store:
        options = {}
        for proxy, found in store.settings_in_use().items():
            pairs = _settings_of(setting, proxy)
            chosen = [s for s in found if all(fnmatch.fnmatchcase(str(s.get(k)), v) for k, v in pairs)]
            if chosen:
                options[proxy] = chosen
        scores, failures = {}, {}
        for proxy, found in options.items():
            if proxies is not None and proxy not in proxies:
                continue
            if len(found) > 1:
                keys = sorted({k for a in found for k in a if len({json.dumps(b.get(k)) for b in found}) > 1})
                values = "; ".join(f"{k}: " + ", ".join(sorted({str(b.get(k)) for b in found})) for k in keys)
                raise LswagError(f"{path} holds {proxy} under {len(found)} settings ({values}); "
                                 f"choose one with --setting KEY=VALUE (or {proxy}:KEY=VALUE for {proxy} alone)")
            results = store.results(proxy, found[0])
            scores[proxy] = {arch: math.nan if isinstance(r.value, Failure) else float(r.value)
                             for arch, r in results.items()}
            failures[proxy] = {arch: r.value.reason for arch, r in results.items() if isinstance(r.value, Failure)}
        space = store.space
    if not options:
        wanted = ", ".join(f"{k}={v}" for k, v in setting.items())
        raise LswagError(f"{path} holds no results" + (f" with {wanted}" if wanted else ""))
    return space, scores, failures, set(options)


def _read_stores(paths: list[Path], *, metric: str, truth, arch_column: str | None, dataset: str | None,
                 setting: Mapping[str, str], proxies: Sequence[str] | None, **truth_options) -> ScoreTable:
    """The stores' proxies joined with the truth file (see :func:`read_scores`)."""
    if truth is None:
        raise LswagError(f"{paths[0]} is an lswag store: give --truth, the ground-truth file of its archs")
    if not all(_is_store(path) for path in paths):
        raise LswagError("several score files must all be lswag stores; give one CSV table")
    store_space, by_proxy, reasons, origin, held = None, {}, {}, {}, set()
    for path in paths:
        space, found, failed, names = _read_store(path, setting, proxies)
        held |= names
        if store_space not in (None, space):
            raise LswagError(f"{path} holds space {space!r}, {paths[0]} holds {store_space!r}")
        store_space = space
        for proxy in found:
            if proxy in by_proxy:
                raise LswagError(f"{proxy} is in both {origin[proxy]} and {path}; leave one store out")
            origin[proxy] = path
        by_proxy.update(found)
        reasons.update(failed)
    unknown = [p for p in proxies or () if p not in by_proxy]
    if unknown:
        raise unknown_choice("proxy", unknown[0], sorted(held))
    space_obj = spaces.get(store_space)
    ground = load_truth(truth, space=store_space, metric=metric, arch_column=arch_column, dataset=dataset,
                        **truth_options)
    complete = set.intersection(*(set(v) for v in by_proxy.values()))
    parsed = {space_obj.parse(text): text for text in complete}
    keys = [k for k in ground.archs() if k in parsed]
    names = " + ".join(map(str, paths))
    if len(keys) < 3:
        fewest = ", ".join(f"{p} {len(v)}" for p, v in sorted(by_proxy.items(), key=lambda item: len(item[1]))[:3])
        raise LswagError(f"only {len(keys)} archs of {names} have every proxy and a truth value (archs per "
                         f"proxy, fewest first: {fewest}); --proxies reads only the ones given")
    proxies = {p: np.array([by_proxy[p][parsed[k]] for k in keys]) for p in sorted(by_proxy)}
    features = {c: np.array([_finite(v.get(k)) for k in keys]) for c, v in ground.columns.items() if c not in proxies}
    failures = {p: {k: reasons[p][parsed[k]] for k in keys if parsed[k] in reasons[p]} for p in sorted(reasons)}
    return ScoreTable(f"{names} + {ground.source}", metric, tuple(keys), np.array([ground.accuracy[k] for k in keys]),
                      {**proxies, **features}, tuple(proxies), ground.skipped,
                      {p: by_arch for p, by_arch in failures.items() if by_arch})


def bins_of(text: str) -> str | int:
    """The discretisation named by ``text``: a rule (``sturges``, ``suite_zero``) or a bin count."""
    return int(text) if text.strip().isdigit() else text.strip()


def read_scores(scores: str | Path | Sequence[str | Path], *, metric: str, truth: str | Path | None = None,
                space: str | None = None, arch_column: str | None = None, dataset: str | None = None,
                setting: Mapping[str, str] | None = None, duplicates: str = "error",
                column_names: Sequence[str] | None = None, proxies: Sequence[str] | None = None) -> ScoreTable:
    """The :class:`ScoreTable` of a CSV score table or ``lswag bench`` stores, with the truth ``metric``.

    * CSV, ``truth`` None or the same file: the metric is a column of the table; every other
      numeric column is a candidate proxy (``*_time`` columns excepted). A ``dataset`` or ``task``
      column selects the rows of ``dataset``. Archs are parsed with ``space`` when given, else
      kept as written.
    * CSV plus a separate ``truth`` file: archs of both are parsed with ``space`` (``nb201`` when
      not given) and joined; the truth's other numeric columns become features (for the bias),
      not candidates.
    * one or more ``lswag bench`` stores of one space: the space parses the archs, ``truth``
      (required) is read with :func:`lswag.truth.load_truth`; the candidates are the stores'
      proxies (each in one store only), kept on the architectures that have all of them and a
      truth value. ``setting`` selects among results computed under different settings
      (:func:`_read_store`); ``proxies`` reads only those, so that archs still missing another
      proxy of the store (a run adding proxies, not yet finished) are kept. (A CSV table's
      candidates are chosen by ``proxies`` of :func:`fit` and :func:`evaluate_held_out` instead.)

    ``duplicates`` and ``column_names`` go to :func:`lswag.truth.load_truth` for a separate
    truth file (rows of one architecture averaged; a header for a CSV that has none).
    """
    truth_options = {"duplicates": duplicates, "column_names": column_names}
    table_column = arch_column or (spaces.get(space).truth_arch_column if space else "arch_str")
    paths = [Path(scores)] if isinstance(scores, (str, Path)) else [Path(p) for p in scores]
    for path in paths:
        if not path.is_file():
            raise LswagError(f"scores file not found: {path}")
    if any(_is_store(path) for path in paths):
        return _read_stores(paths, metric=metric, truth=truth, arch_column=arch_column, dataset=dataset,
                            setting=setting or {}, proxies=proxies, **truth_options)
    if len(paths) > 1:
        raise LswagError("several score files must all be lswag stores; give one CSV table")
    scores = paths[0]
    same_file = truth is None or Path(truth).resolve() == scores.resolve()
    if scores.suffix.lower() != ".csv":
        raise LswagError(f"unknown score format {scores.suffix or '(no suffix)'!r} of {scores}; "
                         "valid: a .csv table or an lswag bench store")
    if same_file:
        source, keys, columns = _read_csv(scores, table_column, dataset, space)
        if metric not in columns:
            raise LswagError(f"unknown metric {metric!r} in {source}; numeric columns: {', '.join(columns)}")
        truth_values = columns.pop(metric)
        keep = np.isfinite(truth_values)
        proxies = tuple(c for c in columns if not c.endswith("_time"))
        table = ScoreTable(source, metric, tuple(keys), truth_values, columns, proxies, int(np.sum(~keep)))
        return table.rows(np.flatnonzero(keep))
    space = space or "nb201"
    source, keys, columns = _read_csv(scores, table_column, dataset, space)
    ground = load_truth(truth, space=space, metric=metric, arch_column=arch_column, dataset=dataset, **truth_options)
    index = [i for i, k in enumerate(keys) if k in ground.accuracy]
    if len(index) < 3:
        raise LswagError(f"only {len(index)} archs of {source} are in the truth {ground.source}")
    joined = [keys[i] for i in index]
    features = {c: np.array([_finite(v.get(k)) for k in joined]) for c, v in ground.columns.items()
                if c not in columns}
    proxies = tuple(c for c in columns if not c.endswith("_time") and c != metric)
    return ScoreTable(f"{source} + {ground.source}", metric, tuple(joined),
                      np.array([ground.accuracy[k] for k in joined]),
                      {**{c: v[index] for c, v in columns.items()}, **features}, proxies, ground.skipped)


def _finite(value) -> float:
    return math.nan if value is None else float(value)


# ----------------------------------------------------------------------------------------------
# Selection steps


def _spearman(values: np.ndarray, truth: np.ndarray) -> float:
    """Spearman ρ (failures rank last; NaN when either side is constant), via :func:`lswag.stats.correlate`."""
    return correlate(values, truth, n_boot=0).spearman


def _rho_and_why(values: np.ndarray, truth: np.ndarray) -> tuple[float, str]:
    """Spearman ρ as :func:`_spearman`, and when it is undefined why (:func:`lswag.stats.constant_note`)."""
    c = correlate(values, truth, n_boot=0)
    return c.spearman, (c.note or "") if math.isnan(c.spearman) else ""


def bias(values: Sequence[float], feature: Sequence[float], method: str = "rank") -> float:
    """Bias of a quantity towards a feature (#params by default), on the archs where the feature is known.

    ``rank`` (default; L-SWAG paper §3.2 and Tab. 6): Pearson correlation of the ranks the
    quantity induces with the ranks the feature induces, which is Spearman's ρ; failures of the
    quantity rank last. ``raw``: NAS-Bench-Suite-Zero's Pearson correlation of the raw values
    (``scipy.stats.pearsonr``), on the archs where both are finite. NaN when either is constant.
    """
    if method not in BIAS_METHODS:
        raise unknown_choice("bias method", method, BIAS_METHODS)
    values, feature = np.asarray(values, dtype=float), np.asarray(feature, dtype=float)
    known = np.isfinite(feature) & (np.isfinite(values) if method == "raw" else True)
    if known.sum() < 3:
        return math.nan
    if method == "rank":
        return _spearman(values[known], feature[known])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input: scipy warns and returns NaN
        return float(_st.pearsonr(values[known], feature[known]).statistic)


def spearman_by_proxy(table: ScoreTable, proxies: Sequence[str]) -> dict[str, float]:
    """``{proxy: Spearman ρ with the metric}`` on the table's archs."""
    return {p: _spearman(table.columns[p], table.truth) for p in proxies}


def tolerance_pool(rho: Mapping[str, float], reference: float, tolerance: float = 0.1,
                   max_tolerance: float = 0.2, exclude: Sequence[str] = ()) -> tuple[list[str], float]:
    """Proxies (not in ``exclude``) with ρ ≥ ``reference`` − tol, best first, and the tol used.

    tol starts at ``tolerance`` and grows in steps of ``tolerance`` up to ``max_tolerance`` until
    the pool is not empty, as the paper widened 0.1 to 0.2 for two tasks (appendix E). Beyond
    that a proxy is too weak to help, and the pool comes back empty.
    """
    if not 0 < tolerance <= max_tolerance:
        raise LswagError(f"need 0 < --tolerance <= --max-tolerance, got {tolerance} and {max_tolerance}")
    rest = {p: r for p, r in rho.items() if p not in exclude and not math.isnan(r)}
    step, used = 1, tolerance
    while True:
        pool = sorted((p for p, r in rest.items() if r >= reference - used - 1e-12), key=lambda p: (-rest[p], p))
        if pool or used >= max_tolerance - 1e-12:
            return pool, used
        step += 1
        used = min(step * tolerance, max_tolerance)


def information_gains(table: ScoreTable, z1: str, candidates: Sequence[str], bins: str | int = "sturges") -> dict[str, float]:
    """``{z: H(y | z1) − H(y | z1, z)}`` in bits, every variable discretised by :func:`lswag.info.discretise`."""
    y = discretise(table.truth, bins)
    given = [discretise(table.columns[z1], bins)]
    return {z: information_gain(y, discretise(table.columns[z], bins), given) for z in candidates}


# ----------------------------------------------------------------------------------------------
# The fitted ensemble


@dataclass(frozen=True)
class Choice:
    """One chosen proxy, its statistics on the calibration archs, and why it was chosen."""

    role: str                         # "z1", "z2", "z3"
    proxy: str
    spearman: float
    information_gain: float | None    # IG given z1, bits (None for z1)
    bias: float
    reason: str


@dataclass(frozen=True)
class Libra:
    """A fitted LIBRA ensemble: the chosen proxies and how their scores are combined."""

    choices: tuple[Choice, ...]
    combination: str                                  # "rank_sum" or "product"
    ranges: dict[str, tuple[float, float]]            # calibration min, max of each chosen proxy
    bias_feature: str
    bias_method: str
    accuracy_bias: float                              # the metric's own bias
    tolerance: float                                  # the widest tolerance a pool needed
    bins: str | int
    calibration_size: int
    notes: tuple[str, ...] = ()                       # candidates left out, roles left empty, and why

    @property
    def proxies(self) -> tuple[str, ...]:
        return tuple(c.proxy for c in self.choices)

    def score(self, columns: Mapping[str, Sequence[float]]) -> np.ndarray:
        """Combined score (higher is better) of a pool of archs from its chosen proxies' values.

        ``rank_sum``: Σ over the chosen proxies of the ascending rank within this pool (failures
        last, ties averaged; :func:`lswag.ensembles.ranks`), so a score compares archs of the same
        pool. ``product``: Π of each proxy's score min–max normalised by its calibration range,
        clipped to [0, 1], a failure counting 0; comparable across pools.
        """
        missing = [p for p in self.proxies if p not in columns]
        if missing:
            raise LswagError(f"LIBRA needs the proxies {', '.join(missing)}; the pool has {', '.join(columns)}")
        values = [np.asarray(columns[p], dtype=float) for p in self.proxies]
        if self.combination == "rank_sum":
            return sum(ranks(v) for v in values)
        total = np.ones_like(values[0])
        for proxy, v in zip(self.proxies, values):
            low, high = self.ranges[proxy]
            scaled = np.clip((v - low) / (high - low), 0.0, 1.0) if high > low else np.ones_like(v)
            total = total * np.where(np.isfinite(scaled), scaled, 0.0)
        return total

    def explain(self) -> str:
        """The chosen proxies with their ρ, IG and bias, and why, as printable lines."""
        lines = [f"LIBRA fitted on {self.calibration_size} archs; bias = {self.bias_method} Pearson with "
                 f"{self.bias_feature}; the accuracy's own bias {self.accuracy_bias:+.3f}; "
                 f"bins {self.bins} ({bin_count(self.calibration_size, self.bins)})"]
        width = max(len(c.proxy) for c in self.choices)
        for c in self.choices:
            ig = "     -    " if c.information_gain is None else f"IG {c.information_gain:.3f}b"
            lines.append(f"  {c.role} {c.proxy:<{width}}  rho {c.spearman:+.3f}  {ig}  bias {c.bias:+.3f}  {c.reason}")
        lines.append(f"  combined by {'rank sum' if self.combination == 'rank_sum' else 'product of normalised scores'}")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


def _candidates(table: ScoreTable, proxies: Sequence[str] | None) -> tuple[list[str], dict[str, float], list[str]]:
    """The usable candidates, their ρ, and notes on why the others are out."""
    names = list(table.proxies if proxies is None else proxies)
    unknown = [p for p in names if p not in table.columns]
    if unknown:
        raise unknown_choice("proxy", unknown[0], table.columns)
    target = constant_note(table.truth, "target constant")
    if target:
        raise LswagError(f"no proxy can be ranked against {table.metric} on these archs of {table.source} ({target})")
    # a proxy constant where it did not fail cannot rank the archs (at most it tells failures apart): skipped
    constant = {p: note for p in names if (note := constant_note(table.columns[p]))}
    usable = [p for p in names if p not in constant]
    notes = [f"{p} is no candidate ({note}): it cannot rank these archs" for p, note in constant.items()]
    if not usable:
        raise LswagError(f"no proxy of {table.source} can rank these archs: each is constant or failed everywhere")
    return usable, spearman_by_proxy(table, usable), notes


def _assemble(table: ScoreTable, picks: Sequence[tuple[str, str, str]], rho: Mapping[str, float], *,
              bias_feature: str, bias_method: str, combination: str, tolerance: float, bins,
              notes: Sequence[str]) -> Libra:
    """A :class:`Libra` of ``picks`` ``(role, proxy, reason)`` with each one's statistics on ``table``."""
    if combination not in COMBINATIONS:
        raise unknown_choice("combination", combination, COMBINATIONS)
    if bias_feature not in table.columns:
        raise unknown_choice("bias feature", bias_feature, table.columns)
    feature = table.columns[bias_feature]
    first = picks[0][1]
    gains = information_gains(table, first, [p for _, p, _ in picks[1:]], bins)
    choices, ranges = [], {}
    for role, proxy, reason in picks:
        values = table.columns[proxy]
        choices.append(Choice(role, proxy, rho[proxy], gains.get(proxy), bias(values, feature, bias_method), reason))
        finite = values[np.isfinite(values)]
        ranges[proxy] = (float(finite.min()), float(finite.max())) if finite.size else (math.nan, math.nan)
    return Libra(tuple(choices), combination, ranges, bias_feature, bias_method,
                 bias(table.truth, feature, bias_method), tolerance, bins, len(table), tuple(notes))


def fit(table: ScoreTable, *, proxies: Sequence[str] | None = None, tolerance: float = 0.1,
        max_tolerance: float = 0.2, bins: str | int = "sturges", bias_feature: str = "params",
        bias_method: str = "rank", second: str = "min_ig", third: str = "matching", combination: str = "rank_sum",
        seed: int = 0) -> Libra:
    """Choose z1, z2, z3 on ``table`` (the calibration archs) and return the fitted :class:`Libra`.

    The z2 pool is every proxy with ρ within ``tolerance`` of z1's, widened up to
    ``max_tolerance`` when empty (:func:`tolerance_pool`); z3's pool is the same with z2 left out
    (so it is the z2 pool less z2 unless that is empty). When a pool is empty even at
    ``max_tolerance``, LIBRA keeps fewer proxies and its notes say so.
    ``second``: ``min_ig`` (LIBRA) or ``max_ig`` (an ablation of the paper's Tab. 4a).
    ``third``: ``matching`` (LIBRA: bias closest to the accuracy's), ``minimisation`` (smallest
    |bias|, NAS-Bench-Suite-Zero's bias mitigation), ``random`` (seeded) or ``none`` (two proxies),
    the paper's Tab. 4b.
    """
    if second not in SECOND_RULES:
        raise unknown_choice("z2 rule", second, SECOND_RULES)
    if third not in THIRD_RULES:
        raise unknown_choice("z3 rule", third, THIRD_RULES)
    if bias_feature not in table.columns:
        raise unknown_choice("bias feature", bias_feature, table.columns)
    usable, rho, notes = _candidates(table, proxies)
    z1 = min(usable, key=lambda p: (-rho[p], p))
    picks = [("z1", z1, f"highest Spearman rho of {len(usable)} proxies")]
    pool, used = tolerance_pool(rho, rho[z1], tolerance, max_tolerance, exclude=[z1])
    threshold = _threshold(rho[z1], used, tolerance)
    if not pool:
        notes.append(f"no z2: no other proxy has {threshold}")
    else:
        gains = information_gains(table, z1, pool, bins)
        if second == "min_ig":
            z2 = min(pool, key=lambda p: (gains[p], -rho[p], p))
        else:
            z2 = max(pool, key=lambda p: (gains[p], rho[p], p))
        word = "lowest" if second == "min_ig" else "highest"
        picks.append(("z2", z2, f"{word} IG given {z1} of {_proxies(len(pool))} with {threshold}"))
        # z3's pool: the same rule with z2 left out, so it too may widen up to max_tolerance
        rest, used_z3 = tolerance_pool(rho, rho[z1], tolerance, max_tolerance, exclude=[z1, z2])
        threshold = _threshold(rho[z1], used_z3, tolerance)
        if third != "none" and not rest:
            notes.append(f"no z3: no proxy besides z2 has {threshold}")
        elif third != "none":
            feature = table.columns[bias_feature]
            accuracy_bias = bias(table.truth, feature, bias_method)
            biases = {p: bias(table.columns[p], feature, bias_method) for p in rest}
            defined = [p for p in rest if not math.isnan(biases[p])] or rest
            if third == "matching":
                z3 = min(defined, key=lambda p: (abs(biases[p] - accuracy_bias), -rho[p], p))
                reason = f"bias closest to the accuracy's ({accuracy_bias:+.3f})"
            elif third == "minimisation":
                z3 = min(defined, key=lambda p: (abs(biases[p]), -rho[p], p))
                reason = "smallest |bias|"
            else:
                z3 = rest[np.random.default_rng(seed).integers(len(rest))]
                reason = f"drawn at random (seed {seed})"
            picks.append(("z3", z3, f"{reason} of the {_proxies(len(rest))} left with {threshold}"))
            used = max(used, used_z3)
    return _assemble(table, picks, rho, bias_feature=bias_feature, bias_method=bias_method,
                     combination=combination, tolerance=used, bins=bins, notes=notes)


def _threshold(reference: float, used: float, tolerance: float) -> str:
    """The pool's rule as text, saying when the tolerance had to widen (:func:`tolerance_pool`)."""
    widened = f", widened from {tolerance:g}: no proxy within it" if used > tolerance + 1e-12 else ""
    return f"rho >= {reference - used:.3f} (tolerance {used:g}{widened})"


def _proxies(count: int) -> str:
    return f"{count} {'proxy' if count == 1 else 'proxies'}"


def pair_by_type(table: ScoreTable, kind: str, *, proxies: Sequence[str] | None = None, seed: int = 0,
                 bias_feature: str = "params", bias_method: str = "rank", bins: str | int = "sturges",
                 combination: str = "rank_sum") -> Libra | None:
    """The paper's Tab. 4a pairs: ``free`` (the two best gradient-free proxies),
    ``based`` (the two best gradient-based), ``free+based`` (the best of each) or ``random`` (two drawn
    with ``seed``). None when the table lacks the proxies of that kind."""
    usable, rho, notes = _candidates(table, proxies)
    best = sorted(usable, key=lambda p: (-rho[p], p))
    free = [p for p in best if p in GRADIENT_FREE]
    based = [p for p in best if p in GRADIENT_BASED]
    if kind == "free":
        pair, why = free[:2], "best gradient-free"
    elif kind == "based":
        pair, why = based[:2], "best gradient-based"
    elif kind == "free+based":
        pair, why = free[:1] + based[:1], "best gradient-free and best gradient-based"
    elif kind == "random":
        drawn = np.random.default_rng(seed).choice(len(usable), 2, replace=False) if len(usable) >= 2 else []
        pair, why = [usable[i] for i in drawn], f"drawn at random (seed {seed})"
    else:
        raise unknown_choice("pair kind", kind, ("free", "based", "free+based", "random"))
    if len(pair) < 2:
        return None
    picks = [("z1", pair[0], why), ("z2", pair[1], why)]
    return _assemble(table, picks, rho, bias_feature=bias_feature, bias_method=bias_method, combination=combination,
                     tolerance=math.nan, bins=bins, notes=notes)


# ----------------------------------------------------------------------------------------------
# Honest evaluation


@dataclass(frozen=True)
class MethodResult:
    """Spearman ρ of one method in-sample (fit = evaluation archs) and on held-out archs."""

    method: str
    group: str                  # "LIBRA", "baseline", "Tab. 4a", "Tab. 4b"
    in_sample: float
    held_out: float             # mean over the splits
    held_out_std: float         # standard deviation over the splits
    chosen: str                 # what the in-sample fit chose
    held_out_chosen: dict[str, int] = field(default_factory=dict)   # choice -> number of splits
    note: str = ""              # what the in-sample fit left out (a constant candidate), why its rho is undefined


@dataclass(frozen=True)
class Evaluation:
    """Every method's in-sample and held-out Spearman ρ on one table (:func:`evaluate_held_out`)."""

    source: str
    metric: str
    n: int
    calibration: int
    splits: int
    seed: int
    libra: Libra                # fitted on every arch (the paper's protocol)
    results: tuple[MethodResult, ...]

    def result(self, method: str) -> MethodResult:
        for r in self.results:
            if r.method == method:
                return r
        raise unknown_choice("method", method, [r.method for r in self.results])

    def table(self) -> str:
        """The comparison as printable lines."""
        width = max(len(r.method) for r in self.results)
        lines = [f"{self.source} vs {self.metric}: {self.n} archs; held-out = fit on {self.calibration}, "
                 f"Spearman on the other {self.n - self.calibration}, mean ± sd over {self.splits} splits",
                 f"{'method':<{width}}  {'in-sample':>9}  {'held-out':>15}  chosen in-sample"]
        for r in self.results:
            # an undefined rho (a constant score, a method not computable) prints as "-", with the note saying why
            in_sample = "-" if math.isnan(r.in_sample) else f"{r.in_sample:.3f}"
            held_out = "-" if math.isnan(r.held_out) else f"{r.held_out:7.3f} ± {r.held_out_std:5.3f}"
            lines.append(f"{r.method:<{width}}  {in_sample:>9}  {held_out:>15}  {r.chosen}"
                         + (f"  ({r.note})" if math.isnan(r.in_sample) and r.note else ""))
        return "\n".join(lines)


#: a method that chooses: (calibration table, seed) -> fitted Libra, or None where the table lacks its proxies
_Fitter = Callable[[ScoreTable, int], "Libra | None"]


def _fitted_methods(options: dict) -> list[tuple[str, str, _Fitter]]:
    def libra(**changes):
        return lambda table, seed: fit(table, **{**options, **changes, "seed": seed})

    def pair(kind):
        keep = {k: options[k] for k in ("proxies", "bias_feature", "bias_method", "bins", "combination")
                if k in options}
        return lambda table, seed: pair_by_type(table, kind, seed=seed, **keep)

    return [
        ("LIBRA", "LIBRA", libra()),
        ("2 gradient-free", "Tab. 4a", pair("free")),
        ("2 gradient-based", "Tab. 4a", pair("based")),
        ("free + based", "Tab. 4a", pair("free+based")),
        ("2 random", "Tab. 4a", pair("random")),
        ("best + max IG", "Tab. 4a", libra(second="max_ig", third="none")),
        ("best + min IG", "Tab. 4a", libra(second="min_ig", third="none")),
        ("z1+z2, no z3", "Tab. 4b", libra(third="none")),
        ("z1+z2 + random z3", "Tab. 4b", libra(third="random")),
        ("z1+z2 + bias-minimising z3", "Tab. 4b", libra(third="minimisation")),
        ("z1+z2 + bias-matching z3", "Tab. 4b", libra(third="matching")),
    ]


def _pool_methods(table: ScoreTable, proxies: Sequence[str]) -> list[tuple[str, Callable[[ScoreTable], np.ndarray]]]:
    """Methods that need no fitting, when the table has their values: ensembles over the pool."""
    methods = [("rank average (all proxies)",
                lambda t: sum(ranks(t.columns[p]) for p in proxies) / len(proxies))]
    for name, function, components in (("AZ-NAS", az_nas, AZ_NAS), ("TE-NAS", te_nas, TE_NAS)):
        if set(components) <= set(table.columns):
            methods.append((name, lambda t, f=function, c=components: _combine_pool(f, t, c)))
    if TCET in table.columns:
        methods.append(("T-CET", lambda t: t.columns[TCET]))
    return methods


def _combine_pool(function, table: ScoreTable, components) -> np.ndarray:
    pool = {i: {c: table.columns[c][i] for c in components} for i in range(len(table))}
    combined = function(pool, components)
    return np.array([combined[i] for i in range(len(table))])


def evaluate_held_out(table: ScoreTable, *, calibration: int = 100, splits: int = 10, seed: int = 0,
             **options) -> Evaluation:
    """LIBRA and its competitors in-sample and on held-out archs (module docstring).

    In-sample: every method is fitted and evaluated on all archs (the paper's protocol).
    Held-out: for each of ``splits`` seeded random splits, fit on ``calibration`` archs and
    report Spearman on the others; the best single proxy is the one of highest ρ on the
    calibration archs. ``options`` go to :func:`fit` (tolerance, bins, bias_feature, ...).
    """
    if not 3 <= calibration <= len(table) - 3:
        raise LswagError(f"calibration must leave at least 3 of the {len(table)} archs to evaluate on "
                         f"and hold at least 3, got {calibration}")
    if splits < 1:
        raise LswagError(f"splits must be at least 1, got {splits}")
    usable, _, _ = _candidates(table, options.get("proxies"))
    fitted = _fitted_methods(options)
    pooled = _pool_methods(table, usable)

    def best_single(calib: ScoreTable) -> str:
        candidates, rho, _ = _candidates(calib, usable)   # a proxy constant on these archs is none
        return min(candidates, key=lambda p: (-rho[p], p))

    def run(calib: ScoreTable, held: ScoreTable, split_seed: int) -> dict[str, tuple[float, str, str]]:
        """``{method: (rho on held, what it chose, note)}``."""
        out = {}
        for name, _, fitter in fitted:
            model = fitter(calib, split_seed)
            if model is None:
                out[name] = (math.nan, "not computable", "")
                continue
            rho, why = _rho_and_why(model.score(held.columns), held.truth)
            out[name] = (rho, "+".join(model.proxies), "; ".join(filter(None, (*model.notes, why))))
        single = best_single(calib)
        rho, why = _rho_and_why(held.columns[single], held.truth)
        out["best single proxy"] = (rho, single, why)
        for name, scorer in pooled:
            rho, why = _rho_and_why(scorer(held), held.truth)
            out[name] = (rho, "", why)
        return out

    in_sample = run(table, table, seed)
    rng = np.random.default_rng(seed)
    held_out = []
    for split in range(splits):
        order = rng.permutation(len(table))
        held_out.append(run(table.rows(np.sort(order[:calibration])), table.rows(np.sort(order[calibration:])),
                            seed + 1 + split))
    groups = {name: group for name, group, _ in fitted}
    groups["best single proxy"] = "baseline"
    groups.update({name: "baseline" for name, _ in pooled})
    order = ["LIBRA", "best single proxy"] + [n for n, _ in pooled] + [n for n, _, _ in fitted[1:]]
    results = []
    for name in order:
        values = np.array([h[name][0] for h in held_out], dtype=float)
        counts: dict[str, int] = {}
        for h in held_out:
            counts[h[name][1]] = counts.get(h[name][1], 0) + 1
        finite = values[np.isfinite(values)]
        results.append(MethodResult(name, groups[name], in_sample[name][0],
                                    float(finite.mean()) if finite.size else math.nan,
                                    float(finite.std()) if finite.size else math.nan,
                                    in_sample[name][1], dict(sorted(counts.items(), key=lambda kv: -kv[1])),
                                    in_sample[name][2]))
    return Evaluation(table.source, table.metric, len(table), calibration, splits, seed,
                      fit(table, **{**options, "seed": seed}), tuple(results))


EVALUATION_COLUMNS = ["source", "metric", "method", "group", "n", "calibration", "splits", "in_sample",
                      "held_out_mean", "held_out_std", "chosen_in_sample", "chosen_held_out", "note"]


def write_evaluation(evaluation: Evaluation, folder, benchmark: str | None = None) -> tuple[Path, Path]:
    """``libra.csv`` (one row per method) and ``libra.png`` (bars: in-sample, held-out ± sd) in ``folder``;
    ``benchmark`` titles the figure (default: the metric)."""
    check_output(folder, folder=True)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    table = folder / "libra.csv"
    with open(table, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(EVALUATION_COLUMNS)
        for r in evaluation.results:
            writer.writerow([evaluation.source, evaluation.metric, r.method, r.group, evaluation.n,
                             evaluation.calibration, evaluation.splits, r.in_sample, r.held_out, r.held_out_std,
                             r.chosen, "; ".join(f"{k or '-'} x{v}" for k, v in r.held_out_chosen.items()), r.note])
    return table, plot_evaluation(evaluation, folder / "libra.png", benchmark)


def plot_evaluation(evaluation: Evaluation, path, benchmark: str | None = None) -> Path:
    """Bar chart of every method's Spearman ρ: in-sample beside held-out (mean, ± sd over splits), titled
    by ``benchmark`` (default: the metric) and the number of architectures."""
    from lswag.plots import save_figure, subplots

    results = [r for r in evaluation.results if not (math.isnan(r.in_sample) and math.isnan(r.held_out))]
    x = np.arange(len(results))
    figure, axes = subplots(figsize=(1.5 + 0.6 * len(results), 4.5))
    axes.bar(x - 0.2, [r.in_sample for r in results], 0.4, label="in-sample (paper's protocol)")
    axes.bar(x + 0.2, [r.held_out for r in results], 0.4, yerr=[r.held_out_std for r in results], capsize=2,
             label=f"held-out (fit on {evaluation.calibration}, {evaluation.splits} splits)")
    axes.set_xticks(x, [r.method for r in results], rotation=40, ha="right", fontsize=8)
    axes.set_ylabel("Spearman ρ")
    axes.axhline(0, color="grey", linewidth=0.6)
    axes.set_title(f"LIBRA and its competitors on {benchmark or evaluation.metric} ({evaluation.n} architectures)",
                   fontsize=9)
    axes.legend(fontsize=8)
    return save_figure(figure, path)
