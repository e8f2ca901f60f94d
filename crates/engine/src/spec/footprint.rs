//! What a network holds per parameter and per sample, walked layer by layer the way
//! `crate::{mlp, cnn, resnet}` build and run it: the parameters (every layer, the input
//! layer and the classifier included), the values autograd keeps from a training forward pass,
//! the widest activation the evaluation batcher sizes its chunks by, and the largest im2col
//! matrix a convolution builds. [`super::memory`] turns these counts into bytes.

use super::{Activation, CnnSpec, MlpSpec, ModelSpec, ResNetDepth, ResNetSpec, Stem};

/// Columns an im2col matrix is grouped to: small planes are batched until a GEMM has at least
/// this many, so a matrix holds up to `plane + GROUP_COLUMNS` columns.
const GROUP_COLUMNS: u64 = kernels::GROUP_COLUMNS as u64;
/// Values per class that the loss keeps: log-softmax's shifted logits, their exponentials and
/// the log-probabilities, and the gathered targets (rounded up to 4).
const LOSS_PER_CLASS: u64 = 4;

/// Counts for one network, in values (not bytes), all per sample where they scale with the batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Footprint {
    /// Trainable parameters.
    pub trainable: u64,
    /// Buffers that are saved but not trained (batch-norm running statistics).
    pub buffers: u64,
    /// Values one sample's training forward pass creates and autograd keeps until the
    /// backward pass ends (the input batch itself not included).
    pub forward: u64,
    /// The widest activation of one sample, as the network reports it to the evaluation batcher.
    pub widest: u64,
    /// Values of the largest im2col matrix one convolution builds on one thread (0 for MLPs).
    pub im2col: u64,
}

impl Footprint {
    /// The footprint of `model` for inputs of `input_width` values (shaped `input` when the
    /// rows are images) and `classes` outputs. `None` when a convolutional model has no image
    /// shape, which validation rejects before this is asked.
    pub(crate) fn of(
        model: &ModelSpec,
        input_width: u64,
        input: Option<[usize; 3]>,
        classes: u64,
    ) -> Option<Footprint> {
        Some(match model {
            ModelSpec::Mlp(mlp) => mlp_footprint(mlp, input_width, classes),
            ModelSpec::Cnn(cnn) => cnn_footprint(cnn, input?, classes),
            ModelSpec::Resnet18(spec) => resnet_footprint(ResNetDepth::R18, spec, input?, classes),
            ModelSpec::Resnet34(spec) => resnet_footprint(ResNetDepth::R34, spec, input?, classes),
            ModelSpec::Vit(_) | ModelSpec::Convnext(_) => probe_footprint(model, classes),
        })
    }
}

/// Tensors an activation function creates per value: one for the single-op ones, five for
/// candle's leaky ReLU (zeros, maximum, minimum, scaled minimum, sum), none for identity.
fn activation_tensors(activation: Activation) -> u64 {
    match activation {
        Activation::Identity => 0,
        Activation::LeakyRelu => 5,
        Activation::Relu | Activation::Gelu | Activation::Tanh | Activation::Sigmoid => 1,
    }
}

/// A dense hidden layer of `width` units after `width_in` inputs: matmul and bias (2), batch
/// norm's centred, squared, centred again, divided, scaled and shifted copies (6), the
/// activation, and dropout's mask and product (2).
fn dense_layer(
    f: &mut Footprint,
    width_in: u64,
    width: u64,
    batch_norm: bool,
    activation: Activation,
    dropout: bool,
) {
    f.trainable = f
        .trainable
        .saturating_add(width_in.saturating_mul(width))
        .saturating_add(width);
    f.forward += 2 * width + activation_tensors(activation) * width;
    if batch_norm {
        f.trainable += 2 * width;
        f.buffers += 2 * width;
        f.forward += 6 * width;
    }
    if dropout {
        f.forward += 2 * width;
    }
}

