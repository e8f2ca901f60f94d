use rand::SeedableRng;

use super::*;

fn small() -> ResNetSpec {
    ResNetSpec {
        width: 4,
        stem: Stem::Small,
    }
}

fn model(depth: ResNetDepth, spec: &ResNetSpec, classes: usize) -> ResNet {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    ResNet::seeded(depth, spec, [3, 8, 8], classes, &mut rng, &Device::Cpu).unwrap()
}

fn copy_of(state: &[(String, Var)]) -> HashMap<String, Tensor> {
    state
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().copy().unwrap()))
        .collect()
}

#[test]
fn it_has_torchvisions_tensors_in_torchvisions_order() {
    for (depth, count, convs) in [(ResNetDepth::R18, 102, 20), (ResNetDepth::R34, 182, 36)] {
        let m = model(depth, &small(), 5);
        let names: Vec<(String, Vec<usize>)> = m
            .state_vars()
            .into_iter()
            .map(|(n, v)| (n, v.dims().to_vec()))
            .collect();
        assert_eq!(names, state_shapes(depth, &small(), 3, 5));
        assert_eq!(names.len(), count);
        assert_eq!(names.iter().filter(|(_, s)| s.len() == 4).count(), convs);
        assert_eq!(names[0], ("conv1.weight".to_string(), vec![4, 3, 3, 3]));
        assert!(
            names
                .iter()
                .any(|(n, s)| n == "layer2.0.downsample.0.weight" && s == &[8, 4, 1, 1])
        );
        assert!(
            !names
                .iter()
                .any(|(n, _)| n.starts_with("layer1.0.downsample"))
        );
        assert_eq!(names.last().unwrap(), &("fc.bias".to_string(), vec![5]));
    }
    let imagenet = ResNetSpec::default();
    let shapes = state_shapes(ResNetDepth::R18, &imagenet, 3, 1000);
    let params: usize = shapes
        .iter()
        .filter(|(n, _)| !n.contains("running"))
        .map(|(_, s)| s.iter().product::<usize>())
        .sum();
    assert_eq!(params, 11_689_512, "torchvision's resnet18 parameter count");
    assert_eq!(imagenet.parameters(ResNetDepth::R18, 3, 1000), params);
}

#[test]
fn it_trains_updates_running_statistics_and_round_trips() {
    let m = model(ResNetDepth::R18, &small(), 3);
    let x = Tensor::rand(0f32, 1.0, (4, 192), &Device::Cpu).unwrap();
    let y = Tensor::new(&[0u32, 1, 2, 0], &Device::Cpu).unwrap();
    let before = copy_of(&m.state_vars());
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let logits = m.forward(&x, &mut Mode::Train(&mut rng)).unwrap();
    assert_eq!(logits.dims(), &[4, 3]);
    let grads = candle_nn::loss::cross_entropy(&logits, &y)
        .unwrap()
        .backward()
        .unwrap();
    for (name, var) in m.trainable() {
        assert!(
            grads.get(var.as_tensor()).is_some(),
            "{name} has a gradient"
        );
    }
    let moved = |name: &str| {
        let now = m
            .state_vars()
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap()
            .1;
        let diff = (now.as_tensor() - &before[name]).unwrap().abs().unwrap();
        diff.sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0
    };
    assert!(moved("bn1.running_mean") && moved("layer4.1.bn2.running_var"));
    let copy = ResNet::from_tensors(
        ResNetDepth::R18,
        &small(),
        [3, 8, 8],
        3,
        &copy_of(&m.state_vars()),
        &Device::Cpu,
    )
    .unwrap();
    let a = m
        .forward(&x, &mut Mode::Eval)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let b = copy
        .forward(&x, &mut Mode::Eval)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    assert_eq!(a, b);
    let err = ResNet::from_tensors(
        ResNetDepth::R34,
        &small(),
        [3, 8, 8],
        3,
        &copy_of(&m.state_vars()),
        &Device::Cpu,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("layer1.2.conv1.weight is missing"), "{err}");
}

#[test]
fn a_frozen_backbone_trains_only_the_head_and_keeps_its_statistics() {
    let source = model(ResNetDepth::R18, &small(), 10);
    let mut m = model(ResNetDepth::R18, &small(), 2);
    m.load_backbone(&copy_of(&source.state_vars()), &Device::Cpu)
        .unwrap();
    let same = |name: &str, a: &ResNet, b: &ResNet| {
        let get = |m: &ResNet| {
            m.state_vars()
                .into_iter()
                .find(|(n, _)| n == name)
                .unwrap()
                .1
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        get(a) == get(b)
    };
    assert!(same("layer3.0.conv2.weight", &m, &source));
    assert_eq!(m.fc_weight.dims(), &[2, 32], "a head for the new classes");
    let same_classes = model(ResNetDepth::R18, &small(), 10);
    same_classes
        .load_backbone(&copy_of(&source.state_vars()), &Device::Cpu)
        .unwrap();
    assert!(
        same("fc.weight", &same_classes, &source),
        "a head of the same shape is loaded too"
    );
    m.freeze_backbone();
    let names: Vec<String> = m.trainable().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, vec!["fc.weight", "fc.bias"]);
    let x = Tensor::rand(0f32, 1.0, (4, 192), &Device::Cpu).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let logits = m.forward(&x, &mut Mode::Train(&mut rng)).unwrap();
    let grads = logits.sum_all().unwrap().backward().unwrap();
    assert!(
        grads.get(m.conv1.weight.as_tensor()).is_none(),
        "no gradient through the backbone"
    );
    assert!(
        same("bn1.running_mean", &m, &source),
        "running statistics untouched"
    );
    assert_eq!(m.describe("layer2.1.downsample.1.bias").index, 4);
    assert_eq!(m.describe("fc.weight").index, 9);
    assert_eq!(m.describe("bn1.weight").layer, "stem");
}
