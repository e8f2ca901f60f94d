//! Any network a job can train, behind one interface for the loop, checkpoints and serving.

use std::collections::HashMap;

use candle_core::{D, Device, Tensor, Var};
use rand_chacha::ChaCha8Rng;

use super::backbone::Backbone;
use super::cnn::Cnn;
use super::resnet::{self, ResNet};
use super::{Mlp, Mode, ParamInfo, PreparedData, Preprocessing};
use crate::error::{EngineError, Result};
use crate::spec::ModelSpec;

/// An MLP, a small CNN, a ResNet or a pretrained candle-transformers backbone.
pub enum Network {
    /// A multi-layer perceptron on rows of features.
    Mlp(Mlp),
    /// A convolutional network on flattened `C x H x W` images.
    Cnn(Cnn),
    /// A ResNet-18 or -34 on flattened `C x H x W` images.
    ResNet(ResNet),
    /// A frozen ViT or ConvNeXt and a linear head, on flattened `C x H x W` images.
    Backbone(Backbone),
}

/// The image shape a CNN needs, or the 422 saying the data set has none.
fn image_shape(preprocessing: &Preprocessing) -> Result<[usize; 3]> {
    preprocessing.image_shape.ok_or_else(|| {
        EngineError::spec(
            "dataset",
            "this data set has no images: a convolutional network needs image_shape",
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
            ModelSpec::Resnet18(r) | ModelSpec::Resnet34(r) => Network::ResNet(ResNet::seeded(
                resnet_depth(spec),
                r,
                image_shape(preprocessing)?,
                classes,
                rng,
                device,
            )?),
            ModelSpec::Vit(_) | ModelSpec::Convnext(_) => {
                return Err(EngineError::spec(
                    "init.mode",
                    "a pretrained backbone is not trained from scratch: use init: {\"mode\": \"linear_probe\", \"from_weights\": ...}",
                ));
            }
        })
    }

    /// A linear probe of a pretrained backbone (`spec` a ViT or ConvNeXt): the backbone from
    /// `tensors` (a 422 on `field` listing missing and misshapen ones), a new seeded head.
    pub(crate) fn probe(
        spec: &ModelSpec,
        preprocessing: &Preprocessing,
        tensors: &HashMap<String, Tensor>,
        rng: &mut ChaCha8Rng,
        device: &Device,
        field: &str,
    ) -> Result<Self> {
        Ok(Network::Backbone(Backbone::probe(
            spec,
            image_shape(preprocessing)?,
            preprocessing.labels.len(),
            tensors,
            rng,
            device,
            field,
        )?))
    }

    /// For a pretrained backbone: every split of `data` as features, computed once, which the
    /// network takes as rows from then on. `None` for the other networks.
    pub(crate) fn cache_features(&mut self, data: &PreparedData) -> Result<Option<PreparedData>> {
        match self {
            Network::Backbone(m) => m.cache_features(data).map(Some),
            _ => Ok(None),
        }
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
            ModelSpec::Resnet18(r) | ModelSpec::Resnet34(r) => {
                Network::ResNet(ResNet::from_tensors(
                    resnet_depth(spec),
                    r,
                    image_shape(preprocessing)?,
                    classes,
                    tensors,
                    device,
                )?)
            }
            ModelSpec::Vit(_) | ModelSpec::Convnext(_) => {
                Network::Backbone(Backbone::from_tensors(
                    spec,
                    image_shape(preprocessing)?,
                    classes,
                    tensors,
                    device,
                )?)
            }
        })
    }

    /// Sets a convolutional network's backbone from another job's or uploaded tensors (a 422
    /// on `field` listing missing tensors and wrong shapes); an MLP has no backbone.
    pub(crate) fn load_backbone(
        &self,
        tensors: &HashMap<String, Tensor>,
        device: &Device,
        field: &str,
    ) -> Result<()> {
        let loaded = match self {
            Network::Mlp(_) => {
                return Err(EngineError::spec(
                    "init.mode",
                    "transfer learning loads a convolutional backbone; valid with model.kind 'cnn', 'resnet18' or 'resnet34'",
                ));
            }
            Network::Cnn(m) => m.load_backbone(tensors, device),
            Network::ResNet(m) => m.load_backbone(tensors, device),
            Network::Backbone(_) => {
                return Err(EngineError::Internal(
                    "a pretrained backbone is built with its weights (Network::probe)".into(),
                ));
            }
        };
        loaded.map_err(|err| match err {
            EngineError::Spec { message, .. } => EngineError::spec(
                field,
                format!("those weights do not fit this network: {message}"),
            ),
            other => other,
        })
    }

    /// Freezes a convolutional network's backbone (linear probing).
    pub(crate) fn freeze_backbone(&mut self) {
        match self {
            // A pretrained backbone is frozen from the start.
            Network::Mlp(_) | Network::Backbone(_) => {}
            Network::Cnn(m) => m.freeze_backbone(),
            Network::ResNet(m) => m.freeze_backbone(),
        }
    }

    /// True for a parameter of the backbone (what fine-tuning may train at a lower rate):
    /// a CNN's `blocks.*`, everything of a ResNet but `fc.*`, nothing of an MLP.
    pub(crate) fn is_backbone(&self, name: &str) -> bool {
        match self {
            Network::Mlp(_) | Network::Backbone(_) => false,
            Network::Cnn(_) => name.starts_with("blocks."),
            Network::ResNet(_) => !resnet::is_head(name),
        }
    }

    /// Logits for a batch of rows `[batch, features]`.
    pub fn forward(&self, x: &Tensor, mode: &mut Mode) -> Result<Tensor> {
        match self {
            Network::Mlp(m) => m.forward(x, mode),
            Network::Cnn(m) => m.forward(x, mode),
            Network::ResNet(m) => m.forward(x, mode),
            Network::Backbone(m) => m.forward(x),
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
            Network::ResNet(m) => m.trainable(),
            Network::Backbone(m) => m.trainable(),
        }
    }

    /// Where the parameter called `name` sits in the network.
    pub(crate) fn describe(&self, name: &str) -> ParamInfo {
        match self {
            Network::Mlp(m) => m.describe(name),
            Network::Cnn(m) => m.describe(name),
            Network::ResNet(m) => m.describe(name),
            Network::Backbone(m) => m.describe(name),
        }
    }

    /// The most values per row any layer holds, to size evaluation batches.
    pub fn widest(&self) -> usize {
        match self {
            Network::Mlp(m) => m.widest(),
            Network::Cnn(m) => m.widest(),
            Network::ResNet(m) => m.widest(),
            Network::Backbone(m) => m.widest(),
        }
    }

    /// A copy of every tensor that defines the network, for a checkpoint.
    pub fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let vars = match self {
            Network::Mlp(m) => return m.state(),
            Network::Backbone(m) => return m.state(),
            Network::Cnn(m) => m.state_vars(),
            Network::ResNet(m) => m.state_vars(),
        };
        vars.into_iter()
            .map(|(name, var)| Ok((name, var.as_tensor().copy()?)))
            .collect()
    }
}

