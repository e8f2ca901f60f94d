//! An optimizer's state and its checkpoint form, in one place: the step count (`step`, for the
//! rules that count steps) and each parameter's buffers as `<buffer>.<parameter>`, so a
//! checkpoint written by either optimizer path resumes on the other.

use std::collections::HashMap;

use candle_core::{DType, Device, Shape, Tensor};

use super::rules::Rule;
use crate::error::{EngineError, Result};

/// One parameter's buffers, in [`Rule::buffers`] order.
pub(crate) enum Buffers {
    /// Host memory, stepped by [`super::rules::Step::apply`] (f32 parameters on the CPU).
    Host(Vec<Vec<f32>>),
    /// Tensors beside a parameter that lives elsewhere, stepped by `super::reference`.
    Tensors(Vec<Tensor>),
}

/// The state of an optimizer over named parameters.
pub(crate) struct OptimizerState {
    pub rule: Rule,
    /// Steps taken so far.
    pub step: u64,
    pub names: Vec<String>,
    pub buffers: Vec<Buffers>,
}

impl OptimizerState {
    /// Fresh (zero) state for `params`: a name with either a host length or a tensor to
    /// shape tensor buffers like.
    pub(crate) fn new(rule: Rule, params: Vec<(String, Placement)>) -> Result<Self> {
        let count = rule.buffers().len();
        let mut names = Vec::with_capacity(params.len());
        let mut buffers = Vec::with_capacity(params.len());
        for (name, placement) in params {
            names.push(name);
            buffers.push(match placement {
                Placement::Host(len) => Buffers::Host(vec![vec![0.0; len]; count]),
                Placement::Tensor(like) => Buffers::Tensors(
                    (0..count)
                        .map(|_| like.zeros_like())
                        .collect::<candle_core::Result<_>>()?,
                ),
            });
        }
        Ok(OptimizerState {
            rule,
            step: 0,
            names,
            buffers,
        })
    }

    /// The state as named tensors; host buffers take `shapes[i]` on `device`.
    pub(crate) fn tensors(
        &self,
        shapes: &[Shape],
        device: &Device,
    ) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        if self.rule.counts_steps() {
            let step = u32::try_from(self.step).unwrap_or(u32::MAX);
            out.push(("step".to_string(), Tensor::new(&[step], device)?));
        }
        let kinds = self.rule.buffers();
        for ((name, buffers), shape) in self.names.iter().zip(&self.buffers).zip(shapes) {
            for (i, kind) in kinds.iter().enumerate() {
                let tensor = match buffers {
                    Buffers::Host(host) => Tensor::from_slice(&host[i], shape, device)?,
                    Buffers::Tensors(tensors) => tensors[i].copy()?,
                };
                out.push((key(kind, name), tensor));
            }
        }
        Ok(out)
    }

    /// Restores what [`OptimizerState::tensors`] wrote (of either path). A missing SGD
    /// velocity is a buffer that was never stepped: zero.
    pub(crate) fn load(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        if self.rule.counts_steps() {
            let step = saved(state, "step")?;
            self.step = step
                .flatten_all()?
                .to_vec1::<u32>()?
                .first()
                .copied()
                .unwrap_or(0)
                .into();
        }
        let kinds = self.rule.buffers();
        for (name, buffers) in self.names.iter().zip(&mut self.buffers) {
            for (i, kind) in kinds.iter().enumerate() {
                let key = key(kind, name);
                let tensor = match state.get(&key) {
                    Some(tensor) => tensor,
                    None if *kind == "velocity" => continue,
                    None => return Err(missing(&key)),
                };
                match buffers {
                    Buffers::Host(host) => {
                        let values = tensor.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
                        if values.len() != host[i].len() {
                            return Err(EngineError::Internal(format!(
                                "optimizer state '{key}' has {} values, expected {}",
                                values.len(),
                                host[i].len()
                            )));
                        }
                        host[i] = values;
                    }
                    Buffers::Tensors(tensors) => {
                        let like = &tensors[i];
                        if tensor.elem_count() != like.elem_count() {
                            return Err(EngineError::Internal(format!(
                                "optimizer state '{key}' of shape {:?} for a parameter of shape {:?}",
                                tensor.dims(),
                                like.dims()
                            )));
                        }
                        tensors[i] = tensor
                            .reshape(like.shape())?
                            .to_dtype(like.dtype())?
                            .to_device(like.device())?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Where a parameter's buffers live.
pub(crate) enum Placement {
    /// On the host, this many elements.
    Host(usize),
    /// As tensors like this one.
    Tensor(Tensor),
}

/// The checkpoint key of a parameter's buffer.
fn key(buffer: &str, param: &str) -> String {
    format!("{buffer}.{param}")
}

fn saved<'a>(state: &'a HashMap<String, Tensor>, key: &str) -> Result<&'a Tensor> {
    state.get(key).ok_or_else(|| missing(key))
}

fn missing(key: &str) -> EngineError {
    EngineError::Internal(format!(
        "optimizer state '{key}' is missing from the checkpoint"
    ))
}
