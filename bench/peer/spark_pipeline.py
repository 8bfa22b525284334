#!/usr/bin/env python3
"""The reference pipeline in PySpark, over a lake written by `sluice datagen`.

The same work as Sluice's pipelines, the way the thesis' PySpark MLlib
pipeline does it, in one Spark session (local[N]) with three timed phases:

  join       the seven raw tables joined per the data contract
             (samples ⋈ devices inner, ⋈ cells left on cell_key, ⋈ locations,
             radio, activity, environment left on sample_id), written as Parquet;
  training   the labelled CSVs read, the reference feature chain
             (transforms/src/default_contract.yaml: lag/lead per device,
             haversine distances, GPS delay, weekend/hour/minute in
             Europe/Berlin, signal level, categorical filters, median and
             constant imputation, string indexing, one-hot encoding, assembly)
             fitted, and a GBTClassifier with fixed params (maxIter 20,
             maxDepth 5, stepSize 0.1) trained on 80 % of the devices (a
             hash of device_id), its AUC measured on the other 20 % (as
             bench/peer/training.yaml does);
  inference  the join, the fitted chain and the model over the raw tables,
             predictions (sample_id, device_id, ts, indoor_probability,
             indoor, model_version) written as Parquet.

Prints one JSON object per phase ({"phase", "seconds", ...}) on stdout, plus
the session start time and the inference accuracy against the lake's truth
labels (a check that the pipeline is the real one).

Usage: spark_pipeline.py --lake DIR --out DIR [--threads 2] [--memory 6g]
"""
import argparse
import json
import os
import sys
import time

from pyspark.sql import SparkSession, Window
from pyspark.sql import functions as F
from pyspark.ml import Pipeline
from pyspark.ml.classification import GBTClassifier
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.feature import Imputer, OneHotEncoder, StringIndexer, VectorAssembler
from pyspark.ml.functions import vector_to_array

LAGGED = ["latitude", "longitude", "rsrp_dbm", "speed_mps", "accuracy_m", "visible_wifi_count",
          "wifi_rssi_dbm", "activity"]
ACTIVITIES = ["IN_VEHICLE", "ON_BICYCLE", "ON_FOOT", "RUNNING", "STILL", "TILTING", "WALKING"]
FILTERS = {
    "network_type": ["LTE", "NR", "UMTS", "GSM"],
    "activity": ACTIVITIES,
    "activity_lag1": ACTIVITIES,
    "activity_lead1": ACTIVITIES,
    "provider": ["gps", "network", "fused"],
    "manufacturer": ["Samsung", "Apple", "Xiaomi", "Huawei", "Google", "OnePlus", "Motorola", "Sony", "Oppo",
                     "Nokia"],
}
MEDIAN = ["altitude_m", "accuracy_m", "speed_mps", "rsrp_dbm", "rsrq_db", "sinr_db", "rssi_dbm", "wifi_rssi_dbm",
          "rsrp_dbm_lag1", "rsrp_dbm_lead1", "speed_mps_lag1", "speed_mps_lead1", "accuracy_m_lag1",
          "accuracy_m_lead1", "wifi_rssi_dbm_lag1", "wifi_rssi_dbm_lead1", "distance_prev_m", "distance_next_m",
          "gps_delay_s"]
ZERO = ["visible_wifi_count", "visible_wifi_count_lag1", "visible_wifi_count_lead1", "confidence",
        "wifi_connected", "battery_charging", "screen_on"]
CATEGORICAL = ["network_type", "activity", "activity_lag1", "activity_lead1", "provider", "manufacturer"]
NUMERIC = ["accuracy_m", "accuracy_m_lag1", "accuracy_m_lead1", "speed_mps", "speed_mps_lag1", "speed_mps_lead1",
           "altitude_m", "rsrp_dbm", "rsrp_dbm_lag1", "rsrp_dbm_lead1", "rsrq_db", "sinr_db", "rssi_dbm", "level",
           "wifi_connected", "wifi_rssi_dbm", "wifi_rssi_dbm_lag1", "wifi_rssi_dbm_lead1", "visible_wifi_count",
           "visible_wifi_count_lag1", "visible_wifi_count_lead1", "confidence", "battery_charging", "screen_on",
           "distance_prev_m", "distance_next_m", "gps_delay_s", "is_weekend", "hour", "minute_of_day"]