fn resnet_depth(spec: &ModelSpec) -> crate::spec::ResNetDepth {
    spec.resnet()
        .map(|(depth, _)| depth)
        .expect("a ResNet spec; this is a bug")
}

/// Names and shapes of the tensors a transfer must provide for `spec` on images of `input`:
/// a CNN's `blocks.*`, a ResNet's everything but `fc.*`, a pretrained backbone's everything but
/// its head (`classifier.*`, `head.fc.*`).
pub fn backbone_shapes(spec: &ModelSpec, input: [usize; 3]) -> Result<Vec<(String, Vec<usize>)>> {
    Ok(match spec {
        ModelSpec::Mlp(_) => Vec::new(),
        ModelSpec::Cnn(cnn) => {
            let mut rng = rand::SeedableRng::seed_from_u64(0);
            Cnn::seeded(cnn, input, 2, &mut rng, &Device::Cpu)?
                .state_vars()
                .into_iter()
                .filter(|(name, _)| name.starts_with("blocks."))
                .map(|(name, var)| (name, var.dims().to_vec()))
                .collect()
        }
        ModelSpec::Resnet18(r) | ModelSpec::Resnet34(r) => {
            resnet::state_shapes(resnet_depth(spec), r, input[0], 1)
                .into_iter()
                .filter(|(name, _)| !resnet::is_head(name))
                .collect()
        }
        ModelSpec::Vit(_) | ModelSpec::Convnext(_) => spec
            .backbone_state_shapes(1)
            .into_iter()
            .filter(|(name, _)| !crate::spec::is_probe_head(name))
            .collect(),
    })
}
