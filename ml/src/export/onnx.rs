//! ONNX export: one `ai.onnx.ml` `TreeEnsembleClassifier` node (opset 3,
//! double thresholds and weights as tensors), runnable by onnxruntime.
//!
//! Graph: input `features` (`double[N, n_features]`, columns in the model's
//! feature order, `NaN` = missing) → outputs `label` (`int64[N]`, 1 when
//! P(1) > 0.5) and `probabilities` (`float[N, 2]`, column 1 = P(class 1)).
//! Feature names are in the model's `metadata_props` (`feature_names`, a
//! JSON list). Splits are `BRANCH_LEQ` (`value <= threshold` is the true
//! branch = Sluice's left child) and `nodes_missing_value_tracks_true` holds
//! each split's learned missing direction.
//!
//! The messages below are the subset of `onnx.proto` (field numbers as
//! there) the export writes, encoded with `prost`.

use prost::Message;

use crate::error::{MlError, Result};
use crate::export::{check_trees, finite_threshold, trees_with_base_score};
use crate::model::{ModelKind, TrainedModel};

/// ONNX IR version written (onnxruntime ≥ 1.10 reads it).
pub const IR_VERSION: i64 = 8;
/// Opset of the default domain declared by the model.
pub const ONNX_OPSET: i64 = 17;
/// Opset of `ai.onnx.ml` (the first with `*_as_tensor` double attributes).
pub const ML_OPSET: i64 = 3;
/// Name of the graph input.
pub const INPUT_NAME: &str = "features";

/// `onnx.ModelProto`.
#[derive(Clone, PartialEq, Message)]
pub struct ModelProto {
    /// IR version.
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    /// Producer name.
    #[prost(string, tag = "2")]
    pub producer_name: String,
    /// Producer version.
    #[prost(string, tag = "3")]
    pub producer_version: String,
    /// Model domain.
    #[prost(string, tag = "4")]
    pub domain: String,
    /// Model version.
    #[prost(int64, tag = "5")]
    pub model_version: i64,
    /// Human-readable description.
    #[prost(string, tag = "6")]
    pub doc_string: String,
    /// The graph.
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    /// Operator sets used.
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    /// Key/value metadata.
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// `onnx.OperatorSetIdProto`.
#[derive(Clone, PartialEq, Message)]
pub struct OperatorSetIdProto {
    /// Domain (`""` = the default ONNX domain).
    #[prost(string, tag = "1")]
    pub domain: String,
    /// Opset version.
    #[prost(int64, tag = "2")]
    pub version: i64,
}

/// `onnx.StringStringEntryProto`.
#[derive(Clone, PartialEq, Message)]
pub struct StringStringEntryProto {
    /// Key.
    #[prost(string, tag = "1")]
    pub key: String,
    /// Value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `onnx.GraphProto`.
#[derive(Clone, PartialEq, Message)]
pub struct GraphProto {
    /// Nodes in topological order.
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    /// Graph name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Description.
    #[prost(string, tag = "10")]
    pub doc_string: String,
    /// Inputs.
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    /// Outputs.
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
}

/// `onnx.NodeProto`.
#[derive(Clone, PartialEq, Message)]
pub struct NodeProto {
    /// Input value names.
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    /// Output value names.
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    /// Node name.
    #[prost(string, tag = "3")]
    pub name: String,
    /// Operator.
    #[prost(string, tag = "4")]
    pub op_type: String,
    /// Attributes.
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    /// Operator domain.
    #[prost(string, tag = "7")]
    pub domain: String,
}

/// `onnx.AttributeProto` (the kinds the export writes).
#[derive(Clone, PartialEq, Message)]
pub struct AttributeProto {
    /// Attribute name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// A string value.
    #[prost(bytes = "vec", tag = "4")]
    pub s: Vec<u8>,
    /// A tensor value.
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    /// Integer values.
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
    /// String values.
    #[prost(bytes = "vec", repeated, tag = "9")]
    pub strings: Vec<Vec<u8>>,
    /// `AttributeType`: 3 STRING, 4 TENSOR, 7 INTS, 8 STRINGS.
    #[prost(int32, tag = "20")]
    pub r#type: i32,
}

/// `onnx.TensorProto` (double data only).
#[derive(Clone, PartialEq, Message)]
pub struct TensorProto {
    /// Shape.
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    /// `DataType` (11 = DOUBLE).
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    /// Values.
    #[prost(double, repeated, tag = "10")]
    pub double_data: Vec<f64>,
}

/// `onnx.ValueInfoProto`.
#[derive(Clone, PartialEq, Message)]
pub struct ValueInfoProto {
    /// Value name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Type.
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
}

/// `onnx.TypeProto` (tensor types only).
#[derive(Clone, PartialEq, Message)]
pub struct TypeProto {
    /// A tensor type.
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TensorTypeProto>,
}

/// `onnx.TypeProto.Tensor`.
#[derive(Clone, PartialEq, Message)]
pub struct TensorTypeProto {
    /// Element `DataType`.
    #[prost(int32, tag = "1")]
    pub elem_type: i32,
    /// Shape.
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

/// `onnx.TensorShapeProto`.
#[derive(Clone, PartialEq, Message)]
pub struct TensorShapeProto {
    /// Dimensions.
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<Dimension>,
}

/// `onnx.TensorShapeProto.Dimension` (a size or a symbolic name).
#[derive(Clone, PartialEq, Message)]
pub struct Dimension {
    /// A fixed size.
    #[prost(int64, optional, tag = "1")]
    pub dim_value: Option<i64>,
    /// A symbolic size.
    #[prost(string, optional, tag = "2")]
    pub dim_param: Option<String>,
}

const FLOAT: i32 = 1;
const INT64: i32 = 7;
const DOUBLE: i32 = 11;

fn ints(name: &str, v: Vec<i64>) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: v,
        r#type: 7,
        ..Default::default()
    }
}

fn strings(name: &str, v: Vec<&str>) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        strings: v.into_iter().map(|s| s.as_bytes().to_vec()).collect(),
        r#type: 8,
        ..Default::default()
    }
}

