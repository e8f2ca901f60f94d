//! The peer's `resnet18` workload: torchvision's ResNet-18 layout (no pretrained weights) on
//! 3×64×64 images, 10 classes, batch 32, 256 samples, built from `train::kernels`.

use candle_core::{Result, Tensor, Var};

use super::convnets::{BenchModel, Init, labels, linear, train_rate};
use crate::train::kernels::{self, Conv2dConfig};

/// The peer's batch size and sample count for this workload.
pub const BATCH: usize = 32;
const SAMPLES: usize = 256;
const CLASSES: usize = 10;
const EPS: f64 = 1e-5;
const MOMENTUM: f64 = 0.1;

/// A convolution without bias followed by training-mode batch normalization, which also
/// updates its running statistics as PyTorch's `BatchNorm2d` does.
struct ConvBn {
    w: Var,
    cfg: Conv2dConfig,
    gamma: Var,
    beta: Var,
    running_mean: Var,
    running_var: Var,
}

impl ConvBn {
    fn new(init: &mut Init, c_in: usize, c_out: usize, k: usize, stride: usize) -> Result<Self> {
        Ok(ConvBn {
            w: init.uniform(&[c_out, c_in, k, k], c_in * k * k)?,
            cfg: Conv2dConfig {
                stride,
                padding: k / 2,
                dilation: 1,
            },
            gamma: init.constant(&[c_out], 1.0)?,
            beta: init.constant(&[c_out], 0.0)?,
            running_mean: init.constant(&[c_out], 0.0)?,
            running_var: init.constant(&[c_out], 1.0)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = kernels::conv2d(x, &self.w, None, self.cfg)?;
        let (n, _, oh, ow) = h.dims4()?;
        let (y, mean, var) = kernels::batch_norm_train(&h, &self.gamma, &self.beta, EPS)?;
        kernels::update_running_stats(
            &self.running_mean,
            &self.running_var,
            &mean,
            &var,
            MOMENTUM,
            n * oh * ow,
        )?;
        Ok(y)
    }

    fn vars(&self) -> [Var; 3] {
        [self.w.clone(), self.gamma.clone(), self.beta.clone()]
    }
}

/// torchvision's BasicBlock: two 3×3 conv+BN, a 1×1 conv+BN shortcut when the shape changes.
struct Basic {
    conv1: ConvBn,
    conv2: ConvBn,
    down: Option<ConvBn>,
}

impl Basic {
    fn new(init: &mut Init, c_in: usize, c_out: usize, stride: usize) -> Result<Self> {
        Ok(Basic {
            conv1: ConvBn::new(init, c_in, c_out, 3, stride)?,
            conv2: ConvBn::new(init, c_out, c_out, 3, 1)?,
            down: if stride != 1 || c_in != c_out {
                Some(ConvBn::new(init, c_in, c_out, 1, stride)?)
            } else {
                None
            },
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = kernels::relu(&self.conv1.forward(x)?)?;
        let h = self.conv2.forward(&h)?;
        let shortcut = match &self.down {
            Some(down) => down.forward(x)?,
            None => x.clone(),
        };
        kernels::relu(&(h + shortcut)?)
    }
}

/// ResNet-18: 7×7/2 stem, 3×3/2 max pool, four stages of two BasicBlocks, global average
/// pooling and a linear classifier.
pub struct ResNet18 {
    stem: ConvBn,
    blocks: Vec<Basic>,
    fc: (Var, Var),
}

impl ResNet18 {
    pub fn new(init: &mut Init) -> Result<Self> {
        let stem = ConvBn::new(init, 3, 64, 7, 2)?;
        let mut blocks = Vec::new();
        let mut c_in = 64;
        for (c_out, stride) in [(64, 1), (128, 2), (256, 2), (512, 2)] {
            blocks.push(Basic::new(init, c_in, c_out, stride)?);
            blocks.push(Basic::new(init, c_out, c_out, 1)?);
            c_in = c_out;
        }
        let fc = (
            init.uniform(&[CLASSES, 512], 512)?,
            init.uniform(&[CLASSES], 512)?,
        );
        Ok(ResNet18 { stem, blocks, fc })
    }
}

impl BenchModel for ResNet18 {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = kernels::relu(&self.stem.forward(x)?)?;
        let mut h = kernels::max_pool2d(&h, 3, 2, 1)?;
        for block in &self.blocks {
            h = block.forward(&h)?;
        }
        linear(&kernels::global_avg_pool2d(&h)?, &self.fc.0, &self.fc.1)
    }

    fn vars(&self) -> Vec<Var> {
        let mut vars: Vec<Var> = self.stem.vars().into();
        for block in &self.blocks {
            for conv in [Some(&block.conv1), Some(&block.conv2), block.down.as_ref()]
                .into_iter()
                .flatten()
            {
                vars.extend(conv.vars());
            }
        }
        vars.extend([self.fc.0.clone(), self.fc.1.clone()]);
        vars
    }
}

/// One repeat of the `resnet18` workload on our side: samples per second and the last loss.
pub fn rate() -> Result<(f64, f32)> {
    let mut init = Init::new(0);
    let x = init.images(&[SAMPLES, 3, 64, 64])?;
    let model = ResNet18::new(&mut init)?;
    train_rate(&model, &x, &labels(SAMPLES)?, BATCH)
}
