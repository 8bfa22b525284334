//! `local_hour(ts, tz)`, `local_minute_of_day(ts, tz)`, `local_is_weekend(ts, tz)`.
//!
//! Calendar parts of a UTC timestamp in an IANA time zone, correct across DST
//! changes (the UTC offset is looked up in the tz database per instant). The
//! lookup is cached per UTC hour: an hour whose start and end have the same
//! offset has that offset throughout (no zone changes offset twice within an
//! hour); hours containing a transition are resolved row by row.

use std::sync::{Arc, OnceLock};

use arrow::array::{Array, AsArray, Int32Array, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
use chrono::{DateTime, Offset, TimeZone};
use chrono_tz::Tz;
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// Which calendar part a [`LocalTimeFunc`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LocalTimePart {
    /// Hour of day 0..=23 in local time.
    Hour,
    /// Minute of day 0..=1439 in local time.
    MinuteOfDay,
    /// 1 on Saturday and Sunday in local time, else 0.
    IsWeekend,
}

impl LocalTimePart {
    /// The SQL name of the function returning this part.
    pub fn function_name(self) -> &'static str {
        match self {
            LocalTimePart::Hour => "local_hour",
            LocalTimePart::MinuteOfDay => "local_minute_of_day",
            LocalTimePart::IsWeekend => "local_is_weekend",
        }
    }
}

/// A scalar function `(Timestamp(µs, "UTC"), tz: Utf8 literal) -> Int32`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct LocalTimeFunc {
    part: LocalTimePart,
    signature: Signature,
}

/// The timestamp type the local time functions take.
pub fn utc_micros_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

impl LocalTimeFunc {
    /// Creates the function returning `part`.
    pub fn new(part: LocalTimePart) -> Self {
        Self {
            part,
            signature: Signature::exact(
                vec![utc_micros_type(), DataType::Utf8],
                Volatility::Immutable,
            ),
        }
    }
}

impl ScalarUDFImpl for LocalTimeFunc {
    fn name(&self) -> &str {
        self.part.function_name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let name = self.name();
        let [ts, tz] = args.args.as_slice() else {
            return exec_err!(
                "{name} expects 2 arguments (ts, tz), got {}",
                args.args.len()
            );
        };
        let tz_name = match tz {
            ColumnarValue::Scalar(
                ScalarValue::Utf8(Some(s))
                | ScalarValue::LargeUtf8(Some(s))
                | ScalarValue::Utf8View(Some(s)),
            ) => s.clone(),
            other => {
                return exec_err!(
                    "{name}: the time zone must be a non-null string literal, got {:?}",
                    other.data_type()
                )
            }
        };
        let Ok(zone) = tz_name.parse::<Tz>() else {
            return exec_err!("{name}: unknown IANA time zone `{tz_name}`");
        };
        let is_scalar = matches!(ts, ColumnarValue::Scalar(_));
        let arr = ts.to_array(args.number_rows.max(1))?;
        let Some(ts_arr) = arr.as_primitive_opt::<TimestampMicrosecondType>() else {
            return exec_err!(
                "{name}: first argument must be Timestamp(Microsecond, \"UTC\"), got {}",
                arr.data_type()
            );
        };
        let out = local_time_kernel(ts_arr, zone, self.part);
        if is_scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?));
        }
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// Offset of `tz` from UTC in seconds at the UTC instant `utc_secs`.
fn offset_secs(tz: &Tz, utc_secs: i64) -> i32 {
    match DateTime::from_timestamp(utc_secs, 0) {
        Some(dt) => tz
            .offset_from_utc_datetime(&dt.naive_utc())
            .fix()
            .local_minus_utc(),
        None => 0,
    }
}

/// Direct-mapped cache of the UTC offset per UTC hour.
struct HourOffsetCache {
    keys: [i64; Self::SLOTS],
    offsets: [i32; Self::SLOTS],
}