fn string(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        s: v.as_bytes().to_vec(),
        r#type: 3,
        ..Default::default()
    }
}

fn doubles(name: &str, v: Vec<f64>) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        t: Some(TensorProto {
            dims: vec![v.len() as i64],
            data_type: DOUBLE,
            double_data: v,
        }),
        r#type: 4,
        ..Default::default()
    }
}

fn tensor_value(name: &str, elem_type: i32, dims: Vec<Dimension>) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type,
                shape: Some(TensorShapeProto { dim: dims }),
            }),
        }),
    }
}

fn dim_n() -> Dimension {
    Dimension {
        dim_value: None,
        dim_param: Some("N".into()),
    }
}

fn dim(v: i64) -> Dimension {
    Dimension {
        dim_value: Some(v),
        dim_param: None,
    }
}

/// The model as an ONNX `ModelProto` message.
pub fn to_proto(model: &TrainedModel) -> Result<ModelProto> {
    let names = model.feature_names();
    if names.is_empty() {
        return Err(MlError::Export("the model has no feature".into()));
    }
    let trees = trees_with_base_score(model);
    check_trees(model, &trees)?;
    let (post_transform, scale) = match model.kind() {
        ModelKind::Gbt => ("LOGISTIC", 1.0),
        ModelKind::RandomForest => ("NONE", 1.0 / trees.len().max(1) as f64),
    };
    let mut a = NodeArrays::default();
    for (ti, t) in trees.iter().enumerate() {
        for (i, n) in t.nodes.iter().enumerate() {
            a.tree_ids.push(ti as i64);
            a.node_ids.push(i as i64);
            if n.is_leaf() {
                a.feature_ids.push(0);
                a.modes.push("LEAF");
                a.values.push(0.0);
                a.true_ids.push(0);
                a.false_ids.push(0);
                a.missing_true.push(0);
                a.class_tree_ids.push(ti as i64);
                a.class_node_ids.push(i as i64);
                a.class_ids.push(0);
                a.class_weights.push(n.value * scale);
            } else {
                a.feature_ids.push(n.feature as i64);
                a.modes.push("BRANCH_LEQ");
                a.values.push(finite_threshold(n.threshold));
                a.true_ids.push(n.left as i64);
                a.false_ids.push(n.right as i64);
                a.missing_true.push(n.missing_left as i64);
            }
        }
    }
    let node = NodeProto {
        input: vec![INPUT_NAME.into()],
        output: vec!["label".into(), "probabilities".into()],
        name: "sluice_trees".into(),
        op_type: "TreeEnsembleClassifier".into(),
        domain: "ai.onnx.ml".into(),
        attribute: vec![
            ints("classlabels_int64s", vec![0, 1]),
            ints("class_ids", a.class_ids),
            ints("class_nodeids", a.class_node_ids),
            ints("class_treeids", a.class_tree_ids),
            doubles("class_weights_as_tensor", a.class_weights),
            ints("nodes_falsenodeids", a.false_ids),
            ints("nodes_featureids", a.feature_ids),
            ints("nodes_missing_value_tracks_true", a.missing_true),
            strings("nodes_modes", a.modes),
            ints("nodes_nodeids", a.node_ids),
            ints("nodes_treeids", a.tree_ids),
            ints("nodes_truenodeids", a.true_ids),
            doubles("nodes_values_as_tensor", a.values),
            string("post_transform", post_transform),
        ],
    };
    let kind = match model.kind() {
        ModelKind::Gbt => "gbt",
        ModelKind::RandomForest => "random_forest",
    };
    let feature_json = serde_json::to_string(names)
        .map_err(|e| MlError::Internal(format!("feature names to JSON: {e}")))?;
    Ok(ModelProto {
        ir_version: IR_VERSION,
        producer_name: "sluice".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        domain: "ai.sluice".into(),
        model_version: 1,
        doc_string: format!(
            "Sluice {kind} model: input `{INPUT_NAME}` (double[N, {}], columns in the order of metadata `feature_names`, NaN = missing); output `probabilities`[:, 1] = P(class 1)",
            names.len()
        ),
        graph: Some(GraphProto {
            node: vec![node],
            name: "sluice".into(),
            doc_string: String::new(),
            input: vec![tensor_value(
                INPUT_NAME,
                DOUBLE,
                vec![dim_n(), dim(names.len() as i64)],
            )],
            output: vec![
                tensor_value("label", INT64, vec![dim_n()]),
                tensor_value("probabilities", FLOAT, vec![dim_n(), dim(2)]),
            ],
        }),
        opset_import: vec![
            OperatorSetIdProto {
                domain: String::new(),
                version: ONNX_OPSET,
            },
            OperatorSetIdProto {
                domain: "ai.onnx.ml".into(),
                version: ML_OPSET,
            },
        ],
        metadata_props: vec![
            StringStringEntryProto {
                key: "feature_names".into(),
                value: feature_json,
            },
            StringStringEntryProto {
                key: "sluice_model_kind".into(),
                value: kind.into(),
            },
        ],
    })
}

