//! The peer's `resnet18` workload: torchvision's ResNet-18 (no pretrained weights) on
//! 3×64×64 images, 10 classes, batch 32, 256 samples. The model is the service's own
//! [`ResNet`] (`model.kind: "resnet18"`), in training mode, so the bench measures what a job
//! trains.

use std::cell::RefCell;

use candle_core::{Device, Result, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::convnets::{BenchModel, Init, labels, train_rate};
use engine::{Mode, ResNet};
use trainserve::domain::{ResNetDepth, ResNetSpec};

/// The peer's batch size and sample count for this workload.
pub const BATCH: usize = 32;
const SAMPLES: usize = 256;
const CLASSES: usize = 10;

/// The service's ResNet-18 with the dropout stream a training step gives it.
struct ServiceResNet {
    model: ResNet,
    rng: RefCell<ChaCha8Rng>,
}

impl BenchModel for ServiceResNet {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut rng = self.rng.borrow_mut();
        self.model
            .forward(x, &mut Mode::Train(&mut rng))
            .map_err(|err| candle_core::Error::Msg(err.to_string()))
    }

    fn vars(&self) -> Vec<Var> {
        self.model.trainable().into_iter().map(|(_, v)| v).collect()
    }
}

/// One repeat of the `resnet18` workload on our side: samples per second and the last loss.
pub fn rate() -> Result<(f64, f32)> {
    let mut init = Init::new(0);
    let x = init.images(&[SAMPLES, 3, 64, 64])?;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let model = ResNet::seeded(
        ResNetDepth::R18,
        &ResNetSpec::default(),
        [3, 64, 64],
        CLASSES,
        &mut rng,
        &Device::Cpu,
    )
    .map_err(|err| candle_core::Error::Msg(err.to_string()))?;
    let model = ServiceResNet {
        model,
        rng: RefCell::new(rng),
    };
    train_rate(&model, &x, &labels(SAMPLES)?, BATCH)
}
