"""The bad-input catalogue (issue 16): every case runs the real `sluice`
binary on a small lake and asserts the exit code, the words a user needs
(file, column, key, row) and that the failed step committed nothing.

Raw-table cases run the inference pipeline's ingest step; CSV cases the
training pipeline's; config cases `sluice validate` (exit 2) or `sluice
run` (exit 1); model and lake cases the whole inference pipeline.
"""

import os
import shutil

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from conftest import run

EXIT_ERROR = 1  # any failed command
EXIT_INVALID_CONFIG = 2  # `sluice validate` with at least one bad file


def rewrite(lake, table, fn, part=0):
    """Rewrites one part file of a raw table with `fn(pa.Table) -> pa.Table`."""
    path = lake.parts(table)[part]
    t = pq.read_table(path)
    pq.write_table(fn(t), path)
    return os.path.relpath(path, lake.root)


def set_column(t, name, values, type=None):
    i = t.schema.get_field_index(name)
    type = type or t.schema.field(name).type
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        arr = values.cast(type)
    else:
        arr = pa.array(values, type=type)
    return t.set_column(i, pa.field(name, arr.type, nullable=True), arr)


def replace_at(t, name, row, value, type=None):
    vals = t.column(name).to_pylist()
    vals[row] = value
    return set_column(t, name, vals, type)


def ingest_fails(lake, *words, extra=()):
    # `--steps ingest` writes the joined table; the whole pipeline leaves
    # the join to predict's plan (docs/DATA.md, "The join, written or
    # not"). Both must stop at the ingest step with the same words.
    for steps in (["--steps", "ingest"], []):
        r = run("run", lake.infer_cfg, *steps, *extra)
        assert r.code == EXIT_ERROR, (steps, r)
        for w in words:
            assert w in r.err, f"{steps}: missing {w!r} in:\n{r.err}"
        assert lake.manifests("cat-infer", "ingest") == [], f"{steps}: the failed ingest committed"
        assert not os.path.isdir(lake.path("predictions")) or os.listdir(lake.path("predictions")) == [], steps
    return r


def ingest_ok(lake, extra=()):
    r = run("run", lake.infer_cfg, "--steps", "ingest", *extra)
    assert r.code == 0, r
    assert len(lake.manifests("cat-infer", "ingest")) == 1
    return r


# --- raw tables: schema drift ------------------------------------------------

def test_missing_column(lake):
    f = rewrite(lake, "radio", lambda t: t.drop_columns(["rsrq_db"]))
    ingest_fails(lake, f, "missing column `rsrq_db`", "Float64")


def test_renamed_column(lake):
    f = rewrite(lake, "devices", lambda t: t.rename_columns(
        ["device_model" if n == "model" else n for n in t.column_names]))
    ingest_fails(lake, f, "missing column `model`", "extra column `device_model`")


def test_extra_column(lake):
    f = rewrite(lake, "devices", lambda t: t.append_column("imei", pa.array(["x"] * len(t))))
    ingest_fails(lake, f, "extra column `imei`")


def test_mistyped_float_column(lake):
    f = rewrite(lake, "radio", lambda t: set_column(
        t, "rsrp_dbm", [None if v is None else str(v) for v in t.column("rsrp_dbm").to_pylist()], pa.string()))
    ingest_fails(lake, f, "`rsrp_dbm`", "expected Float64, found Utf8")


def test_mistyped_boolean_column(lake):
    f = rewrite(lake, "environment", lambda t: set_column(
        t, "screen_on", [int(v) for v in t.column("screen_on").to_pylist()], pa.int64()))
    ingest_fails(lake, f, "`screen_on`", "expected Boolean, found Int64")


def test_timestamp_as_text(lake):
    f = rewrite(lake, "samples", lambda t: set_column(
        t, "ts", [v.isoformat() for v in t.column("ts").to_pylist()], pa.string()))
    ingest_fails(lake, f, "`ts`", "found Utf8")


