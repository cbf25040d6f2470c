"""Benchmark ground truth and precomputed proxy scores of a search space, read from a file.

:func:`load_truth` reads a table (``.csv``, ``.parquet``) with one arch per row, or a
NAS-Bench-Suite-Zero ``zc_*.json`` file, and keys every value by the space's parsed arch, so any
text form of an arch (NB201 string, NASLib op tuple, index) finds the same entry.
"""
from __future__ import annotations

import csv
import json
import math
import pickle
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from lswag import spaces
from lswag.errors import LswagError, unknown_choice
from lswag.settings import DUPLICATES

#: NAS-Bench-Suite-Zero's "proxy failed / not applicable" value (written -100000000.0 in its files)
FAILURE_SENTINEL = -1e8
#: what load_truth does with rows of the same architecture
#: table columns that, when present, say which benchmark a row belongs to (the first present
#: one selects the rows of ``dataset``): NB201 tables' dataset, TNB101 long tables' task
GROUP_COLUMNS = ("dataset", "task")

# A row of a file: its label in messages ("row 3", "key '(0, 1, ...)'"), the arch as written,
# and its other cells as None (empty), a number, or anything else (not numeric).
_Row = tuple[str, Any, dict[str, Any]]
_Rows = tuple[str, list[str], list[_Row]]  # source (path [dataset]), field names, rows


@dataclass(frozen=True)
class GroundTruth:
    """One metric of a benchmark (the "accuracy") and its other numeric columns, keyed by arch."""

    space: str
    metric: str
    source: str
    accuracy: dict[Hashable, float]
    #: every other numeric column or proxy -> arch -> value; None where missing or failed
    columns: dict[str, dict[Hashable, float | None]]
    #: rows of the file left out because their metric cell is empty, NaN or the failure sentinel
    skipped: int = 0

    def archs(self) -> list:
        """The archs in file order."""
        return list(self.accuracy)

    def __len__(self) -> int:
        return len(self.accuracy)

    def __contains__(self, arch: Any) -> bool:
        try:
            return self._key(arch) in self.accuracy
        except LswagError:
            return False

    def value(self, arch: Any) -> float:
        """The metric of ``arch`` (a parsed arch or any text form the space accepts)."""
        key = self._key(arch)
        if key not in self.accuracy:
            raise LswagError(f"arch {spaces.get(self.space).format(key)} is not in the ground truth "
                             f"{self.source} ({len(self)} archs)")
        return self.accuracy[key]

    def _key(self, arch: Any) -> Hashable:
        if isinstance(arch, Hashable) and arch in self.accuracy:
            return arch
        return spaces.get(self.space).parse(arch)


