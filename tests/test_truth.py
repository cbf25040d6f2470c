"""Tests of benchmark ground-truth loading: CSV / Parquet / NAS-Bench-Suite-Zero JSON, and errors."""
from __future__ import annotations

import json
import math
import sys

import pytest
from conftest import shared_file

from lswag import spaces
from lswag.truth import FAILURE_SENTINEL, GroundTruth, load_truth
from lswag.errors import LswagError

NB201 = spaces.get("nb201")
RESNET_LIKE = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|"
# The same cell three ways: arch string, NASLib op tuple, official index
CELL_A = NB201.parse("|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|")
CELL_A_NASLIB = "(4, 3, 3, 0, 0, 0)"
CELL_B = NB201.parse(RESNET_LIKE)
CELL_C = NB201.parse("13714")


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(*args, **kwargs) -> str:
    """The message of the LswagError that load_truth raises; it must be one line."""
    with pytest.raises(LswagError) as info:
        load_truth(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.fixture
def table(tmp_path):
    return write(tmp_path, "t.csv",
                 "arch_str,acc,params,zen,note\n"
                 f"{RESNET_LIKE},91.5,1.2,-100000000.0,x\n"
                 f'"{CELL_A_NASLIB}",85,0.13,,y\n'
                 "13714,94.37,1.53,-1e8,z\n")


def record(acc, **proxies):
    """A NAS-Bench-Suite-Zero record: metadata, the accuracy, and proxies with their times."""
    out = {"idx": "7", "arch": "ignored", "val_accuracy": acc}
    out.update({name: {"score": score, "time": 0.5} for name, score in proxies.items()})
    return out


# --- tables -----------------------------------------------------------------------------------

def test_csv_round_trip(table):
    truth = load_truth(table, metric="acc")
    assert isinstance(truth, GroundTruth)
    assert (truth.space, truth.metric, truth.source) == ("nb201", "acc", str(table))
    assert truth.archs() == [CELL_B, CELL_A, CELL_C] and len(truth) == 3
    assert truth.accuracy == {CELL_B: 91.5, CELL_A: 85.0, CELL_C: 94.37}
    assert set(truth.columns) == {"params", "zen"}  # "note" is not numeric
    assert truth.columns["params"] == {CELL_B: 1.2, CELL_A: 0.13, CELL_C: 1.53}


def test_sentinel_empty_and_nan_are_none(tmp_path, table):
    assert load_truth(table, metric="acc").columns["zen"] == {CELL_B: None, CELL_A: None, CELL_C: None}
    path = write(tmp_path, "n.csv", f"arch_str,acc,s\n1,1,nan\n2,2,{FAILURE_SENTINEL}\n3,3,-1e9\n")
    assert list(load_truth(path, metric="acc").columns["s"].values()) == [None, None, -1e9]


def test_lookup_by_any_text_form(table):
    truth = load_truth(table, metric="acc")
    for form in (CELL_A, CELL_A_NASLIB, CELL_A.to_str(), str(CELL_A.index), CELL_A.index):
        assert form in truth and truth.value(form) == 85.0
    assert "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|" not in truth
    assert "not an arch" not in truth


def test_value_of_absent_arch_names_it(table):
    truth = load_truth(table, metric="acc")
    with pytest.raises(LswagError, match=r"\|none~0\|\+.* is not in the ground truth .*t\.csv \(3 archs\)"):
        truth.value("(1, 1, 1, 1, 1, 1)")


def test_other_arch_column_and_metric_as_column(tmp_path):
    path = write(tmp_path, "c.csv", "idx,a,b\n0,1.5,2\n1,2.5,3\n")
    truth = load_truth(path, metric="b", arch_column="idx")
    assert truth.accuracy == {NB201.from_index(0): 2.0, NB201.from_index(1): 3.0}
    assert truth.columns == {"a": {NB201.from_index(0): 1.5, NB201.from_index(1): 2.5}}


def test_dataset_column_selects_rows(tmp_path):
    path = write(tmp_path, "d.csv",
                 "dataset,arch_str,acc\ncifar10,1,90\nImageNet16-120,1,40\ncifar10,2,80\n")
    truth = load_truth(path, metric="acc", dataset="ImageNet16-120")
    assert truth.accuracy == {NB201.from_index(1): 40.0}
    assert truth.source == f"{path} [ImageNet16-120]" and "dataset" not in truth.columns
    assert len(load_truth(path, metric="acc", dataset="cifar10")) == 2
    assert error_of(path, metric="acc") == \
        f"{path} needs dataset=; datasets present: cifar10, ImageNet16-120"
    assert "has no dataset 'cifar100'; datasets present: cifar10, ImageNet16-120" in \
        error_of(path, metric="acc", dataset="cifar100")
    # A per-dataset row number counts every data row of the file
    bad = write(tmp_path, "e.csv", "dataset,arch_str,acc\na,1,1\nb,1,1\nb,zz,1\n")
    assert "[b]: row 3: cannot parse arch 'zz'" in error_of(bad, metric="acc", dataset="b")


def test_task_column_selects_rows_like_a_dataset_column(tmp_path):
    # TNB101's long tables hold one row per (task, arch)
    path = write(tmp_path, "t.csv", "task,arch_str,acc\njigsaw,1,0.5\nnormal,1,0.7\njigsaw,2,0.6\n")
    truth = load_truth(path, metric="acc", dataset="jigsaw")
    assert truth.accuracy == {NB201.from_index(1): 0.5, NB201.from_index(2): 0.6} and "task" not in truth.columns
    assert error_of(path, metric="acc") == f"{path} needs dataset=; tasks present: jigsaw, normal"
    assert "has no task 'room'; tasks present: jigsaw, normal" in error_of(path, metric="acc", dataset="room")


def test_dataset_without_dataset_column(table):
    assert "has no 'dataset' or 'task' column" in error_of(table, metric="acc", dataset="cifar10")


@pytest.mark.parametrize("cell, shown", [("abc", "'abc'"), ("inf", "inf"), ("-inf", "-inf")])
def test_unusable_accuracy_names_row_and_value(tmp_path, cell, shown):
    path = write(tmp_path, "a.csv", f"arch_str,acc\n1,90\n2,{cell}\n")
    message = error_of(path, metric="acc")
    assert message.startswith(f"{path}: row 2: acc is {shown}, not an accuracy")


@pytest.mark.parametrize("cell", ["", "nan", "-1e8", "-100000000.0"])
def test_rows_without_the_metric_are_skipped_and_counted(tmp_path, cell):
    path = write(tmp_path, "a.csv", f"arch_str,acc,other\n1,90,1\n2,{cell},2\n3,80,{cell}\n")
    truth = load_truth(path, metric="acc")
    assert truth.skipped == 1 and truth.accuracy == {NB201.from_index(1): 90.0, NB201.from_index(3): 80.0}
    # the other metric of the same table skips its own empty row instead
    other = load_truth(path, metric="other")
    assert other.skipped == 1 and other.accuracy == {NB201.from_index(1): 1.0, NB201.from_index(2): 2.0}
    assert load_truth(write(tmp_path, "b.csv", "arch_str,acc\n1,90\n"), metric="acc").skipped == 0


def test_a_metric_without_any_value_is_an_error(tmp_path):
    path = write(tmp_path, "a.csv", "arch_str,acc,x\n1,,1\n2,nan,2\n")
    assert error_of(path, metric="acc") == f"{path} has no row with a value of acc (2 rows, all empty, NaN or the failure sentinel)"
    header_only = write(tmp_path, "h.csv", "arch_str,acc\n")
    assert error_of(header_only, metric="acc") == f"{header_only} has no row with a value of acc (no rows)"


def test_unknown_metric_lists_columns(table):
    assert error_of(table, metric="top1") == \
        f"{table} has no metric 'top1'; available columns: acc, params, zen"


def test_unparseable_arch_names_file_row_and_reason(tmp_path):
    path = write(tmp_path, "u.csv", "arch_str,acc\n1,90\n|bad_op~0|+|none~0|none~1|+|none~0|none~1|none~2|,80\n")
    message = error_of(path, metric="acc")
    assert message.startswith(f"{path}: row 2: cannot parse arch ")
    assert "unknown NB201 op 'bad_op'" in message and "valid ops: none" in message


def test_duplicate_arch_names_both_rows(tmp_path):
    path = write(tmp_path, "dup.csv", f'arch_str,acc\n1,90\n{RESNET_LIKE},80\n"{CELL_B.naslib_indices}",70\n')
    assert error_of(path, metric="acc") == \
        f"{path}: row 3 repeats the arch of row 2 ({RESNET_LIKE})"


def test_duplicate_archs_averaged_on_request(tmp_path):
    path = write(tmp_path, "dup.csv", f'arch_str,acc,params,zen\n{RESNET_LIKE},90,1.0,-1e8\n"{CELL_B.naslib_indices}",80,1.0,3\n'
                                      "13714,70,2.0,5\n")
    truth = load_truth(path, metric="acc", duplicates="mean")
    assert len(truth) == 2 and truth.value(CELL_B) == 85 and truth.value(CELL_C) == 70
    assert truth.columns["params"][CELL_B] == 1.0
    assert truth.columns["zen"][CELL_B] == 3          # the failed row's sentinel is left out of the mean
    assert "duplicates rule" in error_of(path, metric="acc", duplicates="max")


def test_csv_without_header_reads_given_column_names(tmp_path):
    path = write(tmp_path, "bare.csv", f"{RESNET_LIKE},91.5\n13714,94.37\n")
    truth = load_truth(path, metric="acc", column_names=("arch_str", "acc"))
    assert truth.archs() == [CELL_B, CELL_C] and truth.value(CELL_C) == 94.37
    assert "row 2 has 3 cells" in error_of(write(tmp_path, "bad.csv", "1,2\n1,2,3\n"), metric="acc",
                                           column_names=("arch_str", "acc"))
    json_path = write(tmp_path, "t.json", "{}")
    assert "without a header" in error_of(json_path, metric="acc", column_names=("arch_str", "acc"))


def test_file_errors(tmp_path, table):
    missing = tmp_path / "nope.csv"
    assert error_of(missing, metric="acc") == f"{missing}: no such ground-truth file"
    assert error_of(tmp_path / "t.tsv", metric="acc") == \
        f"unknown ground-truth format '.tsv' of {tmp_path / 't.tsv'}; valid: .csv, .parquet, .json, " \
        "a NATS-Bench .pbz2 file or archive folder"
    assert "has no arch column 'arch'; columns: arch_str, acc, params, zen, note" in \
        error_of(table, metric="acc", arch_column="arch")
    assert "is empty" in error_of(write(tmp_path, "empty.csv", ""), metric="acc")
    ragged = write(tmp_path, "r.csv", "arch_str,acc\n1,90\n2,80,7\n")
    assert error_of(ragged, metric="acc") == f"{ragged}: row 2 has 3 cells but the header has 2"
    assert f"unknown search space 'nb999'; valid choices: {', '.join(spaces.names())}" in \
        error_of(table, metric="acc", space="nb999")


def test_parquet_round_trip(tmp_path, table):
    pytest.importorskip("pyarrow", reason="Parquet support needs the optional pyarrow")
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"dataset": ["c10", "c10", "c100"],
                             "arch_str": [RESNET_LIKE, CELL_A_NASLIB, RESNET_LIKE],
                             "acc": [91.5, 85.0, 70.0], "zen": [FAILURE_SENTINEL, 3.0, None],
                             "note": ["x", "y", "z"]}), path)
    truth = load_truth(path, metric="acc", dataset="c10")
    assert truth.accuracy == {CELL_B: 91.5, CELL_A: 85.0}
    assert truth.columns == {"zen": {CELL_B: None, CELL_A: 3.0}}
    assert "needs dataset=; datasets present: c10, c100" in error_of(path, metric="acc")
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    assert error_of(bad, metric="acc").startswith(f"cannot read Parquet file {bad}: ")


