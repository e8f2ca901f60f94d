use candle_core::{DType, Var};

use super::*;
use crate::budget::with_thread_budget;
use crate::testing::*;

/// (batch, c_in, h, w, c_out, kh, kw): odd sizes, channels 1–5, batches 1 and up.
/// The last has rows wide enough (≥ 8 outputs) for im2col's row-copy path at strides 1
/// and 2; the others take the gather-table path.
const SHAPES: [(usize, usize, usize, usize, usize, usize, usize); 7] = [
    (1, 1, 7, 5, 1, 3, 2),
    (2, 3, 6, 5, 4, 3, 3),
    (1, 2, 5, 6, 3, 2, 2),
    (2, 3, 7, 5, 4, 3, 2),
    (3, 5, 6, 7, 2, 2, 3),
    (4, 2, 5, 5, 5, 1, 1),
    (2, 2, 6, 19, 3, 3, 3),
];

fn configs() -> impl Iterator<Item = Conv2dConfig> {
    (1..=3).flat_map(|stride| {
        (0..=2).flat_map(move |padding| {
            (1..=2).map(move |dilation| Conv2dConfig {
                stride,
                padding,
                dilation,
            })
        })
    })
}

fn fits(
    &(_, _, h, w, _, kh, kw): &(usize, usize, usize, usize, usize, usize, usize),
    cfg: Conv2dConfig,
) -> bool {
    out_size(h, kh, cfg).is_ok() && out_size(w, kw, cfg).is_ok()
}

fn candle_conv(x: &Tensor, w: &Tensor, b: Option<&Tensor>, cfg: Conv2dConfig) -> Result<Tensor> {
    let y = x.conv2d(w, cfg.padding, cfg.stride, cfg.dilation, 1)?;
    match b {
        Some(b) => y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?),
        None => Ok(y),
    }
}

#[test]
fn forward_matches_candle_in_f32() {
    let mut seed = 0;
    for shape in SHAPES {
        let (n, ci, h, w, co, kh, kw) = shape;
        for cfg in configs().filter(|cfg| fits(&shape, *cfg)) {
            seed += 1;
            let x = uniform(&[n, ci, h, w], seed, DType::F32);
            let k = uniform(&[co, ci, kh, kw], seed + 1000, DType::F32);
            let b = uniform(&[co], seed + 2000, DType::F32);
            let ours = conv2d(&x, &k, Some(&b), cfg).unwrap();
            let theirs = candle_conv(&x, &k, Some(&b), cfg).unwrap();
            assert_close(&ours, &theirs, 1e-4, &format!("{shape:?} {cfg:?}"));
        }
    }
}

#[test]
fn gradients_match_candle_in_f64() {
    // candle's own backward fails for some non-square cases (its transposed convolution
    // derives both output paddings from the height); those are left to the finite
    // differences below.
    let (mut seed, mut compared) = (0, 0);
    for shape in SHAPES {
        let (n, ci, h, w, co, kh, kw) = shape;
        for cfg in configs().filter(|cfg| fits(&shape, *cfg)) {
            seed += 1;
            let x = Var::from_tensor(&uniform(&[n, ci, h, w], seed, DType::F64)).unwrap();
            let k = Var::from_tensor(&uniform(&[co, ci, kh, kw], seed + 1000, DType::F64)).unwrap();
            let b = Var::from_tensor(&uniform(&[co], seed + 2000, DType::F64)).unwrap();
            let ours = conv2d(&x, &k, Some(&b), cfg).unwrap();
            let r = uniform(ours.dims(), seed + 3000, DType::F64);
            let theirs = candle_conv(&x, &k, Some(&b), cfg).unwrap();
            let ours = autograd(&ours, &r, &[&x, &k, &b]);
            let Ok(theirs) = try_autograd(&theirs, &r, &[&x, &k, &b]) else {
                continue;
            };
            compared += 1;
            for (i, name) in ["dx", "dw", "db"].iter().enumerate() {
                assert_close(
                    &ours[i],
                    &theirs[i],
                    1e-10,
                    &format!("{name} {shape:?} {cfg:?}"),
                );
            }
        }
    }
    assert!(compared >= 20, "only {compared} cases had a reference");
}