# --- raw tables: null values --------------------------------------------------

def test_nulls_in_not_null_column(lake):
    f = rewrite(lake, "devices", lambda t: replace_at(t, "model", 1, None))
    ingest_fails(lake, f, "`model`", "holds 1 null value(s)")


def test_null_key(lake):
    f = rewrite(lake, "activity", lambda t: replace_at(t, "sample_id", 0, None))
    ingest_fails(lake, f, "`sample_id`", "null value(s)")


def test_declared_nullable_but_clean_is_accepted(lake):
    for table in ["samples", "devices", "cells", "locations", "radio", "activity", "environment"]:
        for i in range(len(lake.parts(table))):
            rewrite(lake, table, lambda t: t.cast(pa.schema(
                [pa.field(f.name, f.type, nullable=True) for f in t.schema])), part=i)
    ingest_ok(lake)


# --- raw tables: physical types ------------------------------------------------

@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_every_timestamp_unit_is_accepted(lake, unit):
    # Whole seconds so every unit holds the same instants.
    def f(t):
        secs = pc.cast(pc.divide(pc.cast(t.column("ts"), pa.int64()), 1_000_000), pa.int64())
        ts = pc.cast(pc.cast(pc.multiply(secs, 1_000_000), pa.int64()), pa.timestamp("us", tz="UTC"))
        return set_column(t, "ts", ts, pa.timestamp(unit, tz="UTC"))
    for i in range(len(lake.parts("samples"))):
        rewrite(lake, "samples", f, part=i)
    ingest_ok(lake)


def test_naive_and_zoned_timestamps_are_accepted(lake):
    for i in range(len(lake.parts("samples"))):
        rewrite(lake, "samples", lambda t: set_column(
            t, "ts", t.column("ts").cast(pa.timestamp("us")), pa.timestamp("us")), part=i)
    for i in range(len(lake.parts("locations"))):
        rewrite(lake, "locations", lambda t: set_column(
            t, "fix_ts", t.column("fix_ts").cast(pa.timestamp("ns", tz="Europe/Berlin")),
            pa.timestamp("ns", tz="Europe/Berlin")), part=i)
    ingest_ok(lake)


def test_narrow_ints_float32_and_dictionary_strings_are_accepted(lake):
    for i in range(len(lake.parts("activity"))):
        rewrite(lake, "activity", lambda t: set_column(
            set_column(t, "confidence", t.column("confidence").cast(pa.int8()), pa.int8()),
            "activity", t.column("activity").dictionary_encode(), pa.dictionary(pa.int32(), pa.string())), part=i)
    for i in range(len(lake.parts("radio"))):
        rewrite(lake, "radio", lambda t: set_column(
            t, "rsrp_dbm", t.column("rsrp_dbm").cast(pa.float32()), pa.float32()), part=i)
    ingest_ok(lake)