# The unified schema (data contract), as the training CSVs carry it.
CSV_SCHEMA = ", ".join([
    "sample_id BIGINT", "device_id BIGINT", "ts STRING", "cell_key BIGINT", "network_type STRING",
    "manufacturer STRING", "model STRING", "os_version STRING", "mcc INT", "mnc INT", "tac INT", "cell_id BIGINT",
    "pci INT", "earfcn INT", "latitude DOUBLE", "longitude DOUBLE", "altitude_m DOUBLE", "accuracy_m DOUBLE",
    "speed_mps DOUBLE", "provider STRING", "fix_ts STRING", "rsrp_dbm DOUBLE", "rsrq_db DOUBLE", "sinr_db DOUBLE",
    "rssi_dbm DOUBLE", "activity STRING", "confidence INT", "wifi_connected BOOLEAN", "wifi_rssi_dbm DOUBLE",
    "visible_wifi_count INT", "battery_charging BOOLEAN", "screen_on BOOLEAN", "indoor INT", "label_source STRING",
])


def joined(spark, lake):
    """The seven-table join of the data contract."""
    t = {n: spark.read.parquet(os.path.join(lake, "raw", n))
         for n in ["samples", "devices", "cells", "locations", "radio", "activity", "environment"]}
    df = t["samples"].join(t["devices"], "device_id", "inner").join(t["cells"], "cell_key", "left")
    for n in ["locations", "radio", "activity", "environment"]:
        df = df.join(t[n], "sample_id", "left")
    return df


def haversine_m(lat1, lon1, lat2, lon2):
    p1, p2 = F.radians(lat1), F.radians(lat2)
    dp, dl = p2 - p1, F.radians(lon2 - lon1)
    a = F.sin(dp / 2) ** 2 + F.cos(p1) * F.cos(p2) * F.sin(dl / 2) ** 2
    return 2 * 6_371_000.0 * F.asin(F.sqrt(a))


def features(df):
    """The stateless part of the reference chain (the fitted part is the ML pipeline)."""
    w = Window.partitionBy("device_id").orderBy("ts", "sample_id")
    shifted = []
    for c in LAGGED:
        shifted += [F.lag(c, 1).over(w).alias(c + "_lag1"), F.lead(c, 1).over(w).alias(c + "_lead1")]
    df = df.select("*", *shifted)
    local = F.from_utc_timestamp("ts", "Europe/Berlin")
    r = F.col("rsrp_dbm")
    level = (F.when(r >= -85, 4).when(r >= -95, 3).when(r >= -105, 2).when(r >= -115, 1)
             .when(r.isNotNull(), 0))
    cols = {
        "distance_prev_m": haversine_m(F.col("latitude_lag1"), F.col("longitude_lag1"), F.col("latitude"),
                                       F.col("longitude")),
        "distance_next_m": haversine_m(F.col("latitude"), F.col("longitude"), F.col("latitude_lead1"),
                                       F.col("longitude_lead1")),
        "gps_delay_s": (F.unix_micros("ts") - F.unix_micros("fix_ts")) / 1e6,
        "is_weekend": F.dayofweek(local).isin(1, 7).cast("int"),
        "hour": F.hour(local),
        "minute_of_day": F.hour(local) * 60 + F.minute(local),
        "level": F.coalesce(level, F.lit(-1)).cast("double"),
    }
    for c, allowed in FILTERS.items():
        cols[c] = F.when(F.col(c).isin(allowed), F.col(c)).otherwise(F.lit("OTHER"))
    for c in MEDIAN:
        cols[c] = cols.get(c, F.col(c)).cast("double")
    for c in ZERO:
        cols[c] = F.coalesce(F.col(c).cast("double"), F.lit(0.0))
    return df.withColumns(cols)