#[test]
fn gradients_match_finite_differences() {
    let cases = [
        (
            (2, 3, 7, 5, 2, 3, 2),
            Conv2dConfig {
                stride: 2,
                padding: 1,
                dilation: 2,
            },
        ),
        (
            (1, 2, 6, 7, 3, 2, 3),
            Conv2dConfig {
                stride: 3,
                padding: 2,
                dilation: 1,
            },
        ),
        ((3, 1, 5, 5, 2, 3, 3), Conv2dConfig::default()),
    ];
    for (seed, (shape, cfg)) in cases.into_iter().enumerate() {
        let (n, ci, h, w, co, kh, kw) = shape;
        let seed = seed as u64 * 10;
        let x = uniform(&[n, ci, h, w], seed, DType::F64);
        let k = uniform(&[co, ci, kh, kw], seed + 1, DType::F64);
        let b = uniform(&[co], seed + 2, DType::F64);
        let (xv, kv, bv) = (
            Var::from_tensor(&x).unwrap(),
            Var::from_tensor(&k).unwrap(),
            Var::from_tensor(&b).unwrap(),
        );
        let y = conv2d(&xv, &kv, Some(&bv), cfg).unwrap();
        let r = uniform(y.dims(), seed + 3, DType::F64);
        let grads = autograd(&y, &r, &[&xv, &kv, &bv]);
        let fd = [
            finite_difference(|x| conv2d(x, &k, Some(&b), cfg), &x, &r),
            finite_difference(|k| conv2d(&x, k, Some(&b), cfg), &k, &r),
            finite_difference(|b| conv2d(&x, &k, Some(b), cfg), &b, &r),
        ];
        for (i, name) in ["dx", "dw", "db"].iter().enumerate() {
            assert_close(
                &grads[i],
                &fd[i],
                1e-7,
                &format!("{name} {shape:?} {cfg:?}"),
            );
        }
    }
}

#[test]
fn the_gradient_ops_are_differentiable_too() {
    let cfg = Conv2dConfig {
        stride: 2,
        padding: 1,
        dilation: 1,
    };
    let x = uniform(&[2, 3, 7, 5], 1, DType::F64);
    let w = uniform(&[4, 3, 3, 2], 2, DType::F64);
    let dy = uniform(&[2, 4, 4, 3], 3, DType::F64);
    let r_dx = uniform(&[2, 3, 7, 5], 4, DType::F64);
    let r_dw = uniform(&[4, 3, 3, 2], 5, DType::F64);
    let (wv, dyv, xv) = (
        Var::from_tensor(&w).unwrap(),
        Var::from_tensor(&dy).unwrap(),
        Var::from_tensor(&x).unwrap(),
    );

    let dx = conv2d_input_grad(&dyv, &wv, (7, 5), cfg).unwrap();
    let grads = autograd(&dx, &r_dx, &[&dyv, &wv]);
    let fd_dy = finite_difference(|dy| conv2d_input_grad(dy, &w, (7, 5), cfg), &dy, &r_dx);
    let fd_w = finite_difference(|w| conv2d_input_grad(&dy, w, (7, 5), cfg), &w, &r_dx);
    assert_close(&grads[0], &fd_dy, 1e-7, "d(dx)/d(dy)");
    assert_close(&grads[1], &fd_w, 1e-7, "d(dx)/dw");

    let dw = conv2d_weight_grad(&xv, &dyv, (3, 2), cfg).unwrap();
    let grads = autograd(&dw, &r_dw, &[&xv, &dyv]);
    let fd_x = finite_difference(|x| conv2d_weight_grad(x, &dy, (3, 2), cfg), &x, &r_dw);
    let fd_dy = finite_difference(|dy| conv2d_weight_grad(&x, dy, (3, 2), cfg), &dy, &r_dw);
    assert_close(&grads[0], &fd_x, 1e-7, "d(dw)/dx");
    assert_close(&grads[1], &fd_dy, 1e-7, "d(dw)/d(dy)");
}