def load_truth(path: str | Path, *, space: str = "nb201", metric: str,
               arch_column: str | None = None, dataset: str | None = None,
               column_names: tuple[str, ...] | list[str] | None = None,
               duplicates: str = "error") -> GroundTruth:
    """Read ``metric`` and every other numeric column of ``path`` (format by suffix), keyed by arch.

    Tables (``.csv``, ``.parquet``) name the arch in ``arch_column`` (default: the space's
    :attr:`~lswag.spaces.SearchSpace.truth_arch_column`, ``arch_str`` for most); when they have a ``dataset``
    (or else a ``task``) column, ``dataset`` selects the rows by it and is required; a CSV file
    without a header row (e.g. SWAP's ``DARTS_archs_CIFAR10.csv``) is read with ``column_names`` as its header. In NAS-Bench-Suite-Zero JSON
    (``{dataset: {arch: {"val_accuracy": v, proxy: {"score": s, "time": t}}}}``) the keys are the
    archs, ``dataset`` is required when there is more than one, and each proxy gives the columns
    ``proxy`` and ``proxy_time``. The official NATS-Bench topology file (``.pbz2``, or its
    ``-simple`` archive folder, which holds :data:`NATS_META`; NAS-Bench-201's successor, same 15,625
    cells) is read through the
    ``nats_bench`` package (``pip install 'lswag[nats]'``): ``dataset`` is one of
    :data:`NATS_DATASETS`, the metrics are ``get_more_info``'s (``test-accuracy``,
    ``valid-accuracy``, ...; 200 epochs, mean over seeds) and ``get_cost_info``'s (``flops``,
    ``params``, ``latency``). Empty cells, NaN and :data:`FAILURE_SENTINEL` become None in
    ``columns``; a row whose metric is one of them is left out and counted in ``skipped`` (a
    table holding several metrics may lack some for some rows), and text or ±inf in the metric is an
    error. Rows whose archs are the same architecture (NB101
    cells that prune to one graph, the same cell trained with several seeds) are an error with
    ``duplicates="error"``; with ``"mean"`` each value is the mean over those rows (of the rows
    that have it).
    """
    space_obj = spaces.get(space)
    arch_column = arch_column or space_obj.truth_arch_column
    path = Path(path)
    readers = {".csv": read_csv_rows, ".parquet": _read_parquet, ".json": _read_json, ".pbz2": _read_nats}
    if path.is_dir() and not (path / NATS_META).is_file():
        raise LswagError(f"{path} is a folder but no NATS-Bench archive (it has no {NATS_META}); give a .csv, "
                         ".parquet or NAS-Bench-Suite-Zero .json file, or a NATS-Bench .pbz2 file or archive folder")
    suffix = "(folder)" if path.is_dir() else path.suffix.lower()
    if suffix == "(folder)" or suffix == ".pbz2":
        if space != "nb201":
            raise LswagError(f"{path} is a NATS-Bench file, which holds the nb201 space, not {space!r}")
        suffix = ".pbz2"
    if suffix not in readers:
        raise LswagError(f"unknown ground-truth format {suffix or '(no suffix)'!r} of {path}; "
                         f"valid: .csv, .parquet, .json, a NATS-Bench .pbz2 file or archive folder")
    if not path.exists():
        raise LswagError(f"{path}: no such ground-truth file")
    if duplicates not in DUPLICATES:
        raise unknown_choice("duplicates rule", duplicates, DUPLICATES)
    if column_names is not None:
        if suffix != ".csv":
            raise LswagError(f"column names are for CSV files without a header; {path} is {suffix}")
        readers[".csv"] = lambda *args: read_csv_rows(*args, column_names=list(column_names))
    source, fields, rows = readers[suffix](path, arch_column, dataset)

    numeric = [f for f in fields if all(_is_number(cells.get(f), missing_ok=True)
                                        for _, _, cells in rows)]
    if metric not in fields:
        raise LswagError(f"{source} has no metric {metric!r}; available columns: "
                         f"{', '.join(numeric) or '(none)'}")
    values: dict[Hashable, list[float]] = {}
    others: dict[str, dict[Hashable, list[float]]] = {f: {} for f in numeric if f != metric}
    seen: dict[Hashable, str] = {}
    skipped = 0
    for label, written, cells in rows:
        try:
            arch = space_obj.parse(written)
        except LswagError as err:
            raise LswagError(f"{source}: {label}: cannot parse arch {written!r}: {err}") from None
        cell = cells.get(metric)
        if cell is None or _is_number(cell) and _score(cell) is None:     # empty, NaN, the sentinel
            skipped += 1
            continue
        if not _is_number(cell) or math.isinf(cell):
            raise LswagError(f"{source}: {label}: {metric} is {cell!r}, not an accuracy (a finite number; "
                             f"empty cells, NaN and the failure sentinel {FAILURE_SENTINEL!r} are skipped)")
        if arch in seen and duplicates == "error":
            raise LswagError(f"{source}: {label} repeats the arch of {seen[arch]} "
                             f"({space_obj.format(arch)})")
        seen.setdefault(arch, label)
        values.setdefault(arch, []).append(float(cell))
        for name, column in others.items():
            cell = _score(cells.get(name))
            column.setdefault(arch, []).extend([] if cell is None else [cell])
    accuracy = {arch: sum(v) / len(v) for arch, v in values.items()}
    columns = {name: {arch: sum(v) / len(v) if v else None for arch, v in column.items()}
               for name, column in others.items()}
    if not accuracy:
        raise LswagError(f"{source} has no row with a value of {metric}" +
                         (f" ({skipped} rows, all empty, NaN or the failure sentinel)" if skipped else " (no rows)"))
    return GroundTruth(space, metric, source, accuracy, columns, skipped)


