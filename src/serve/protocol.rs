//! The Open Inference Protocol (KServe v2, also spoken by Triton and Seldon): the JSON
//! tensor bodies of `POST /v2/models/{name}/infer`, checked before any inference.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Most images one infer request may carry.
pub const MAX_BATCH: usize = 32;

/// Output tensors the model offers, in the order of the ONNX export.
pub const OUTPUTS: [&str; 2] = ["logits", "probabilities"];

/// The name of the one input tensor.
pub const INPUT: &str = "image";

#[derive(Deserialize)]
struct InferRequest {
    id: Option<String>,
    inputs: Vec<RequestInput>,
    #[serde(default)]
    outputs: Option<Vec<RequestOutput>>,
}

#[derive(Deserialize)]
struct RequestInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    data: Value,
}

#[derive(Deserialize)]
struct RequestOutput {
    name: String,
}

/// A checked infer request: one FP32 `[n, 3, h, w]` batch and the outputs asked for.
#[derive(Debug, PartialEq)]
pub struct Infer {
    /// The request's id, echoed in the response.
    pub id: Option<String>,
    /// Row-major input values.
    pub data: Vec<f32>,
    /// `[n, 3, h, w]`.
    pub shape: [usize; 4],
    /// Output names to return, in request order (all when the request names none).
    pub outputs: Vec<&'static str>,
}

/// Parses and checks `body` for a model of `width x height` input; the error says what is
/// wrong in words a client can act on.
pub fn parse_infer(body: &[u8], width: usize, height: usize) -> Result<Infer, String> {
    let request: InferRequest = serde_json::from_slice(body)
        .map_err(|e| format!("the body is not an inference request: {e}"))?;
    let [input] = request.inputs.as_slice() else {
        return Err(format!(
            "expected exactly one input tensor (`{INPUT}`), got {}",
            request.inputs.len()
        ));
    };
    if input.name != INPUT {
        return Err(format!(
            "unknown input `{}`; the model's input is `{INPUT}`",
            input.name
        ));
    }
    if input.datatype != "FP32" {
        return Err(format!(
            "input `{INPUT}` must have datatype FP32, got {}",
            input.datatype
        ));
    }
    let shape = check_shape(&input.shape, width, height)?;
    let data = flatten(&input.data)?;
    let want: usize = shape.iter().product();
    if data.len() != want {
        return Err(format!(
            "input `{INPUT}` has {} values; shape {:?} needs {want}",
            data.len(),
            shape
        ));
    }
    Ok(Infer {
        id: request.id,
        data,
        shape,
        outputs: requested_outputs(request.outputs)?,
    })
}

fn check_shape(shape: &[i64], width: usize, height: usize) -> Result<[usize; 4], String> {
    let want = format!("[N, 3, {height}, {width}] with 1 <= N <= {MAX_BATCH}");
    let bad = || format!("input `{INPUT}` has shape {shape:?}; expected {want}");
    let [n, c, h, w] = shape else {
        return Err(bad());
    };
    let ok =
        (1..=MAX_BATCH as i64).contains(n) && *c == 3 && *h == height as i64 && *w == width as i64;
    if !ok {
        return Err(bad());
    }
    Ok([*n as usize, 3, height, width])
}

/// The protocol allows the data flat or nested by the shape; both read row-major.
fn flatten(data: &Value) -> Result<Vec<f32>, String> {
    fn walk(v: &Value, out: &mut Vec<f32>) -> Result<(), String> {
        match v {
            Value::Array(items) => items.iter().try_for_each(|item| walk(item, out)),
            Value::Number(n) => {
                let x = n.as_f64().unwrap_or(f64::NAN) as f32;
                if !x.is_finite() {
                    return Err(format!(
                        "input `{INPUT}` holds {n}, which is not a finite FP32"
                    ));
                }
                out.push(x);
                Ok(())
            }
            other => Err(format!(
                "input `{INPUT}` data must be numbers, found {}",
                kind(other)
            )),
        }
    }
    let mut out = Vec::new();
    walk(data, &mut out)?;
    Ok(out)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::String(_) => "a string",
        Value::Object(_) => "an object",
        Value::Number(_) => "a number",
        Value::Array(_) => "an array",
    }
}