#[test]
fn the_fused_relu_matches_relu_after_the_convolution() {
    for (seed, cfg) in [
        Conv2dConfig::default(),
        Conv2dConfig {
            stride: 2,
            padding: 1,
            dilation: 2,
        },
    ]
    .into_iter()
    .enumerate()
    {
        let seed = seed as u64 * 10;
        // Grouped (3×2 outputs) and ungrouped (16×16) GEMMs.
        for (h, w) in [(7, 5), (32, 32)] {
            let x = uniform(&[3, 2, h, w], seed, DType::F64);
            let k = uniform(&[4, 2, 3, 2], seed + 1, DType::F64);
            let b = uniform(&[4], seed + 2, DType::F64);
            let (xv, kv, bv) = (
                Var::from_tensor(&x).unwrap(),
                Var::from_tensor(&k).unwrap(),
                Var::from_tensor(&b).unwrap(),
            );
            let fused = conv2d_relu(&xv, &kv, Some(&bv), cfg).unwrap();
            let apart = conv2d(&xv, &kv, Some(&bv), cfg).unwrap().relu().unwrap();
            assert_close(&fused, &apart, 0.0, "forward");
            let r = uniform(fused.dims(), seed + 3, DType::F64);
            let ours = autograd(&fused, &r, &[&xv, &kv, &bv]);
            let theirs = autograd(&apart, &r, &[&xv, &kv, &bv]);
            for (i, name) in ["dx", "dw", "db"].iter().enumerate() {
                assert_close(
                    &ours[i],
                    &theirs[i],
                    1e-12,
                    &format!("{name} {cfg:?} {h}x{w}"),
                );
            }
            let no_bias = conv2d_relu(&xv, &kv, None, cfg).unwrap();
            let want = conv2d(&xv, &kv, None, cfg).unwrap().relu().unwrap();
            assert_close(&no_bias, &want, 0.0, "without bias");
        }
    }
}

#[test]
fn a_plain_input_gets_no_gradient() {
    let x = uniform(&[2, 3, 6, 6], 1, DType::F32);
    let w = Var::from_tensor(&uniform(&[4, 3, 3, 3], 2, DType::F32)).unwrap();
    let y = conv2d(&x, &w, None, Conv2dConfig::default()).unwrap();
    let grads = y.sum_all().unwrap().backward().unwrap();
    assert!(grads.get(&x).is_none());
    assert!(grads.get(w.as_tensor()).is_some());
}

#[test]
fn results_do_not_depend_on_the_thread_budget_or_grouping() {
    // 2×2 output planes group many images per GEMM; 7 images split unevenly.
    let cfg = Conv2dConfig {
        stride: 2,
        padding: 0,
        dilation: 1,
    };
    let x = Var::from_tensor(&uniform(&[7, 3, 5, 5], 1, DType::F64)).unwrap();
    let w = Var::from_tensor(&uniform(&[4, 3, 3, 3], 2, DType::F64)).unwrap();
    let r = uniform(&[7, 4, 2, 2], 3, DType::F64);
    let run = |threads| {
        with_thread_budget(threads, || {
            let y = conv2d(&x, &w, None, cfg).unwrap();
            let mut out = autograd(&y, &r, &[&x, &w]);
            out.push(y);
            out
        })
    };
    let one = run(1);
    for threads in [2, 3, 8] {
        let first = run(threads);
        for (a, b) in first.iter().zip(&one) {
            assert_close(a, b, 1e-12, &format!("{threads} threads"));
        }
        // Reproducible for a given budget, whichever thread claims which images.
        for (a, b) in run(threads).iter().zip(&first) {
            assert_close(a, b, 0.0, &format!("{threads} threads again"));
        }
    }
    let theirs = candle_conv(&x, &w, None, cfg).unwrap();
    assert_close(&one[2], &theirs, 1e-12, "grouped forward");
}

#[test]
fn mismatched_shapes_are_errors() {
    let x = uniform(&[1, 3, 5, 5], 1, DType::F32);
    let w = uniform(&[2, 2, 3, 3], 2, DType::F32);
    assert!(conv2d(&x, &w, None, Conv2dConfig::default()).is_err());
    let w = uniform(&[2, 3, 7, 7], 2, DType::F32);
    assert!(conv2d(&x, &w, None, Conv2dConfig::default()).is_err());
}