def _is_number(cell: Any, missing_ok: bool = False) -> bool:
    if cell is None:
        return missing_ok
    return isinstance(cell, (int, float)) and not isinstance(cell, bool)


def _score(cell: Any) -> float | None:
    """A cell as a value of ``columns``: None unless a number other than NaN and the sentinel."""
    if not _is_number(cell) or math.isnan(cell) or cell == FAILURE_SENTINEL:
        return None
    return float(cell)


def _pick_dataset(where: str, dataset: str | None, present: list[str], required: bool,
                  group: str = "dataset") -> str:
    if dataset is None and not required and len(present) == 1:
        return present[0]
    if dataset is not None and dataset in present:
        return dataset
    problem = "needs dataset=" if dataset is None else f"has no {group} {dataset!r}"
    raise LswagError(f"{where} {problem}; {group}s present: {', '.join(present) or '(none)'}")


def _select_rows(path: Path, header: list[str], records: list[dict[str, Any]], arch_column: str,
                 dataset: str | None) -> _Rows:
    """The rows of a table (1-based data row numbers) of the chosen dataset, and its fields."""
    if arch_column not in header:
        raise LswagError(f"{path} has no arch column {arch_column!r}; columns: {', '.join(header)}")
    numbered = list(enumerate(records, start=1))
    source = str(path)
    group = next((c for c in GROUP_COLUMNS if c in header), None)
    if group is not None:
        present = list(dict.fromkeys(str(r[group]) for r in records))
        dataset = _pick_dataset(str(path), dataset, present, required=True, group=group)
        numbered = [(i, r) for i, r in numbered if str(r[group]) == dataset]
        source = f"{path} [{dataset}]"
    elif dataset is not None:
        raise LswagError(f"{path} has no {' or '.join(map(repr, GROUP_COLUMNS))} column to select "
                         f"dataset {dataset!r} from; leave dataset out")
    fields = [f for f in header if f not in (arch_column, group)]
    return source, fields, [(f"row {i}", r[arch_column], r) for i, r in numbered]


def _csv_cell(text: str) -> Any:
    if text.strip() == "":
        return None
    try:
        return float(text)
    except ValueError:
        return text


def read_csv_rows(path: Path, arch_column: str, dataset: str | None,
                  column_names: list[str] | None = None) -> _Rows:
    """``(source, field names, rows)`` of a CSV table: each row as (label, arch as written, cells).

    Cells are None (empty), a float, or the text; the arch and group columns stay text. A
    :data:`GROUP_COLUMNS` column, when present, keeps the rows of ``dataset`` (required then).
    """
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            lines = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise LswagError(f"cannot read CSV file {path}: {err}") from None
    if not lines:
        raise LswagError(f"CSV file {path} is empty; it needs a header with {arch_column!r}")
    header, body = (lines[0], lines[1:]) if column_names is None else (column_names, lines)
    records = []
    for i, cells in enumerate(body, start=1):
        if not cells:  # a blank line
            continue
        if len(cells) != len(header):
            raise LswagError(f"{path}: row {i} has {len(cells)} cells but the header has "
                             f"{len(header)}")
        record = {name: _csv_cell(text) for name, text in zip(header, cells)}
        # The arch and the dataset are kept as written: "13714" is an index, not a number.
        for name in (arch_column, *GROUP_COLUMNS):
            if name in record:
                record[name] = cells[header.index(name)]
        records.append(record)
    return _select_rows(path, header, records, arch_column, dataset)