/// The linear classifier and the loss.
fn classifier(f: &mut Footprint, width_in: u64, classes: u64) {
    f.trainable = f
        .trainable
        .saturating_add(width_in.saturating_mul(classes))
        .saturating_add(classes);
    f.forward += 2 * classes + LOSS_PER_CLASS * classes;
}

fn mlp_footprint(spec: &MlpSpec, inputs: u64, classes: u64) -> Footprint {
    let mut f = Footprint::default();
    let width = spec.width as u64;
    let mut width_in = inputs;
    for _ in 0..spec.depth {
        let dropout = spec.dropout > 0.0;
        dense_layer(
            &mut f,
            width_in,
            width,
            spec.batch_norm,
            spec.activation,
            dropout,
        );
        width_in = width;
    }
    classifier(&mut f, width_in, classes);
    // As `Mlp::widest`: the classifier's inputs and outputs, and the first layer's inputs.
    f.widest = classes.max(width_in).max(inputs);
    f
}

/// `(side + 2·padding − kernel) / stride + 1`, or 0 when the kernel does not fit.
fn conv_side(side: u64, kernel: u64, stride: u64, padding: u64) -> u64 {
    (side + 2 * padding)
        .checked_sub(kernel)
        .map_or(0, |span| span / stride.max(1) + 1)
}

/// The im2col matrix of a `c_in`-channel, `kernel`² convolution over `plane` output pixels.
fn im2col(c_in: u64, kernel: u64, plane: u64) -> u64 {
    c_in.saturating_mul(kernel * kernel)
        .saturating_mul(plane + GROUP_COLUMNS)
}

fn cnn_footprint(spec: &CnnSpec, input: [usize; 3], classes: u64) -> Footprint {
    let mut f = Footprint::default();
    let [c, h, w] = input.map(|d| d as u64);
    let (mut c, mut h, mut w) = (c, h, w);
    f.widest = c * h * w;
    let act = activation_tensors(spec.activation);
    for block in &spec.blocks {
        let (channels, k) = (block.channels as u64, block.kernel as u64);
        let (stride, padding, pool) = (
            block.stride as u64,
            block.padding as u64,
            block.pool.max(1) as u64,
        );
        let (oh, ow) = (
            conv_side(h, k, stride, padding),
            conv_side(w, k, stride, padding),
        );
        let conv = channels * oh * ow;
        f.trainable = f
            .trainable
            .saturating_add(channels.saturating_mul(c * k * k + 1));
        f.im2col = f.im2col.max(im2col(c, k, oh * ow));
        // The convolution (bias fused), then batch norm over channels-last rows: a contiguous
        // copy in, the six tensors of a dense batch norm, and a contiguous copy out.
        f.forward += conv + act * conv;
        if block.batch_norm {
            f.trainable += 2 * channels;
            f.buffers += 2 * channels;
            f.forward += 8 * conv;
        }
        let (ph, pw) = (oh / pool, ow / pool);
        let pooled = channels * ph * pw;
        if pool > 1 {
            f.forward += pooled;
        }
        if block.dropout > 0.0 {
            f.forward += 2 * pooled;
        }
        f.widest = f.widest.max(pooled * pool * pool);
        (c, h, w) = (channels, ph, pw);
    }
    let mut width_in = c * h * w;
    for _ in 0..spec.head.depth {
        let width = spec.head.width as u64;
        let dropout = spec.head.dropout > 0.0;
        dense_layer(&mut f, width_in, width, false, spec.activation, dropout);
        width_in = width;
    }
    classifier(&mut f, width_in, classes);
    f
}

/// A convolution and its batch norm (`ConvBn`): the convolution's output and the normalized
/// output (with its ReLU or residual sum fused into the batch-norm kernel).
fn conv_bn(f: &mut Footprint, c_in: u64, c_out: u64, kernel: u64, plane: u64) {
    f.trainable = f
        .trainable
        .saturating_add(c_out.saturating_mul(c_in * kernel * kernel))
        .saturating_add(2 * c_out);
    f.buffers += 2 * c_out;
    f.forward += 2 * c_out * plane;
    f.im2col = f.im2col.max(im2col(c_in, kernel, plane));
}