def test_parquet_without_pyarrow(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    path = write(tmp_path, "t.parquet", "")
    assert error_of(path, metric="acc") == "reading Parquet needs pyarrow: pip install 'lswag[parquet]'"


# --- NAS-Bench-Suite-Zero JSON ----------------------------------------------------------------

def test_json_round_trip(tmp_path):
    body = {"cifar10": {
        CELL_A_NASLIB: record(85.0, synflow=40.0, jacov=FAILURE_SENTINEL),
        str(CELL_B.naslib_indices): record(91.5, jacov=-30.0),
    }}
    path = write(tmp_path, "zc.json", json.dumps(body))
    truth = load_truth(path, metric="val_accuracy")  # one dataset: no need to name it
    assert truth.source == f"{path} [cifar10]"
    assert truth.archs() == [CELL_A, CELL_B]
    assert truth.accuracy == {CELL_A: 85.0, CELL_B: 91.5}
    assert set(truth.columns) == {"synflow", "synflow_time", "jacov", "jacov_time"}  # no idx, arch
    assert truth.columns["synflow"] == {CELL_A: 40.0, CELL_B: None}  # absent for CELL_B
    assert truth.columns["jacov"] == {CELL_A: None, CELL_B: -30.0}
    assert truth.columns["jacov_time"] == {CELL_A: 0.5, CELL_B: 0.5}


def test_json_proxy_as_metric_and_sentinel_error(tmp_path):
    body = {"c": {"(4, 3, 3, 0, 0, 0)": record(85.0, jacov=FAILURE_SENTINEL)}}
    path = write(tmp_path, "zc.json", json.dumps(body))
    message = error_of(path, metric="jacov")
    assert message == f"{path} [c] has no row with a value of jacov (1 rows, all empty, NaN or the failure sentinel)"
    assert load_truth(path, metric="jacov_time").accuracy == {CELL_A: 0.5}


def test_json_dataset_choice(tmp_path):
    body = {"cifar10": {"1": record(90.0)}, "cifar100": {"1": record(70.0), "2": record(60.0)}}
    path = write(tmp_path, "zc.json", json.dumps(body))
    assert load_truth(path, metric="val_accuracy", dataset="cifar100").value("1") == 70.0
    assert error_of(path, metric="val_accuracy") == \
        f"{path} needs dataset=; datasets present: cifar10, cifar100"
    assert "has no dataset 'svhn'; datasets present: cifar10, cifar100" in \
        error_of(path, metric="val_accuracy", dataset="svhn")


def test_json_errors(tmp_path):
    unparseable = write(tmp_path, "u.json", json.dumps({"c": {"(9, 0, 0, 0, 0, 0)": record(1.0)}}))
    message = error_of(unparseable, metric="val_accuracy")
    assert message.startswith(f"{unparseable} [c]: key '(9, 0, 0, 0, 0, 0)': cannot parse arch")
    assert "NASLib op index 9 out of range" in message
    twice = write(tmp_path, "d.json", json.dumps({"c": {"(1,1,1,1,1,1)": record(1.0),
                                                        "(1, 1, 1, 1, 1, 1)": record(2.0)}}))
    assert "key '(1, 1, 1, 1, 1, 1)' repeats the arch of key '(1,1,1,1,1,1)'" in \
        error_of(twice, metric="val_accuracy")
    assert "has no metric 'acc'" in error_of(twice, metric="acc")
    assert "available columns: val_accuracy" in error_of(twice, metric="acc")
    assert "cannot read JSON file" in error_of(write(tmp_path, "b.json", "{oops"), metric="x")
    assert "is not NAS-Bench-Suite-Zero JSON" in error_of(write(tmp_path, "l.json", "[1, 2]"), metric="x")
    flat = write(tmp_path, "f.json", json.dumps({"c": {"1": 3.0}}))
    assert "key '1' holds float, not a record" in error_of(flat, metric="x")


# --- real data --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def nb201_truth() -> GroundTruth:
    return load_truth(shared_file("benchmarks/nasbench201/nb201_groundtruth.csv"),
                      metric="cifar10_test_acc_200ep")


@pytest.fixture(scope="module")
def suite_zero_partial() -> GroundTruth:
    return load_truth(shared_file("benchmarks/nasbench201/raw/naslib_zc_nasbench201_partial.json"),
                      metric="val_accuracy", dataset="cifar10")


@pytest.mark.realdata
def test_real_groundtruth_csv(nb201_truth):
    assert len(nb201_truth) == 15625
    assert nb201_truth.value(NB201.parse("13714")) == pytest.approx(94.3733, abs=1e-4)
    assert nb201_truth.value(NB201.parse("10")) == 10.0
    assert max(nb201_truth.accuracy.values()) == nb201_truth.value("13714")
    # The file's own index column agrees with lswag's regenerated index
    assert all(nb201_truth.columns["nb201_index"][a] == a.index for a in nb201_truth.archs())
    assert sum(v is None for v in nb201_truth.columns["zen_cifar10"].values()) == 341
    assert "naslib_op_indices" not in nb201_truth.columns


@pytest.mark.realdata
def test_real_suite_zero_json_decodes_naslib_tuples(suite_zero_partial, nb201_truth):
    truth = suite_zero_partial
    assert len(truth) == 725 and {"synflow", "synflow_time", "nwot", "jacov"} <= set(truth.columns)
    sample = truth.archs()[::36]
    assert len(sample) >= 20
    for arch in sample:
        n_params = sum(p.numel() for p in NB201.build(arch).parameters())
        assert round(n_params / 1e6, 6) == truth.columns["params"][arch]
    # Parameter counts only see op counts; the accuracies also see which edge holds which op.
    # The same target, keyed by NB201 strings in the joined CSV:
    assert all(truth.value(a) == nb201_truth.columns["suite0_val_acc_cifar10"][a] for a in truth.archs())
    # An independent 200-epoch cifar10-valid run (BayesWatch): close on average, while a
    # mis-decoded edge order is off by several points
    diffs = [abs(truth.value(a) - nb201_truth.columns["cifar10valid_valid_acc_200ep"][a])
             for a in truth.archs()]
    assert sum(diffs) / len(diffs) < 1.0


@pytest.mark.realdata
def test_real_suite_zero_13_proxies_csv():
    truth = load_truth(shared_file("benchmarks/nasbench201/nb201_suite0_13proxies_9445nets.csv"),
                       metric="val_accuracy", dataset="cifar10")
    assert len(truth) == 9445
    proxies = {"flops", "params", "synflow", "snip", "grasp", "fisher", "grad_norm", "jacov",
               "nwot", "epe_nas", "plain", "l2_norm", "zen"}
    assert set(truth.columns) == proxies  # naslib_op_indices is text, so skipped
    failed = sum(v is None for column in truth.columns.values() for v in column.values())
    assert 0 < failed < 100
    assert all(not math.isnan(v) for v in truth.accuracy.values())


# --------------------------------------------------------------------------- NATS-Bench

class FakeNatsApi:
    """Stands in for nats_bench's topology API, which needs the official multi-GB file (not here).

    It answers the calls lswag makes with values derived from the index, so the test can tell
    which arch got which number.
    """
    archs = [NB201.format(CELL_A), RESNET_LIKE, NB201.format(CELL_C)]

    def __init__(self, path, space, fast_mode, verbose):
        self.opened = (path, space, fast_mode, verbose)

    def __len__(self):
        return len(self.archs)

    def arch(self, index):
        return self.archs[index]

    def get_more_info(self, index, dataset, hp, is_random):
        assert (hp, is_random) == ("200", False)     # 200 epochs, mean over seeds
        return {"test-accuracy": 90.0 + index, "valid-accuracy": 80.0 + index, "comment": "text"}

    def get_cost_info(self, index, dataset, hp):
        return {"flops": 10.0 * index, "params": 0.5 + index, "latency": None}


def test_nats_bench_file_through_the_official_api(tmp_path, monkeypatch):
    nats_bench = pytest.importorskip("nats_bench", reason="nats_bench is the optional extra lswag[nats]")
    opened = []
    monkeypatch.setattr(nats_bench, "create", lambda *args, **kw: opened.append(FakeNatsApi(*args, **kw)) or opened[-1])
    archive = tmp_path / "NATS-tss-v1_0-3ffb9-simple"
    archive.mkdir()
    (archive / "meta.pickle.pbz2").write_bytes(b"")     # what marks the folder as an archive
    truth = load_truth(archive, metric="test-accuracy", dataset="cifar100")
    assert opened[0].opened == (str(archive), "topology", True, False)   # a folder is the fast-mode archive
    assert truth.value(CELL_C) == 92.0 and truth.value(RESNET_LIKE) == 91.0
    assert truth.columns["valid-accuracy"][CELL_A] == 80.0 and truth.columns["params"][CELL_C] == 2.5
    assert "comment" not in truth.columns and "latency" not in truth.columns   # not numeric
    assert truth.source == f"{archive} [cifar100]"
    full = write(tmp_path, "NATS-tss-v1_0-3ffb9-full.pickle.pbz2", "")
    assert load_truth(full, metric="valid-accuracy", dataset="cifar10").value(CELL_A) == 80.0
    assert opened[1].opened[2] is False                                  # a single file is read whole
    assert error_of(full, metric="test-accuracy") == (
        f"{full} needs dataset=; datasets: cifar10-valid, cifar10, cifar100, ImageNet16-120")
    assert error_of(full, metric="acc", dataset="cifar10").startswith(
        f"{full} [cifar10] has no metric 'acc'; available columns: test-accuracy, valid-accuracy")


def test_nats_bench_missing_package_is_named(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "nats_bench", None)   # import fails as if not installed
    full = write(tmp_path, "NATS-tss-v1_0-3ffb9-full.pickle.pbz2", "")
    assert error_of(full, metric="test-accuracy", dataset="cifar10") == (
        "reading a NATS-Bench file needs nats_bench: pip install 'lswag[nats]'")
