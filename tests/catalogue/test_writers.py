"""Real writers (issue 16): lakes whose raw tables were written by pyarrow,
pandas (`to_parquet`, ns timestamps, every column nullable, integer columns
with nulls as float64) and PySpark (`df.write.parquet`) run through training
and inference with predictions equal to the generator's lake; a
Hive-partitioned lake runs day by day (`--partition date=...`) into
`predictions/date=<day>/`, and rerunning a day replaces that day's output.
"""

import json
import os
import shutil
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import ROOT, Lake, run

REWRITE = os.path.join(ROOT, "tests", "tools", "rewrite_lake.py")


def committed_predictions(lake, rel_dir):
    """The rows of a committed predictions directory (files of its manifest)."""
    with open(lake.path(rel_dir, "_manifest.json")) as f:
        m = json.load(f)
    tables = [pq.read_table(lake.path(e["path"])) for e in m["files"]]
    t = pa.concat_tables(tables)
    assert t.num_rows == m["rows"]
    return t


def as_rows(t):
    t = t.sort_by("sample_id")
    return list(zip(t.column("sample_id").to_pylist(),
                    t.column("indoor_probability").to_pylist(),
                    t.column("indoor").to_pylist()))


def predict_all(lake, *extra):
    r = run("run", lake.infer_cfg, *extra)
    assert r.code == 0, r
    return r


def only_run_dir(lake):
    dirs = [d for d in os.listdir(lake.path("predictions")) if d.startswith("run=")]
    assert len(dirs) == 1, dirs
    return "predictions/" + dirs[0]


@pytest.fixture(scope="module")
def reference(base_lake, tmp_path_factory):
    """Predictions of the generator's lake."""
    root = str(tmp_path_factory.mktemp("ref") / "lake")
    shutil.copytree(base_lake, root, ignore=shutil.ignore_patterns("runs", "predictions"))
    lake = Lake(root)
    predict_all(lake)
    return as_rows(committed_predictions(lake, only_run_dir(lake)))


def rewritten(base_lake, tmp_path, writer, partition=False):
    root = str(tmp_path / f"lake-{writer}")
    args = [sys.executable, REWRITE, base_lake, root, "--writer", writer]
    if partition:
        args.append("--partition-by-date")
    p = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    lake = Lake(root)
    r = run("run", lake.train_cfg)
    assert r.code == 0, r
    return lake


@pytest.mark.parametrize("writer", ["pyarrow", "pandas", "spark"])
def test_writer_lake_predicts_like_the_generators(base_lake, tmp_path, reference, writer):
    lake = rewritten(base_lake, tmp_path, writer)
    if writer == "pandas":
        # pandas' own choices survive in the files: ns timestamps, floats
        # for integer columns with nulls, everything nullable.
        f = [os.path.join(lake.path("raw", "samples"), n) for n in os.listdir(lake.path("raw", "samples"))][0]
        s = pq.read_schema(f)
        assert s.field("ts").type == pa.timestamp("ns", tz="UTC"), s
        assert s.field("cell_key").type == pa.float64(), s
        assert all(fld.nullable for fld in s), s
    if writer == "spark":
        names = os.listdir(lake.path("raw", "samples"))
        assert "_SUCCESS" in names and any(n.startswith("part-") and n.endswith(".snappy.parquet") for n in names), names
    predict_all(lake)
    assert as_rows(committed_predictions(lake, only_run_dir(lake))) == reference


def day_partitions(lake):
    days = sorted(d.split("=", 1)[1] for d in os.listdir(lake.path("raw", "samples")) if d.startswith("date="))
    assert len(days) >= 2, days
    return days


def test_daily_partitioned_runs(base_lake, tmp_path, reference):
    lake = rewritten(base_lake, tmp_path, "pandas", partition=True)
    days = day_partitions(lake)
    rows = []
    first = None
    by_day = {}
    for day in days:
        predict_all(lake, "--partition", f"date={day}")
        day_rows = as_rows(committed_predictions(lake, f"predictions/date={day}"))
        by_day[day] = day_rows
        first = first or day_rows
        rows += day_rows
    # Every sample predicted once over the days (lag/lead features see only
    # their day, so probabilities near midnight may differ from one run
    # over all days).
    assert sorted(r[0] for r in rows) == [r[0] for r in reference]
    # Rerun the first day: its manifest is replaced, the result is the same.
    manifest = lake.path("predictions", f"date={days[0]}", "_manifest.json")
    before = open(manifest).read()
    predict_all(lake, "--partition", f"date={days[0]}")
    assert open(manifest).read() != before
    assert as_rows(committed_predictions(lake, f"predictions/date={days[0]}")) == first

    # A range is one run per day: each day's predictions replace that day's
    # directory with the same rows as its own daily run, none go to run=.
    manifests = {d: open(lake.path("predictions", f"date={d}", "_manifest.json")).read() for d in days}
    r = predict_all(lake, "--partition", f"date={days[0]}..{days[-1]}")
    assert r.out.count("pipeline ") == len(days), r
    for d in days:
        assert open(lake.path("predictions", f"date={d}", "_manifest.json")).read() != manifests[d], d
        assert as_rows(committed_predictions(lake, f"predictions/date={d}")) == by_day[d], d
    assert not [p for p in os.listdir(lake.path("predictions")) if p.startswith("run=")]
    # The dry run names the runs it would make and writes nothing.
    r = run("run", lake.infer_cfg, "--dry-run", "--partition", f"date={days[0]}..{days[1]}")
    assert r.code == 0 and f"one run per partition: date={days[0]}, date={days[1]}" in r.out, r
    # A range between the days present matches nothing: named, nothing run.
    r = run("run", lake.infer_cfg, "--partition", "date=1999-01-01..1999-01-02")
    assert r.code != 0 and "date=1999-01-01..1999-01-02" in r.err and "matches no partition" in r.err, r