impl HourOffsetCache {
    const SLOTS: usize = 128;
    /// Marks an hour that contains an offset transition.
    const MIXED: i32 = i32::MIN;

    fn new() -> Self {
        Self {
            keys: [i64::MIN; Self::SLOTS],
            offsets: [0; Self::SLOTS],
        }
    }

    #[inline]
    fn offset(&mut self, tz: &Tz, utc_secs: i64) -> i32 {
        let hour = utc_secs.div_euclid(3600);
        let slot = hour.rem_euclid(Self::SLOTS as i64) as usize;
        if self.keys[slot] != hour {
            let start = offset_secs(tz, hour * 3600);
            let end = offset_secs(tz, hour * 3600 + 3599);
            self.keys[slot] = hour;
            self.offsets[slot] = if start == end { start } else { Self::MIXED };
        }
        match self.offsets[slot] {
            Self::MIXED => offset_secs(tz, utc_secs),
            off => off,
        }
    }
}

/// The array kernel: the local calendar `part` of each UTC microsecond
/// timestamp in zone `tz`. Nulls stay null.
pub fn local_time_kernel(
    ts: &TimestampMicrosecondArray,
    tz: Tz,
    part: LocalTimePart,
) -> Int32Array {
    let mut cache = HourOffsetCache::new();
    let values: Vec<i32> = ts
        .values()
        .iter()
        .map(|&us| {
            let secs = us.div_euclid(1_000_000);
            let local = secs + i64::from(cache.offset(&tz, secs));
            match part {
                LocalTimePart::Hour => local.div_euclid(3600).rem_euclid(24) as i32,
                LocalTimePart::MinuteOfDay => (local.rem_euclid(86_400) / 60) as i32,
                LocalTimePart::IsWeekend => {
                    // 1970-01-01 was a Thursday: Monday = 0 after shifting by 3.
                    let weekday = (local.div_euclid(86_400) + 3).rem_euclid(7);
                    i32::from(weekday >= 5)
                }
            }
        })
        .collect();
    Int32Array::new(values.into(), ts.nulls().cloned())
}

fn udf_for(part: LocalTimePart) -> Arc<ScalarUDF> {
    static HOUR: OnceLock<Arc<ScalarUDF>> = OnceLock::new();
    static MINUTE: OnceLock<Arc<ScalarUDF>> = OnceLock::new();
    static WEEKEND: OnceLock<Arc<ScalarUDF>> = OnceLock::new();
    let cell = match part {
        LocalTimePart::Hour => &HOUR,
        LocalTimePart::MinuteOfDay => &MINUTE,
        LocalTimePart::IsWeekend => &WEEKEND,
    };
    Arc::clone(cell.get_or_init(|| Arc::new(ScalarUDF::new_from_impl(LocalTimeFunc::new(part)))))
}

/// The shared `local_hour` UDF.
pub fn local_hour_udf() -> Arc<ScalarUDF> {
    udf_for(LocalTimePart::Hour)
}

/// The shared `local_minute_of_day` UDF.
pub fn local_minute_of_day_udf() -> Arc<ScalarUDF> {
    udf_for(LocalTimePart::MinuteOfDay)
}

/// The shared `local_is_weekend` UDF.
pub fn local_is_weekend_udf() -> Arc<ScalarUDF> {
    udf_for(LocalTimePart::IsWeekend)
}

