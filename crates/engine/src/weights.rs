//! Uploaded weight files: safetensors only (never pickle), inspected once at upload, and
//! compared by tensor name and shape with what a network expects.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

/// One tensor of a weights file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TensorInfo {
    /// Its name, such as `layer1.0.conv1.weight`.
    pub name: String,
    /// Its safetensors dtype, such as `F32`.
    pub dtype: String,
    /// Its shape.
    pub shape: Vec<usize>,
}

const LOADABLE: &[safetensors::Dtype] = {
    use safetensors::Dtype::*;
    &[F16, BF16, F32, F64, I64, I32, U8, U32]
};

/// The tensors of a safetensors file, in name order; a 422 on `file` saying what is wrong
/// when the bytes are not a safetensors file or hold a tensor of a type that cannot load.
pub fn inspect(bytes: &[u8]) -> Result<Vec<TensorInfo>> {
    let pickled = bytes.starts_with(&[0x80]) || bytes.starts_with(b"PK\x03\x04");
    let file = safetensors::SafeTensors::deserialize(bytes).map_err(|err| {
        let hint = if pickled {
            "this looks like a torch.save file (pickle), which trainserve never loads; "
        } else {
            ""
        };
        EngineError::UnreadableWeights(format!(
            "not a safetensors file ({err}); {hint}export with \
                 safetensors.torch.save_file(model.state_dict(), 'weights.safetensors')"
        ))
    })?;
    let mut tensors: Vec<TensorInfo> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| TensorInfo {
            dtype: format!("{:?}", view.dtype()),
            shape: view.shape().to_vec(),
            name,
        })
        .collect();
    if tensors.is_empty() {
        return Err(EngineError::UnreadableWeights(
            "the safetensors file holds no tensors".into(),
        ));
    }
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    for (name, view) in file.tensors() {
        if !LOADABLE.contains(&view.dtype()) {
            return Err(EngineError::UnreadableWeights(format!(
                "tensor {name} is {:?}; valid: F32, F16, BF16, F64 (and integer buffers)",
                view.dtype()
            )));
        }
    }
    Ok(tensors)
}

/// A 422 on `field` listing every expected tensor that `found` lacks or holds with another
/// shape; tensors of `found` that nothing expects are ignored.
pub fn check_shapes(
    expected: &[(String, Vec<usize>)],
    found: &HashMap<String, Vec<usize>>,
    field: &str,
) -> Result<()> {
    let mut missing = Vec::new();
    let mut misshapen = Vec::new();
    for (name, shape) in expected {
        match found.get(name) {
            None => missing.push(name.as_str()),
            Some(got) if got != shape => {
                misshapen.push(format!("{name} has shape {got:?}, expected {shape:?}"))
            }
            Some(_) => {}
        }
    }
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!("missing tensors: {}", missing.join(", ")));
    }
    if !misshapen.is_empty() {
        problems.push(format!("wrong shapes: {}", misshapen.join("; ")));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(EngineError::spec(
            field,
            format!(
                "those weights do not fit this network: {}",
                problems.join("; ")
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pickles_and_junk_are_refused_and_shapes_are_compared() {
        let err = inspect(b"\x80\x02}q\x00.").unwrap_err().to_string();
        assert!(
            err.contains("not a safetensors file") && err.contains("pickle"),
            "{err}"
        );
        let t =
            candle_core::Tensor::zeros((2, 3), candle_core::DType::F32, &candle_core::Device::Cpu)
                .unwrap();
        let bytes = safetensors::serialize([("a.weight", t)], None).unwrap();
        let found = inspect(&bytes).unwrap();
        assert_eq!(found[0].shape, vec![2, 3]);
        assert_eq!(found[0].dtype, "F32");
        let shapes = HashMap::from([("a.weight".to_string(), vec![2, 3])]);
        let expected = vec![
            ("a.weight".to_string(), vec![3, 2]),
            ("b.bias".to_string(), vec![2]),
        ];
        let err = check_shapes(&expected, &shapes, "init.from_weights")
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing tensors: b.bias"), "{err}");
        assert!(
            err.contains("a.weight has shape [2, 3], expected [3, 2]"),
            "{err}"
        );
    }
}
