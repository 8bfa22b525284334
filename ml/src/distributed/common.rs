//! What the distributed functions share: the `XxxFunc { signature }` shell
//! of a function that coerces its own arguments, and the `List(Float64)`
//! values their states, results and literals are made of.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, ListArray};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::utils::format_state_name;

/// Declares `pub struct $name { signature }` with `new()` and `Default`:
/// a user-defined signature (the function's `coerce_types` checks and
/// casts its arguments), immutable volatility.
macro_rules! function_struct {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, PartialEq, Eq, Hash)]
        pub struct $name {
            signature: datafusion::logical_expr::Signature,
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl $name {
            /// Creates the function; its `coerce_types` says which argument types it takes.
            pub fn new() -> Self {
                Self {
                    signature: datafusion::logical_expr::Signature::user_defined(
                        datafusion::logical_expr::Volatility::Immutable,
                    ),
                }
            }
        }
    };
}
pub(crate) use function_struct;

/// The `Accumulator` methods of an aggregate whose state and result are its
/// field `sums: Vec<f64>`, merged by addition (`$name` names the function in
/// errors): `merge_batch`, `state`, `evaluate`, `size`.
macro_rules! dense_sums_state {
    ($name:literal) => {
        fn merge_batch(
            &mut self,
            states: &[arrow::array::ArrayRef],
        ) -> datafusion::common::Result<()> {
            $crate::distributed::common::add_partial_sums($name, &mut self.sums, states)
        }

        fn state(&mut self) -> datafusion::common::Result<Vec<datafusion::common::ScalarValue>> {
            Ok(vec![$crate::distributed::common::f64_list(&self.sums)])
        }

        fn evaluate(&mut self) -> datafusion::common::Result<datafusion::common::ScalarValue> {
            Ok($crate::distributed::common::f64_list(&self.sums))
        }

        fn size(&self) -> usize {
            std::mem::size_of_val(self) + self.sums.capacity() * 8
        }
    };
}
pub(crate) use dense_sums_state;

/// Adds every partial state in `states[0]` (a `List(Float64)` column of
/// `sums.len()` values each) to `sums`.
pub(crate) fn add_partial_sums(name: &str, sums: &mut [f64], states: &[ArrayRef]) -> Result<()> {
    let Some(col) = states.first() else {
        return datafusion::common::exec_err!("{name}: no state column to merge");
    };
    for_each_f64_list(col, |part| {
        if part.len() != sums.len() {
            return datafusion::common::exec_err!(
                "{name}: partial state of {} values, expected {}",
                part.len(),
                sums.len()
            );
        }
        for (s, v) in sums.iter_mut().zip(part.values().iter()) {
            *s += v;
        }
        Ok(())
    })
}

/// `List(Float64)`, the type of every state and list result here.
pub(crate) fn f64_list_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true)))
}

/// A one-element `List(Float64)` scalar holding `values`.
pub(crate) fn f64_list(values: &[f64]) -> ScalarValue {
    let arr = Float64Array::from(values.to_vec());
    ScalarValue::List(Arc::new(ListArray::new(
        Arc::new(Field::new_list_field(DataType::Float64, true)),
        OffsetBuffer::from_lengths([arr.len()]),
        Arc::new(arr),
        None,
    )))
}

/// The state fields of an aggregate whose state is one `List(Float64)` named `state`.
pub(crate) fn f64_list_state(func_name: &str, state: &str) -> Vec<FieldRef> {
    vec![Arc::new(Field::new(
        format_state_name(func_name, state),
        f64_list_type(),
        true,
    ))]
}

/// Calls `f` with every non-null partial state in a `List(Float64)` state column.
pub(crate) fn for_each_f64_list(
    states: &ArrayRef,
    mut f: impl FnMut(&Float64Array) -> Result<()>,
) -> Result<()> {
    let lists = states.as_list::<i32>();
    for i in 0..lists.len() {
        if lists.is_null(i) {
            continue;
        }
        let part = lists.value(i);
        f(part.as_primitive::<Float64Type>())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_scalar_round_trips_through_a_state_column() {
        let s = f64_list(&[1.0, 2.5]);
        assert_eq!(s.data_type(), f64_list_type());
        let col = s.to_array().unwrap();
        let mut seen = Vec::new();
        for_each_f64_list(&col, |p| {
            seen.extend(p.values().iter().copied());
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec![1.0, 2.5]);
    }
}