fn resnet_footprint(
    depth: ResNetDepth,
    spec: &ResNetSpec,
    input: [usize; 3],
    classes: u64,
) -> Footprint {
    let mut f = Footprint::default();
    let [c, h, w] = input.map(|d| d as u64);
    let width = spec.width as u64;
    let (k, stride, padding) = match spec.stem {
        Stem::Imagenet => (7, 2, 3),
        Stem::Small => (3, 1, 1),
    };
    let (mut h, mut w) = (
        conv_side(h, k, stride, padding),
        conv_side(w, k, stride, padding),
    );
    f.widest = (width * h * w).max(c * input[1] as u64 * input[2] as u64);
    conv_bn(&mut f, c, width, k, h * w);
    if spec.stem == Stem::Imagenet {
        (h, w) = (conv_side(h, 3, 2, 1), conv_side(w, 3, 2, 1));
        f.forward += width * h * w;
    }
    let mut c_in = width;
    for (stage, &blocks) in depth.blocks().iter().enumerate() {
        let c = width << stage;
        for b in 0..blocks {
            let stride = if b == 0 && stage > 0 { 2 } else { 1 };
            let input = if b == 0 { c_in } else { c };
            (h, w) = (conv_side(h, 3, stride, 1), conv_side(w, 3, stride, 1));
            conv_bn(&mut f, input, c, 3, h * w);
            conv_bn(&mut f, c, c, 3, h * w);
            if b == 0 && (stage > 0 || input != c) {
                conv_bn(&mut f, input, c, 1, h * w);
            }
        }
        c_in = c;
    }
    // Global average pooling, then the classifier.
    f.forward += c_in;
    classifier(&mut f, c_in, classes);
    f
}

/// A linear probe of a pretrained backbone: the frozen backbone is kept as buffers, and the
/// loop trains and evaluates only the head on features computed once per image.
fn probe_footprint(model: &ModelSpec, classes: u64) -> Footprint {
    let shapes = model.backbone_state_shapes(classes as usize);
    let size = |shape: &Vec<usize>| shape.iter().product::<usize>() as u64;
    let (head, backbone): (Vec<_>, Vec<_>) = shapes
        .iter()
        .partition(|(name, _)| super::backbone::is_probe_head(name));
    let features = head.first().map_or(0, |(_, shape)| shape[1] as u64);
    let mut f = Footprint {
        buffers: backbone.iter().map(|(_, shape)| size(shape)).sum(),
        widest: features.max(classes),
        ..Footprint::default()
    };
    classifier(&mut f, features, classes);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resnets_trainable_count_matches_the_spec_with_its_classifier() {
        for (depth, stem) in [
            (ResNetDepth::R18, Stem::Imagenet),
            (ResNetDepth::R34, Stem::Small),
        ] {
            let spec = ResNetSpec { width: 8, stem };
            let f = resnet_footprint(depth, &spec, [3, 32, 32], 10);
            assert_eq!(f.trainable, spec.parameters(depth, 3, 10) as u64);
        }
        // torchvision's ResNet-18 for ImageNet: 11,689,512 parameters.
        let f = resnet_footprint(
            ResNetDepth::R18,
            &ResNetSpec::default(),
            [3, 224, 224],
            1000,
        );
        assert_eq!(f.trainable, 11_689_512);
    }

    #[test]
    fn a_convolution_that_does_not_fit_has_no_output() {
        assert_eq!(conv_side(2, 5, 1, 0), 0);
        assert_eq!(conv_side(32, 3, 1, 1), 32);
        assert_eq!(conv_side(32, 7, 2, 3), 16);
    }
}