/// The model as ONNX protobuf bytes.
pub fn to_bytes(model: &TrainedModel) -> Result<Vec<u8>> {
    Ok(to_proto(model)?.encode_to_vec())
}

#[derive(Default)]
struct NodeArrays {
    tree_ids: Vec<i64>,
    node_ids: Vec<i64>,
    feature_ids: Vec<i64>,
    modes: Vec<&'static str>,
    values: Vec<f64>,
    true_ids: Vec<i64>,
    false_ids: Vec<i64>,
    missing_true: Vec<i64>,
    class_tree_ids: Vec<i64>,
    class_node_ids: Vec<i64>,
    class_ids: Vec<i64>,
    class_weights: Vec<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::train;
    use crate::params::{ModelSpec, RfParams};
    use crate::FeatureMatrix;

    #[test]
    fn forest_leaf_weights_average_and_bytes_decode() {
        let x: Vec<f64> = (0..300)
            .map(|i| if i % 5 == 0 { f64::NAN } else { i as f64 })
            .collect();
        let y: Vec<u8> = (0..300).map(|i| (i % 3 == 0) as u8).collect();
        let m = FeatureMatrix::new(vec!["x".into()], vec![x]).unwrap();
        let p = RfParams {
            num_trees: 4,
            max_depth: 3,
            ..RfParams::default()
        };
        let model = train(&ModelSpec::RandomForest(p), &m, &y).unwrap();
        let bytes = to_bytes(&model).unwrap();
        let back = ModelProto::decode(&bytes[..]).unwrap();
        let node = &back.graph.as_ref().unwrap().node[0];
        assert_eq!(node.op_type, "TreeEnsembleClassifier");
        let weights = &node
            .attribute
            .iter()
            .find(|a| a.name == "class_weights_as_tensor")
            .unwrap()
            .t
            .as_ref()
            .unwrap()
            .double_data;
        let leaves: Vec<f64> = model
            .trees()
            .iter()
            .flat_map(|t| {
                t.nodes
                    .iter()
                    .filter(|n| n.is_leaf())
                    .map(|n| n.value / 4.0)
            })
            .collect();
        assert_eq!(weights, &leaves);
        assert_eq!(
            back.metadata_props[0].value, "[\"x\"]",
            "feature names travel as metadata"
        );
    }
}