fn requested_outputs(outputs: Option<Vec<RequestOutput>>) -> Result<Vec<&'static str>, String> {
    let Some(outputs) = outputs.filter(|o| !o.is_empty()) else {
        return Ok(OUTPUTS.to_vec());
    };
    outputs
        .iter()
        .map(|o| {
            OUTPUTS
                .iter()
                .copied()
                .find(|&name| name == o.name)
                .ok_or_else(|| {
                    format!(
                        "unknown output `{}`; the model offers {}",
                        o.name,
                        OUTPUTS.join(", ")
                    )
                })
        })
        .collect()
}

/// One output tensor of a response.
#[derive(Debug, Serialize)]
pub struct ResponseOutput {
    /// `logits` or `probabilities`.
    pub name: &'static str,
    /// `[n, classes]`.
    pub shape: [usize; 2],
    /// Always FP32.
    pub datatype: &'static str,
    /// Row-major values.
    pub data: Vec<f32>,
}

/// The infer response.
#[derive(Debug, Serialize)]
pub struct InferResponse {
    /// The model's name.
    pub model_name: String,
    /// The request's id, when it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The outputs asked for.
    pub outputs: Vec<ResponseOutput>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(shape: &[i64], datatype: &str, data: Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "id": "r1",
            "inputs": [{"name": "image", "shape": shape, "datatype": datatype, "data": data}]
        }))
        .unwrap()
    }

    #[test]
    fn a_flat_and_a_nested_body_read_the_same() {
        let flat = body(&[1, 3, 1, 2], "FP32", serde_json::json!([1, 2, 3, 4, 5, 6]));
        let nested = body(
            &[1, 3, 1, 2],
            "FP32",
            serde_json::json!([[[[1, 2]], [[3, 4]], [[5, 6.0]]]]),
        );
        let a = parse_infer(&flat, 2, 1).unwrap();
        assert_eq!(a, parse_infer(&nested, 2, 1).unwrap());
        assert_eq!(a.data, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(a.shape, [1, 3, 1, 2]);
        assert_eq!(a.id.as_deref(), Some("r1"));
        assert_eq!(a.outputs, vec!["logits", "probabilities"]);
    }

    #[test]
    fn each_bad_body_gets_a_message_naming_its_problem() {
        let six = serde_json::json!([1, 2, 3, 4, 5, 6]);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"{not json".to_vec(), "not an inference request"),
            (b"{\"inputs\": []}".to_vec(), "exactly one input"),
            (body(&[1, 3, 1, 2], "INT8", six.clone()), "datatype FP32"),
            (
                body(&[1, 3, 2, 2], "FP32", six.clone()),
                "expected [N, 3, 1, 2]",
            ),
            (body(&[3, 1, 2], "FP32", six.clone()), "has shape [3, 1, 2]"),
            (body(&[0, 3, 1, 2], "FP32", serde_json::json!([])), "1 <= N"),
            (
                body(&[1, 3, 1, 2], "FP32", serde_json::json!([1, 2])),
                "has 2 values",
            ),
            (
                body(
                    &[1, 3, 1, 2],
                    "FP32",
                    serde_json::json!([1, 2, 3, 4, 5, "x"]),
                ),
                "found a string",
            ),
            (
                body(
                    &[1, 3, 1, 2],
                    "FP32",
                    serde_json::json!([1, 2, 3, 4, 5, 1e300]),
                ),
                "not a finite FP32",
            ),
        ];
        for (body, want) in cases {
            let err = parse_infer(&body, 2, 1).unwrap_err();
            assert!(err.contains(want), "{err:?} should say {want:?}");
        }
    }

    #[test]
    fn outputs_can_be_chosen_and_unknown_ones_are_refused() {
        let mut request: Value = serde_json::from_slice(&body(
            &[1, 3, 1, 2],
            "FP32",
            serde_json::json!([1, 2, 3, 4, 5, 6]),
        ))
        .unwrap();
        request["outputs"] = serde_json::json!([{"name": "probabilities"}]);
        let bytes = serde_json::to_vec(&request).unwrap();
        assert_eq!(
            parse_infer(&bytes, 2, 1).unwrap().outputs,
            vec!["probabilities"]
        );
        request["outputs"] = serde_json::json!([{"name": "features"}]);
        let bytes = serde_json::to_vec(&request).unwrap();
        assert!(
            parse_infer(&bytes, 2, 1)
                .unwrap_err()
                .contains("unknown output `features`")
        );
    }
}