def ml_pipeline():
    """The fitted part of the chain and the model (fixed params)."""
    vec = [c + "_vec" for c in CATEGORICAL]
    return Pipeline(stages=[
        Imputer(strategy="median", inputCols=MEDIAN, outputCols=MEDIAN),
        StringIndexer(inputCols=CATEGORICAL, outputCols=[c + "_idx" for c in CATEGORICAL], handleInvalid="keep",
                      stringOrderType="frequencyDesc"),
        OneHotEncoder(inputCols=[c + "_idx" for c in CATEGORICAL], outputCols=vec, dropLast=False,
                      handleInvalid="keep"),
        VectorAssembler(inputCols=NUMERIC + vec, outputCol="features", handleInvalid="keep"),
        GBTClassifier(labelCol="indoor", featuresCol="features", maxIter=20, maxDepth=5, stepSize=0.1, seed=42),
    ])


def phase(name, f, **extra):
    t = time.perf_counter()
    out = f()
    ev = {"phase": name, "seconds": time.perf_counter() - t, **extra}
    print(json.dumps(ev), flush=True)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lake", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--memory", default="6g")
    a = ap.parse_args()

    t = time.perf_counter()
    spark = (SparkSession.builder.master(f"local[{a.threads}]").appName("sluice-peer")
             .config("spark.driver.memory", a.memory)
             .config("spark.sql.session.timeZone", "UTC")
             .config("spark.sql.shuffle.partitions", str(max(a.threads * 4, 8)))
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    print(json.dumps({"phase": "session_start", "seconds": time.perf_counter() - t,
                      "spark": spark.version, "threads": a.threads}), flush=True)

    phase("join", lambda: joined(spark, a.lake).write.mode("overwrite").parquet(os.path.join(a.out, "joined")))

    auc = {}

    def train():
        csv = (spark.read.csv(os.path.join(a.lake, "training", "*.csv"), header=True, schema=CSV_SCHEMA)
               .withColumn("ts", F.to_timestamp("ts")).withColumn("fix_ts", F.to_timestamp("fix_ts")))
        feats = features(csv).withColumn("__test", F.pmod(F.xxhash64("device_id"), F.lit(5)) == 0)
        model = ml_pipeline().fit(feats.filter(~F.col("__test")))
        model.write().overwrite().save(os.path.join(a.out, "model"))
        scored = model.transform(feats.filter(F.col("__test")))
        auc["test_auc"] = BinaryClassificationEvaluator(labelCol="indoor", metricName="areaUnderROC") \
            .evaluate(scored)
        return model

    model = phase("training", train, params={"maxIter": 20, "maxDepth": 5, "stepSize": 0.1})
    print(json.dumps({"phase": "training_check", **auc}), flush=True)

    def infer():
        pred = model.transform(features(joined(spark, a.lake)))
        p1 = vector_to_array("probability")[1]
        (pred.select("sample_id", "device_id", "ts", p1.alias("indoor_probability"),
                     (p1 > 0.5).cast("int").alias("indoor"), F.lit("spark-gbt").alias("model_version"))
         .write.mode("overwrite").parquet(os.path.join(a.out, "predictions")))

    phase("inference", infer)

    preds = spark.read.parquet(os.path.join(a.out, "predictions"))
    truth = spark.read.parquet(os.path.join(a.lake, "truth", "labels")).withColumnRenamed("indoor", "truth")
    row = (preds.join(truth, "sample_id").agg(F.count("*").alias("n"),
                                                 F.avg((F.col("indoor") == F.col("truth")).cast("double")).alias("acc"))
           .first())
    print(json.dumps({"phase": "check", "predictions": preds.count(), "scored": row["n"],
                      "accuracy": row["acc"]}), flush=True)
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