/// Expression builder: the local calendar `part` of `ts` (which must be of
/// type `Timestamp(µs, "UTC")`) in time zone `tz`.
pub fn local_time_part(part: LocalTimePart, ts: Expr, tz: &str) -> Expr {
    udf_for(part).call(vec![ts, datafusion::prelude::lit(tz)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, Utc};

    fn us(y: i32, m: u32, d: u32, h: u32, mi: u32) -> i64 {
        Utc.from_utc_datetime(
            &NaiveDate::from_ymd_opt(y, m, d)
                .unwrap()
                .and_hms_opt(h, mi, 0)
                .unwrap(),
        )
        .timestamp_micros()
    }

    fn run(vals: Vec<Option<i64>>, part: LocalTimePart) -> Vec<Option<i32>> {
        let arr = TimestampMicrosecondArray::from(vals).with_timezone("UTC");
        local_time_kernel(&arr, chrono_tz::Europe::Berlin, part)
            .iter()
            .collect()
    }

    #[test]
    fn spring_forward_berlin_2026() {
        // 2026-03-29: 01:00 UTC is when clocks jump from 02:00 CET to 03:00 CEST.
        let v = vec![
            Some(us(2026, 3, 29, 0, 30)), // 01:30 CET
            Some(us(2026, 3, 29, 0, 59)), // 01:59 CET
            Some(us(2026, 3, 29, 1, 0)),  // 03:00 CEST
            Some(us(2026, 3, 29, 1, 30)), // 03:30 CEST
            None,
        ];
        assert_eq!(
            run(v.clone(), LocalTimePart::Hour),
            vec![Some(1), Some(1), Some(3), Some(3), None]
        );
        assert_eq!(
            run(v, LocalTimePart::MinuteOfDay),
            vec![Some(90), Some(119), Some(180), Some(210), None]
        );
    }

    #[test]
    fn fall_back_berlin_2026() {
        // 2026-10-25: 01:00 UTC is when clocks go back from 03:00 CEST to 02:00 CET,
        // so local 02:xx happens twice.
        let v = vec![
            Some(us(2026, 10, 25, 0, 15)), // 02:15 CEST
            Some(us(2026, 10, 25, 0, 59)), // 02:59 CEST
            Some(us(2026, 10, 25, 1, 0)),  // 02:00 CET
            Some(us(2026, 10, 25, 1, 15)), // 02:15 CET
            Some(us(2026, 10, 25, 2, 0)),  // 03:00 CET
        ];
        assert_eq!(
            run(v.clone(), LocalTimePart::Hour),
            vec![Some(2), Some(2), Some(2), Some(2), Some(3)]
        );
        assert_eq!(
            run(v, LocalTimePart::MinuteOfDay),
            vec![Some(135), Some(179), Some(120), Some(135), Some(180)]
        );
    }

    #[test]
    fn weekend_uses_local_date() {
        // Friday 2026-03-27 23:30 UTC is Saturday 00:30 in Berlin (CET, +1).
        // Sunday 2026-03-29 22:30 UTC is Monday 00:30 in Berlin (CEST, +2).
        // Sunday 2026-03-29 21:30 UTC is Sunday 23:30 in Berlin.
        let v = vec![
            Some(us(2026, 3, 27, 22, 30)), // Fri 23:30 local
            Some(us(2026, 3, 27, 23, 30)), // Sat 00:30 local
            Some(us(2026, 3, 29, 21, 30)), // Sun 23:30 local
            Some(us(2026, 3, 29, 22, 30)), // Mon 00:30 local
            None,
        ];
        assert_eq!(
            run(v, LocalTimePart::IsWeekend),
            vec![Some(0), Some(1), Some(1), Some(0), None]
        );
    }

    #[test]
    fn pre_epoch_and_other_zone() {
        let arr = TimestampMicrosecondArray::from(vec![us(1969, 12, 31, 23, 59)]);
        let h = local_time_kernel(&arr, chrono_tz::UTC, LocalTimePart::MinuteOfDay);
        assert_eq!(h.value(0), 23 * 60 + 59);
        let w = local_time_kernel(&arr, chrono_tz::UTC, LocalTimePart::IsWeekend);
        assert_eq!(w.value(0), 0); // a Wednesday
        let ny = local_time_kernel(&arr, chrono_tz::America::New_York, LocalTimePart::Hour);
        assert_eq!(ny.value(0), 18);
    }
}
