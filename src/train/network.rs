//! Either network a job can train, behind one interface for the loop, checkpoints and serving.

use std::collections::HashMap;

use candle_core::{D, Device, Tensor, Var};
use rand_chacha::ChaCha8Rng;

use super::cnn::Cnn;
use super::{Mlp, Mode, ParamInfo, Preprocessing};
use crate::domain::ModelSpec;
use crate::error::{Error, Result};

/// An MLP or a CNN.
pub enum Network {
    /// A multi-layer perceptron on rows of features.
    Mlp(Mlp),
    /// A convolutional network on flattened `C x H x W` images.
    Cnn(Cnn),
}

/// The image shape a CNN needs, or the 422 saying the data set has none.
fn image_shape(preprocessing: &Preprocessing) -> Result<[usize; 3]> {
    preprocessing.image_shape.ok_or_else(|| {
        Error::invalid(
            "dataset",
            "this data set has no images: a CNN needs image_shape",
        )
    })
}

impl Network {
    /// A freshly initialized network for the spec; the same seed gives the same weights.
    pub fn seeded(
        spec: &ModelSpec,
        preprocessing: &Preprocessing,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<Self> {
        let classes = preprocessing.labels.len();
        Ok(match spec {
            ModelSpec::Mlp(mlp) => Network::Mlp(Mlp::seeded(
                mlp,
                preprocessing.input_width(),
                classes,
                rng,
                device,
            )?),
            ModelSpec::Cnn(cnn) => Network::Cnn(Cnn::seeded(
                cnn,
                image_shape(preprocessing)?,
                classes,
                rng,
                device,
            )?),
        })
    }

    /// A network with the given weights; missing tensors or wrong shapes are listed.
    pub fn from_tensors(
        spec: &ModelSpec,
        preprocessing: &Preprocessing,
        tensors: &HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<Self> {
        let classes = preprocessing.labels.len();
        Ok(match spec {
            ModelSpec::Mlp(mlp) => Network::Mlp(Mlp::from_tensors(
                mlp,
                preprocessing.input_width(),
                classes,
                tensors,
                device,
            )?),
            ModelSpec::Cnn(cnn) => Network::Cnn(Cnn::from_tensors(
                cnn,
                image_shape(preprocessing)?,
                classes,
                tensors,
                device,
            )?),
        })
    }

    /// Sets a CNN's blocks from another job's tensors (a 422 on `init.from_job` listing
    /// missing tensors and wrong shapes); an MLP has no backbone.
    pub fn load_backbone(&self, tensors: &HashMap<String, Tensor>, device: &Device) -> Result<()> {
        match self {
            Network::Mlp(_) => Err(Error::invalid(
                "init.mode",
                "transfer learning loads a CNN backbone; valid with model.kind 'cnn' only",
            )),
            Network::Cnn(m) => m.load_backbone(tensors, device).map_err(|err| match err {
                Error::Invalid { message, .. } => Error::invalid(
                    "init.from_job",
                    format!("that job's backbone does not fit this network: {message}"),
                ),
                other => other,
            }),
        }
    }

    /// Freezes a CNN's blocks (linear probing).
    pub fn freeze_backbone(&mut self) {
        if let Network::Cnn(m) = self {
            m.freeze_backbone();
        }
    }

    /// Logits for a batch of rows `[batch, features]`.
    pub fn forward(&self, x: &Tensor, mode: &mut Mode) -> Result<Tensor> {
        match self {
            Network::Mlp(m) => m.forward(x, mode),
            Network::Cnn(m) => m.forward(x, mode),
        }
    }

    /// Class probabilities in evaluation mode.
    pub fn probabilities(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::softmax(
            &self.forward(x, &mut Mode::Eval)?,
            D::Minus1,
        )?)
    }

    /// The parameters an optimizer updates, named and in a stable order.
    pub fn trainable(&self) -> Vec<(String, Var)> {
        match self {
            Network::Mlp(m) => m.trainable(),
            Network::Cnn(m) => m.trainable(),
        }
    }

    /// Where the parameter called `name` sits in the network.
    pub fn describe(&self, name: &str) -> ParamInfo {
        match self {
            Network::Mlp(m) => m.describe(name),
            Network::Cnn(m) => m.describe(name),
        }
    }

    /// The most values per row any layer holds, to size evaluation batches.
    pub fn widest(&self) -> usize {
        match self {
            Network::Mlp(m) => m.widest(),
            Network::Cnn(m) => m.widest(),
        }
    }

    /// A copy of every tensor that defines the network, for a checkpoint.
    pub fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let vars = match self {
            Network::Mlp(m) => return m.state(),
            Network::Cnn(m) => m.state_vars(),
        };
        vars.into_iter()
            .map(|(name, var)| Ok((name, var.as_tensor().copy()?)))
            .collect()
    }
}