def test_sub_microsecond_timestamp(lake):
    def f(t):
        ns = t.column("ts").cast(pa.timestamp("ns", tz="UTC")).cast(pa.int64()).to_pylist()
        ns[4] += 7
        return set_column(t, "ts", pa.array(ns, pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
                          pa.timestamp("ns", tz="UTC"))
    f_ = rewrite(lake, "samples", f)
    ingest_fails(lake, f_, "`ts`", "sub-microsecond", "7 ns)")


def test_whole_floats_for_integer_column_are_accepted(lake):
    # The documented choice (docs/DATA.md, "Types by meaning"): pandas
    # writes an integer column holding nulls as float64; whole values in
    # range are read as the contract's integers, unchanged.
    before = pq.read_table(lake.parts("cells")[0]).column("pci").to_pylist()
    rewrite(lake, "cells", lambda t: set_column(t, "pci", t.column("pci").cast(pa.float64()), pa.float64()))
    ingest_ok(lake)
    [m] = lake.manifests("cat-infer", "ingest")
    out = pq.read_table(os.path.dirname(m))
    assert out.schema.field("pci").type == pa.int32()
    assert set(v for v in out.column("pci").to_pylist() if v is not None) <= set(before)


def test_fraction_in_float_column_for_integers(lake):
    f = rewrite(lake, "cells", lambda t: replace_at(
        set_column(t, "pci", t.column("pci").cast(pa.float64()), pa.float64()), "pci", 2, 17.25))
    ingest_fails(lake, f, "`pci`", "value 17.25 is not a whole number")


def test_integer_too_large_for_int32(lake):
    f = rewrite(lake, "cells", lambda t: replace_at(
        set_column(t, "tac", t.column("tac").cast(pa.int64()), pa.int64()), "tac", 0, 5_000_000_000))
    ingest_fails(lake, f, "`tac`", "value 5000000000", "does not fit Int32")


def test_pandas_float_for_nullable_int_is_accepted(lake):
    for i in range(len(lake.parts("samples"))):
        rewrite(lake, "samples", lambda t: set_column(
            t, "cell_key", t.column("cell_key").cast(pa.float64()), pa.float64()), part=i)
    ingest_ok(lake)


# --- raw tables: broken files ---------------------------------------------------

def put(lake, rel, data):
    p = lake.path(rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(data)
    return rel


def first_bytes(lake, table):
    with open(lake.parts(table)[0], "rb") as f:
        return f.read()


def test_zero_byte_file(lake):
    f = put(lake, "raw/radio/part-99.parquet", b"")
    ingest_fails(lake, f, "empty file (0 bytes)")


def test_truncated_file(lake):
    b = first_bytes(lake, "radio")
    f = put(lake, "raw/radio/part-99.parquet", b[: len(b) // 2])
    ingest_fails(lake, f, "truncated Parquet file")


def test_csv_named_parquet(lake):
    f = put(lake, "raw/radio/part-99.parquet", b"sample_id,rsrp_dbm\n1,-80\n2,-90\n")
    ingest_fails(lake, f, "not a Parquet file", "`sample_id,rsrp_dbm`")


def test_garbage_header(lake):
    b = bytearray(first_bytes(lake, "radio"))
    b[:4] = b"\x00\x01\x02\x03"
    f = put(lake, "raw/radio/part-99.parquet", bytes(b))
    ingest_fails(lake, f, "does not start with PAR1")


def test_corrupt_footer(lake):
    b = bytearray(first_bytes(lake, "radio"))
    n = len(b)
    b[n - 120: n - 8] = b"\xab" * 112
    f = put(lake, "raw/radio/part-99.parquet", bytes(b))
    ingest_fails(lake, f, "corrupt Parquet footer")


def test_spark_bookkeeping_files_are_ignored(lake):
    for name in ["_SUCCESS", "_committed_1", "_started_1", ".part-00000.snappy.parquet.crc"]:
        put(lake, f"raw/samples/{name}", b"bookkeeping")
    put(lake, "raw/samples/_temporary/0/part-00003.snappy.parquet", b"half written")
    ingest_ok(lake)


# --- raw tables: keys and rows -------------------------------------------------

def test_duplicate_sample_id(lake):
    f = rewrite(lake, "radio", lambda t: pa.concat_tables([t, t.slice(3, 2)]))
    ingest_fails(lake, "raw/radio", "duplicate sample_id", "(2 rows)")


def test_duplicate_device_id(lake):
    rewrite(lake, "devices", lambda t: pa.concat_tables([t, t.slice(0, 1)]))
    ingest_fails(lake, "raw/devices", "duplicate device_id")


def test_orphan_device_id(lake):
    def f(t):
        gone = t.column("device_id")[0].as_py()
        return t.filter(pc.not_equal(t.column("device_id"), gone))
    rewrite(lake, "devices", f)
    ingest_fails(lake, "raw/samples", "not in raw/devices")


def test_orphan_cell_key_is_a_sample_without_cell(lake):
    # Left join by contract: the sample keeps null cell columns.
    rewrite(lake, "cells", lambda t: t.slice(1))
    ingest_ok(lake)


def test_empty_samples_table(lake):
    for i in range(len(lake.parts("samples"))):
        rewrite(lake, "samples", lambda t: t.slice(0, 0), part=i)
    ingest_fails(lake, "raw/samples", "has no rows", "nothing to predict")


def test_empty_devices_table(lake):
    for i in range(len(lake.parts("devices"))):
        rewrite(lake, "devices", lambda t: t.slice(0, 0), part=i)
    ingest_fails(lake, "raw/devices", "has no rows", "inner join")


def test_missing_table(lake):
    shutil.rmtree(lake.path("raw", "environment"))
    ingest_fails(lake, "raw/environment", "missing or holds no .parquet file")


def test_table_of_csv_files(lake):
    shutil.rmtree(lake.path("raw", "activity"))
    put(lake, "raw/activity/activity.csv", b"sample_id,activity,confidence\n")
    ingest_fails(lake, "raw/activity", "found only other files", "activity.csv")


# --- value bounds ---------------------------------------------------------------

def with_value_checks(lake, mode):
    with open(lake.infer_cfg) as f:
        text = f.read().replace("  - step: ingest\n", f"  - step: ingest\n    value_checks: {mode}\n")
    with open(lake.infer_cfg, "w") as f:
        f.write(text)


def test_latitude_out_of_range(lake):
    with_value_checks(lake, "fail")
    f = rewrite(lake, "locations", lambda t: replace_at(replace_at(t, "latitude", 3, 123.0), "latitude", 9, -999.0))
    ingest_fails(lake, f, "`latitude` must lie in [-90, 90]", "latitude=123", "sample_id = ", "2 row(s) of raw/locations")


def test_value_checks_fail_by_default(lake):
    # No `value_checks` key: the default is `fail` (checked per raw table
    # before the join, docs/DATA.md).
    f = rewrite(lake, "locations", lambda t: replace_at(t, "latitude", 5, -91.5))
    ingest_fails(lake, f, "latitude=-91.5", "`latitude` must lie in [-90, 90]", "1 row(s) of raw/locations")


def test_nan_and_infinity(lake):
    with_value_checks(lake, "fail")
    f = rewrite(lake, "radio", lambda t: replace_at(replace_at(t, "rsrp_dbm", 0, float("nan")), "sinr_db", 1, float("inf")))
    ingest_fails(lake, f, "rsrp_dbm=NaN", "`rsrp_dbm` must lie in [-156, -31]", "2 row(s) of raw/radio")


def test_negative_speed(lake):
    with_value_checks(lake, "fail")
    f = rewrite(lake, "locations", lambda t: replace_at(t, "speed_mps", 2, -3.0))
    ingest_fails(lake, f, "speed_mps=-3", "[0, 1000]")


def test_timestamp_in_the_future(lake):
    import datetime
    with_value_checks(lake, "fail")
    future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)
    f = rewrite(lake, "samples", lambda t: replace_at(t, "ts", 0, future))
    ingest_fails(lake, f, "`ts` must not lie more than 86400s after the run's start")


def test_reject_mode_routes_rows_to_the_rejected_output(lake):
    rewrite(lake, "locations", lambda t: replace_at(replace_at(t, "latitude", 3, 123.0), "longitude", 4, 200.0))
    with_value_checks(lake, "reject")
    r = run("run", lake.infer_cfg)
    assert r.code == 0, r
    [m] = lake.manifests("cat-infer", "ingest")
    import json
    manifest = json.load(open(m))
    assert manifest["extra"]["rejected_rows"] == 2, manifest["extra"]
    assert manifest["rows"] == 3000 - 2
    rej = pq.read_table(os.path.join(os.path.dirname(m), "rejected"))
    assert sorted(rej.column("_bad_columns").to_pylist()) == ["latitude", "longitude"]
    assert "latitude=123" in " ".join(rej.column("_values").to_pylist())
    preds = [d for d in os.listdir(lake.path("predictions"))]
    assert pq.read_table(lake.path("predictions", preds[0])).num_rows == 3000 - 2


def test_value_checks_off_accepts_outliers(lake):
    rewrite(lake, "locations", lambda t: replace_at(t, "latitude", 3, 123.0))
    with_value_checks(lake, "off")
    ingest_ok(lake)


def test_whole_run_leaves_the_join_to_predict(lake):
    # The generated samples' ids are grouped by device: the ingest step
    # checks the tables and commits a manifest with the device_id slices,
    # no unified table; predict writes one prediction per sample.
    r = run("run", lake.infer_cfg)
    assert r.code == 0, r
    import json
    [m] = lake.manifests("cat-infer", "ingest")
    manifest = json.load(open(m))
    assert manifest["rows"] == 3000, manifest
    assert manifest["extra"]["deferred"]["slices"], manifest["extra"]
    assert [f for f in manifest["files"] if f["path"].endswith(".parquet")] == [], manifest["files"]
    [preds] = os.listdir(lake.path("predictions"))
    t = pq.read_table(lake.path("predictions", preds))
    assert t.num_rows == 3000
    assert sorted(t.column("sample_id").to_pylist()) == sorted(pq.read_table(lake.path("raw", "samples")).column("sample_id").to_pylist())


def test_materialize_false_with_reject_is_refused(lake):
    with_value_checks(lake, "reject")
    with open(lake.infer_cfg) as f:
        text = f.read().replace("    value_checks: reject\n", "    value_checks: reject\n    materialize: false\n")
    with open(lake.infer_cfg, "w") as f:
        f.write(text)
    validate_fails(lake.infer_cfg, "steps[0].materialize", "value_checks: reject")


# --- partitions ---------------------------------------------------------------

def partition_samples(lake):
    """samples as two day partitions."""
    parts = lake.parts("samples")
    for k, p in enumerate(parts):
        d = lake.path("raw", "samples", f"date=2026-11-{27 + min(k, 1)}")
        os.makedirs(d, exist_ok=True)
        shutil.move(p, os.path.join(d, os.path.basename(p)))


def test_partition_filter_matching_nothing(lake):
    partition_samples(lake)
    ingest_fails(lake, "raw/samples", "date=2026-12-01 matches none", "2026-11-27, 2026-11-28",
                 extra=("--partition", "date=2026-12-01"))


def test_partition_filter_on_an_unpartitioned_lake(lake):
    ingest_fails(lake, "date=2026-11-28", "no raw table is partitioned by it",
                 extra=("--partition", "date=2026-11-28"))


def test_partition_filter_without_value(lake):
    r = run("run", lake.infer_cfg, "--partition", "date")
    assert r.code == EXIT_ERROR, r
    assert "`date` has no `=`" in r.err, r
    assert not os.path.exists(lake.path("runs"))


# --- labelled CSVs --------------------------------------------------------------

def csv_path(lake):
    d = lake.path("training")
    return os.path.join(d, sorted(f for f in os.listdir(d) if f.endswith(".csv"))[0])


def edit_csv(lake, fn):
    p = csv_path(lake)
    with open(p) as f:
        lines = f.read().splitlines()
    with open(p, "w") as f:
        f.write("\n".join(fn(lines)) + "\n")
    return os.path.relpath(p, lake.root)


def train_ingest_fails(lake, *words):
    r = run("run", lake.train_cfg, "--steps", "ingest")
    assert r.code == EXIT_ERROR, r
    for w in words:
        assert w in r.err, f"missing {w!r} in:\n{r.err}"
    assert lake.manifests("cat-train", "ingest") == []


def set_field(line, i, v):
    cells = line.split(",")
    cells[i] = v
    return ",".join(cells)


def col_index(lines, name):
    return lines[0].split(",").index(name)


def test_csv_missing_column(lake):
    def f(lines):
        i = col_index(lines, "rsrq_db")
        return [",".join(c for j, c in enumerate(l.split(",")) if j != i) for l in lines]
    p = edit_csv(lake, f)
    train_ingest_fails(lake, p, "missing column `rsrq_db`")


def test_csv_extra_column(lake):
    p = edit_csv(lake, lambda lines: [lines[0] + ",imei"] + [l + ",x" for l in lines[1:]])
    train_ingest_fails(lake, p, "extra column `imei`")


def test_csv_unparsable_value(lake):
    def f(lines):
        i = col_index(lines, "latitude")
        lines[3] = set_field(lines[3], i, "north")
        return lines
    p = edit_csv(lake, f)
    train_ingest_fails(lake, p, "line 4", "column `latitude`", "`north`")


def test_csv_null_in_not_null_column(lake):
    def f(lines):
        i = col_index(lines, "device_id")
        lines[2] = set_field(lines[2], i, "")
        return lines
    p = edit_csv(lake, f)
    train_ingest_fails(lake, p, "line 3", "column `device_id`", "empty value")


def test_csv_bad_label(lake):
    def f(lines):
        i = col_index(lines, "indoor")
        lines[5] = set_field(lines[5], i, "2")
        return lines
    p = edit_csv(lake, f)
    train_ingest_fails(lake, p, "line 6", "column `indoor`", "0 or 1")


def test_csv_empty_file(lake):
    p = csv_path(lake)
    open(p, "w").close()
    train_ingest_fails(lake, os.path.relpath(p, lake.root), "empty file")


def test_no_csv_files(lake):
    for f in os.listdir(lake.path("training")):
        os.remove(lake.path("training", f))
    train_ingest_fails(lake, "lake/training/", "no input files here")


# --- configs --------------------------------------------------------------------

def config(tmp_path, text):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    return str(p)


def validate_fails(path, *words):
    r = run("validate", path)
    assert r.code == EXIT_INVALID_CONFIG, r
    for w in words:
        assert w in r.err, f"missing {w!r} in:\n{r.err}"
    return r


TRAIN_STEPS = """name: t
kind: training
lake: /nonexistent/lake
steps:
  - step: ingest
  - step: features
  - step: train
    models:
      - name: gbt
        type: gbt
      - name: rf
        type: random_forest
        params: {{numTrees: {trees}, maxDepth: 5}}
"""


def test_bad_yaml(tmp_path):
    validate_fails(config(tmp_path, "name: t\nkind: [training\n"), "bad.yaml:")


def test_unknown_key(tmp_path):
    validate_fails(config(tmp_path, TRAIN_STEPS.format(trees=5) + "extra_key: 1\n"),
                   "unknown field `extra_key`")


def test_negative_param_names_the_key_path(tmp_path):
    validate_fails(config(tmp_path, TRAIN_STEPS.format(trees=-3)),
                   "steps[2].models[1].params.numTrees", "-3")


def test_zero_trees_names_the_key_path(tmp_path):
    validate_fails(config(tmp_path, TRAIN_STEPS.format(trees=0)),
                   "steps[2].models[1].params.numTrees", ">= 1")


def test_test_fraction_out_of_range(tmp_path):
    text = TRAIN_STEPS.format(trees=5).replace("  - step: train\n", "  - step: train\n    test_fraction: 1.5\n")
    validate_fails(config(tmp_path, text), "steps[2].test_fraction", "1.5")


def test_training_ingest_must_write_its_table(tmp_path):
    text = TRAIN_STEPS.format(trees=5).replace("  - step: ingest\n", "  - step: ingest\n    materialize: false\n")
    validate_fails(config(tmp_path, text), "steps[0].materialize", "inference pipelines only")


def test_unknown_step(tmp_path):
    text = TRAIN_STEPS.format(trees=5).replace("step: features", "step: featurize")
    validate_fails(config(tmp_path, text), "featurize")


def test_secret_in_yaml_is_refused_without_echoing_it(tmp_path):
    text = TRAIN_STEPS.format(trees=5).replace(
        "lake: /nonexistent/lake\n", "lake: /nonexistent/lake\nazure_storage_account_key: c2VjcmV0LXZhbHVlLTEyMw==\n")
    r = validate_fails(config(tmp_path, text), "azure_storage_account_key", "environment")
    assert "c2VjcmV0LXZhbHVlLTEyMw==" not in r.err + r.out


def test_run_with_bad_config_commits_nothing(lake, tmp_path):
    with open(lake.train_cfg) as f:
        text = f.read().replace("maxIter: 10", "maxIter: -1")
    p = config(tmp_path, text)
    r = run("run", p)
    assert r.code == EXIT_ERROR, r
    assert "steps[2].models[0].params.maxIter" in r.err, r
    assert lake.manifests("cat-train", "ingest") == []


# --- model artefacts ------------------------------------------------------------

def model_file(lake):
    d = lake.path("models", "io")
    versions = sorted(v for v in os.listdir(d) if v.startswith("v"))
    return os.path.join(d, versions[-1], "model.sluice")


def infer_fails(lake, *words):
    r = run("run", lake.infer_cfg)
    assert r.code == EXIT_ERROR, r
    for w in words:
        assert w in r.err, f"missing {w!r} in:\n{r.err}"
    assert not [p for p in lake.manifests("cat-infer", "predict")]
    preds = lake.path("predictions")
    assert not os.path.isdir(preds) or not any(
        os.path.exists(os.path.join(preds, d, "_manifest.json")) for d in os.listdir(preds))
    return r


def test_tampered_model(lake):
    p = model_file(lake)
    b = bytearray(open(p, "rb").read())
    b[len(b) // 2] ^= 0xFF
    open(p, "wb").write(bytes(b))
    infer_fails(lake, "model.sluice")


def test_truncated_model(lake):
    p = model_file(lake)
    b = open(p, "rb").read()
    open(p, "wb").write(b[: len(b) // 3])
    infer_fails(lake, "model.sluice")


def test_foreign_model_file(lake):
    p = model_file(lake)
    open(p, "wb").write(b'{"format": "lightgbm", "trees": []}')
    infer_fails(lake, "model.sluice")


def test_dangling_latest(lake):
    with open(lake.path("models", "io", "latest"), "w") as f:
        f.write("v9999")
    infer_fails(lake, "v9999")


def test_missing_model(lake):
    shutil.rmtree(lake.path("models"))
    infer_fails(lake, "io")


def test_unseen_categories_are_scored(lake):
    rewrite(lake, "samples", lambda t: replace_at(t, "network_type", 0, "6G"))
    rewrite(lake, "devices", lambda t: replace_at(t, "manufacturer", 0, "NeverSeen"))
    r = run("run", lake.infer_cfg)
    assert r.code == 0, r
    preds = [d for d in os.listdir(lake.path("predictions"))]
    assert len(preds) == 1
    t = pq.read_table(lake.path("predictions", preds[0]))
    assert t.num_rows == 3000


# --- lake URLs --------------------------------------------------------------------

def test_unsupported_lake_scheme(lake):
    r = run("run", lake.infer_cfg, "--lake", "ftp://host/lake")
    assert r.code == EXIT_ERROR, r
    assert "unsupported scheme `ftp`" in r.err, r


def test_unreachable_lake(lake):
    env = {
        "AZURE_STORAGE_USE_EMULATOR": "true",
        "AZURITE_BLOB_STORAGE_URL": "http://127.0.0.1:9",
        "SLUICE_LAKE_MAX_RETRIES": "0",
        "SLUICE_LAKE_RETRY_TIMEOUT_SECS": "1",
    }
    r = run("run", lake.infer_cfg, "--steps", "ingest", "--lake", "az://lake/x", env=env)
    assert r.code == EXIT_ERROR, r
    assert "cannot reach the storage endpoint" in r.err and "127.0.0.1:9" in r.err, r
