"""Rewrites a generated lake's raw tables as ordinary writers store them.

    python tests/tools/rewrite_lake.py SRC DST --writer pandas [--partition-by-date]

Copies SRC (a lake written by `sluice datagen`) to DST with the seven raw
tables rewritten, same values, by one of:

* ``pyarrow``: ``pyarrow.parquet.write_table`` with pyarrow's defaults after
  the schema is relaxed the way pyarrow produces it from Python data: every
  column nullable, timestamps in nanoseconds (UTC).
* ``pandas``: ``DataFrame.to_parquet`` of ``read_parquet`` output (numpy
  dtypes, so integer columns holding nulls become float64 with NaN, and
  timestamps ``datetime64[ns, UTC]``), every column nullable.
* ``spark``: ``df.write.parquet`` from PySpark (INT96 or micros timestamps as
  Spark writes them, ``part-*.snappy.parquet``, ``_SUCCESS`` and ``.crc``).

With ``--partition-by-date`` the five per-sample tables are written
Hive-partitioned by the UTC date of each sample's ``ts``
(``raw/<table>/date=2026-03-01/...``); ``devices`` and ``cells`` stay whole.
Training CSVs and truth labels are copied unchanged.
"""

import argparse
import os
import shutil
import sys

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

TABLES = ["samples", "devices", "cells", "locations", "radio", "activity", "environment"]
PER_SAMPLE = ["samples", "locations", "radio", "activity", "environment"]


def read_table(lake, name):
    return pq.read_table(os.path.join(lake, "raw", name))


def relaxed(table):
    """Every column nullable, timestamps in ns with UTC (pyarrow from Python)."""
    fields = []
    for f in table.schema:
        t = f.type
        if pa.types.is_timestamp(t):
            t = pa.timestamp("ns", tz="UTC")
        fields.append(pa.field(f.name, t, nullable=True))
    return table.cast(pa.schema(fields))


def dates_of(src):
    """sample_id -> 'YYYY-MM-DD' (UTC date of ts)."""
    s = read_table(src, "samples").select(["sample_id", "ts"])
    days = pc.strftime(s.column("ts"), format="%Y-%m-%d", locale="C")
    return pa.table({"sample_id": s.column("sample_id"), "date": days})


def with_date(table, dates):
    return table.join(dates, keys="sample_id", join_type="left outer")


def write_pyarrow(table, out, partition):
    t = relaxed(table)
    if partition:
        pq.write_to_dataset(t, out, partition_cols=["date"])
    else:
        os.makedirs(out, exist_ok=True)
        pq.write_table(t, os.path.join(out, "part-0.parquet"))


def write_pandas(table, out, partition):
    df = table.to_pandas()  # numpy dtypes: ints with nulls become float64
    # Nanosecond timestamps, as pandas before 3.0 always held them (and
    # pandas 3 does after most datetime arithmetic).
    for c in df.columns:
        if str(df[c].dtype).startswith("datetime64"):
            df[c] = df[c].astype("datetime64[ns, UTC]")
    if partition:
        df.to_parquet(out, partition_cols=["date"], index=False)
    else:
        os.makedirs(out, exist_ok=True)
        df.to_parquet(os.path.join(out, "data.parquet"), index=False)


def spark_session():
    from pyspark.sql import SparkSession

    return (
        SparkSession.builder.master("local[2]")
        .appName("sluice-rewrite-lake")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.memory", "1g")
        .getOrCreate()
    )


def write_spark(spark, src_dir, out, partition, dates_path):
    df = spark.read.parquet(src_dir)
    if partition:
        d = spark.read.parquet(dates_path)
        df.join(d, "sample_id", "left").write.mode("overwrite").partitionBy("date").parquet(out)
    else:
        df.write.mode("overwrite").parquet(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--writer", choices=["pyarrow", "pandas", "spark"], required=True)
    p.add_argument("--partition-by-date", action="store_true")
    a = p.parse_args(argv)
    if os.path.exists(a.dst):
        shutil.rmtree(a.dst)
    shutil.copytree(a.src, a.dst, ignore=shutil.ignore_patterns("raw", "runs", "models", "predictions"))
    dates = dates_of(a.src) if a.partition_by_date else None
    spark = spark_session() if a.writer == "spark" else None
    dates_path = None
    if spark is not None and dates is not None:
        dates_path = os.path.join(a.dst, "_dates.parquet")
        pq.write_table(dates, dates_path)
    for name in TABLES:
        out = os.path.join(a.dst, "raw", name)
        partition = a.partition_by_date and name in PER_SAMPLE
        if a.writer == "spark":
            write_spark(spark, os.path.join(a.src, "raw", name), out, partition, dates_path)
            continue
        t = read_table(a.src, name)
        if partition:
            t = with_date(t, dates)
        if a.writer == "pyarrow":
            write_pyarrow(t, out, partition)
        else:
            write_pandas(t, out, partition)
    if spark is not None:
        spark.stop()
    if dates_path:
        os.remove(dates_path)
    print(f"rewrote {len(TABLES)} raw tables of {a.src} into {a.dst} with {a.writer}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
