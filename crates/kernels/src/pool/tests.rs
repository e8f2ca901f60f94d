use candle_core::{DType, Var};

use super::*;
use crate::budget::with_thread_budget;
use crate::testing::*;

/// (kernel, stride, padding) over odd kernels and overlapping, gapped and padded windows.
type Hw = (usize, usize);
const WINDOWS: [(Hw, Hw, Hw); 8] = [
    ((2, 2), (2, 2), (0, 0)),
    ((3, 3), (2, 2), (1, 1)),
    ((3, 2), (1, 1), (0, 0)),
    ((3, 2), (2, 3), (1, 1)),
    ((2, 3), (3, 1), (1, 0)),
    ((1, 1), (2, 2), (0, 0)),
    ((3, 3), (1, 1), (1, 1)),
    ((2, 2), (3, 3), (0, 0)),
];

/// (n, c, h, w): odd sizes, batches and channels from 1, and one that 2×2 windows tile.
const SHAPES: [[usize; 4]; 4] = [[1, 1, 7, 5], [2, 3, 6, 7], [3, 2, 5, 5], [2, 2, 4, 6]];

#[test]
fn forwards_match_candle_without_padding() {
    for (i, shape) in SHAPES.iter().enumerate() {
        let x = uniform(shape, i as u64, DType::F32);
        for (k, s, p) in WINDOWS.into_iter().filter(|w| w.2 == (0, 0)) {
            let ours = max_pool2d(&x, k, s, p).unwrap();
            assert_close(&ours, &x.max_pool2d_with_stride(k, s).unwrap(), 0.0, "max");
        }
    }
}

#[test]
fn gradients_match_finite_differences_for_any_window() {
    for (i, shape) in SHAPES.iter().enumerate() {
        let x = distinct(shape, 10 + i as u64);
        let xv = Var::from_tensor(&x).unwrap();
        for (j, (k, s, p)) in WINDOWS.into_iter().enumerate() {
            let what = format!("{shape:?} k{k:?} s{s:?} p{p:?}");
            let max = max_pool2d(&xv, k, s, p).unwrap();
            let r = uniform(max.dims(), (i * 10 + j) as u64, DType::F64);
            let fd = finite_difference(|x| max_pool2d(x, k, s, p), &x, &r);
            assert_close(
                &autograd(&max, &r, &[&xv])[0],
                &fd,
                1e-8,
                &format!("max {what}"),
            );
        }
    }
}

#[test]
fn padded_max_pooling_and_its_gradient_match_a_naive_window_scan() {
    let x = Var::from_tensor(&distinct(&[2, 2, 5, 4], 3)).unwrap();
    let y = max_pool2d(&x, 3, 2, 1).unwrap();
    let r = uniform(y.dims(), 4, DType::F64);
    let dx = autograd(&y, &r, &[&x]).remove(0);
    let xs: Vec<f64> = x.flatten_all().unwrap().to_vec1().unwrap();
    let ys: Vec<f64> = y.flatten_all().unwrap().to_vec1().unwrap();
    let rs: Vec<f64> = r.flatten_all().unwrap().to_vec1().unwrap();
    let mut want_dx = vec![0.0; xs.len()];
    assert_eq!(y.dims(), &[2, 2, 3, 2]);
    let mut at = 0;
    for plane in 0..4 {
        for oy in 0..3isize {
            for ox in 0..2isize {
                let mut best = f64::NEG_INFINITY;
                for iy in (oy * 2 - 1).max(0)..(oy * 2 + 2).min(5) {
                    for ix in (ox * 2 - 1).max(0)..(ox * 2 + 2).min(4) {
                        best = best.max(xs[plane * 20 + (iy * 4 + ix) as usize]);
                    }
                }
                assert_eq!(ys[at], best);
                let winner = xs.iter().position(|v| *v == best).unwrap();
                assert_eq!(winner / 20, plane);
                want_dx[winner] += rs[at];
                at += 1;
            }
        }
    }
    let want_dx = Tensor::from_vec(want_dx, x.shape(), &candle_core::Device::Cpu).unwrap();
    assert_close(&dx, &want_dx, 0.0, "scattered gradient");
}

#[test]
fn pooling_gradients_are_differentiable_too() {
    // candle detaches gradients between nodes, so the backward ops are applied directly.
    let x = distinct(&[2, 3, 7, 5], 1);
    for (k, s, p) in [((3, 3), (2, 2), (1, 1)), ((3, 2), (1, 1), (0, 0))] {
        let win = Window::new(k, s, p).unwrap();
        let geometry = win.geometry(x.dims4().unwrap()).unwrap();
        let arg = Arc::new(OnceLock::new());
        let y = x
            .apply_op1(MaxPool {
                win,
                arg: arg.clone(),
            })
            .unwrap();
        let backward = |dy: &Tensor| -> Result<Tensor> {
            dy.apply_op1(MaxPoolRoute {
                geometry,
                arg: arg.clone(),
                scatter: true,
            })
        };
        let dy = uniform(y.dims(), 2, DType::F64);
        let dyv = Var::from_tensor(&dy).unwrap();
        let dx = backward(&dyv).unwrap();
        let r = uniform(dx.dims(), 3, DType::F64);
        let ours = autograd(&dx, &r, &[&dyv]);
        let fd = finite_difference(backward, &dy, &r);
        assert_close(&ours[0], &fd, 1e-8, &format!("max {k:?} {s:?} {p:?}"));
    }
}

#[test]
fn results_do_not_depend_on_the_thread_budget() {
    let x = Var::from_tensor(&distinct(&[3, 5, 7, 6], 4)).unwrap();
    let run = |threads| {
        with_thread_budget(threads, || {
            let y = max_pool2d(&x, 3, 2, 1).unwrap();
            let loss = y.sqr().unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            vec![y, grads.get(x.as_tensor()).unwrap().clone()]
        })
    };
    let one = run(1);
    for threads in [2, 4, 16] {
        for (a, b) in run(threads).iter().zip(&one) {
            assert_close(a, b, 0.0, &format!("{threads} threads"));
        }
    }
}

#[test]
fn global_average_pooling_is_the_channel_mean() {
    let x = uniform(&[2, 3, 5, 4], 1, DType::F32);
    let y = global_avg_pool2d(&x).unwrap();
    let want = x
        .mean_keepdim(3)
        .unwrap()
        .mean_keepdim(2)
        .unwrap()
        .squeeze(3)
        .unwrap()
        .squeeze(2)
        .unwrap();
    assert_close(&y, &want, 1e-6, "global average");
}

#[test]
fn bad_windows_are_errors() {
    let x = uniform(&[1, 1, 4, 4], 1, DType::F32);
    assert!(
        max_pool2d(&x, 2, 2, 2).is_err(),
        "padding over half the kernel"
    );
    assert!(
        max_pool2d(&x, 5, 1, 0).is_err(),
        "kernel larger than the input"
    );
    assert!(max_pool2d(&x, 2, 0, 0).is_err(), "zero stride");
}