def _read_parquet(path: Path, arch_column: str, dataset: str | None) -> _Rows:
    try:
        import pyarrow
        import pyarrow.parquet as pq
    except ImportError:
        raise LswagError("reading Parquet needs pyarrow: pip install 'lswag[parquet]'") from None
    try:
        table = pq.read_table(path)
    except (pyarrow.ArrowException, OSError) as err:
        raise LswagError(f"cannot read Parquet file {path}: {' '.join(str(err).split())}") from None
    return _select_rows(path, table.column_names, table.to_pylist(), arch_column, dataset)


#: the datasets of a NATS-Bench / NAS-Bench-201 file
NATS_DATASETS = ("cifar10-valid", "cifar10", "cifar100", "ImageNet16-120")
#: the file every NATS-Bench archive folder (the ``-simple`` fast-mode one) holds
NATS_META = "meta.pickle.pbz2"


def _read_nats(path: Path, arch_column: str, dataset: str | None) -> _Rows:
    """NATS-Bench topology file through the official API; ``arch_column`` is unused."""
    try:
        import nats_bench
    except ImportError:
        raise LswagError("reading a NATS-Bench file needs nats_bench: pip install 'lswag[nats]'") from None
    if dataset not in NATS_DATASETS:
        problem = "needs dataset=" if dataset is None else f"has no dataset {dataset!r}"
        raise LswagError(f"{path} {problem}; datasets: {', '.join(NATS_DATASETS)}")
    try:
        api = nats_bench.create(str(path), "topology", fast_mode=path.is_dir(), verbose=False)
    except (OSError, ValueError, EOFError, pickle.UnpicklingError) as err:
        raise LswagError(f"cannot read NATS-Bench file {path}: {err}") from None
    source, fields, rows = f"{path} [{dataset}]", {}, []
    for index in tqdm(range(len(api)), desc="NATS-Bench", unit="arch", leave=False):
        try:
            cells = {**api.get_more_info(index, dataset, hp="200", is_random=False),
                     **api.get_cost_info(index, dataset, hp="200")}
        except (KeyError, ValueError, OSError) as err:
            raise LswagError(f"{source}: index {index}: no 200-epoch results: {err}") from None
        cells = {name: value for name, value in cells.items() if _is_number(value)}
        fields.update(dict.fromkeys(cells))
        rows.append((f"index {index}", api.arch(index), cells))
    return source, list(fields), rows


def _read_json(path: Path, arch_column: str, dataset: str | None) -> _Rows:
    """NAS-Bench-Suite-Zero layout; ``arch_column`` is unused (the keys are the archs)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise LswagError(f"cannot read JSON file {path}: {err}") from None
    layout = "{dataset: {arch: {metric: value, proxy: {score, time}}}}"
    if not isinstance(data, dict) or not all(isinstance(d, dict) for d in data.values()):
        raise LswagError(f"{path} is not NAS-Bench-Suite-Zero JSON; expected {layout}")
    dataset = _pick_dataset(str(path), dataset, list(data), required=False)
    source = f"{path} [{dataset}]"
    fields: dict[str, None] = {}
    rows: list[_Row] = []
    for key, record in data[dataset].items():
        if not isinstance(record, dict):
            raise LswagError(f"{source}: key {key!r} holds {type(record).__name__}, not a record; "
                             f"expected {layout}")
        cells: dict[str, Any] = {}
        for name, entry in record.items():
            if isinstance(entry, dict) and "score" in entry:
                cells[name] = entry["score"]
                if "time" in entry:
                    cells[f"{name}_time"] = entry["time"]
            else:
                cells[name] = entry
        fields.update(dict.fromkeys(cells))
        rows.append((f"key {key!r}", key, cells))
    return source, list(fields), rows
