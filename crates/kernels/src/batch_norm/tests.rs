use candle_core::{DType, Device};

use super::*;
use crate::budget::with_thread_budget;
use crate::testing::*;

/// Batch normalization composed of candle's broadcast ops, in f64: the reference.
fn reference(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
    let c = gamma.elem_count();
    let mean = x.mean_keepdim((0, 2, 3))?;
    let centered = x.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim((0, 2, 3))?;
    centered
        .broadcast_div(&(var + eps)?.sqrt()?)?
        .broadcast_mul(&gamma.reshape((1, c, 1, 1))?)?
        .broadcast_add(&beta.reshape((1, c, 1, 1))?)
}

const SHAPES: [[usize; 4]; 4] = [[1, 1, 3, 2], [2, 3, 5, 4], [4, 5, 3, 3], [7, 2, 1, 1]];

#[test]
fn training_mode_matches_the_composed_reference() {
    for (i, shape) in SHAPES.iter().enumerate() {
        let seed = i as u64 * 10;
        // An offset mean and a non-unit scale, as real activations have.
        let x = ((uniform(shape, seed, DType::F64) * 3.0).unwrap() + 0.7).unwrap();
        let gamma = uniform(&[shape[1]], seed + 1, DType::F64);
        let beta = uniform(&[shape[1]], seed + 2, DType::F64);
        let (xv, gv, bv) = (
            Var::from_tensor(&x).unwrap(),
            Var::from_tensor(&gamma).unwrap(),
            Var::from_tensor(&beta).unwrap(),
        );
        let (y, mean, var) = batch_norm_train(&xv, &gv, &bv, 1e-5, Epilogue::None).unwrap();
        let want = reference(&xv, &gv, &bv, 1e-5).unwrap();
        assert_close(&y, &want, 1e-12, &format!("y {shape:?}"));
        let want_mean = x.mean((0, 2, 3)).unwrap();
        assert_close(&mean, &want_mean, 1e-12, "mean");
        let want_var = x
            .broadcast_sub(&x.mean_keepdim((0, 2, 3)).unwrap())
            .unwrap()
            .sqr()
            .unwrap()
            .mean((0, 2, 3))
            .unwrap();
        assert_close(&var, &want_var, 1e-12, "var");

        let r = uniform(shape, seed + 3, DType::F64);
        let ours = autograd(&y, &r, &[&xv, &gv, &bv]);
        let theirs = autograd(&want, &r, &[&xv, &gv, &bv]);
        for (j, name) in ["dx", "dgamma", "dbeta"].iter().enumerate() {
            assert_close(&ours[j], &theirs[j], 1e-9, &format!("{name} {shape:?}"));
        }
    }
}

#[test]
fn fused_relu_and_residual_epilogues_match_the_composed_reference() {
    for (i, shape) in SHAPES.iter().enumerate() {
        let seed = 100 + i as u64 * 10;
        let var = |t: Tensor| Var::from_tensor(&t).unwrap();
        let x = var(((uniform(shape, seed, DType::F64) * 2.0).unwrap() - 0.3).unwrap());
        let gamma = var(uniform(&[shape[1]], seed + 1, DType::F64));
        let beta = var(uniform(&[shape[1]], seed + 2, DType::F64));
        let residual = var(uniform(shape, seed + 3, DType::F64));
        let plain = reference(&x, &gamma, &beta, 1e-5).unwrap();
        let r = uniform(shape, seed + 4, DType::F64);

        let (y, _, _) = batch_norm_train(&x, &gamma, &beta, 1e-5, Epilogue::Relu).unwrap();
        let want = plain.relu().unwrap();
        assert_close(&y, &want, 1e-12, &format!("relu y {shape:?}"));
        let ours = autograd(&y, &r, &[&x, &gamma, &beta]);
        let theirs = autograd(&want, &r, &[&x, &gamma, &beta]);
        for (j, name) in ["dx", "dgamma", "dbeta"].iter().enumerate() {
            assert_close(
                &ours[j],
                &theirs[j],
                1e-9,
                &format!("relu {name} {shape:?}"),
            );
        }

        let then = Epilogue::AddRelu(&residual);
        let (y, mean, _) = batch_norm_train(&x, &gamma, &beta, 1e-5, then).unwrap();
        let want = (&plain + residual.as_tensor()).unwrap().relu().unwrap();
        assert_close(&y, &want, 1e-12, &format!("add relu y {shape:?}"));
        assert_close(
            &mean,
            &x.mean((0, 2, 3)).unwrap(),
            1e-12,
            "mean of x, not y",
        );
        let vars = [&x, &gamma, &beta, &residual];
        let ours = autograd(&y, &r, &vars);
        let theirs = autograd(&want, &r, &vars);
        for (j, name) in ["dx", "dgamma", "dbeta", "dresidual"].iter().enumerate() {
            assert_close(
                &ours[j],
                &theirs[j],
                1e-9,
                &format!("add relu {name} {shape:?}"),
            );
        }
    }
}

#[test]
fn the_residual_epilogue_matches_finite_differences_in_f32_too() {
    let shape = [3, 2, 4, 3];
    let x = uniform(&shape, 1, DType::F64);
    let gamma = uniform(&[2], 2, DType::F64);
    let beta = uniform(&[2], 3, DType::F64);
    let residual = uniform(&shape, 5, DType::F64);
    let r = uniform(&shape, 4, DType::F64);
    let f32v = |t: &Tensor| Var::from_tensor(&t.to_dtype(DType::F32).unwrap()).unwrap();
    let (xv, gv, bv, rv) = (f32v(&x), f32v(&gamma), f32v(&beta), f32v(&residual));
    let (y, _, _) = batch_norm_train(&xv, &gv, &bv, 1e-3, Epilogue::AddRelu(&rv)).unwrap();
    let ours = autograd(&y, &r.to_dtype(DType::F32).unwrap(), &[&xv, &gv, &bv, &rv]);
    let bn = |x: &Tensor, g: &Tensor, b: &Tensor, res: &Tensor| {
        Ok(batch_norm_train(x, g, b, 1e-3, Epilogue::AddRelu(res))?.0)
    };
    let fd = [
        finite_difference(|x| bn(x, &gamma, &beta, &residual), &x, &r),
        finite_difference(|g| bn(&x, g, &beta, &residual), &gamma, &r),
        finite_difference(|b| bn(&x, &gamma, b, &residual), &beta, &r),
        finite_difference(|res| bn(&x, &gamma, &beta, res), &residual, &r),
    ];
    for (j, name) in ["dx", "dgamma", "dbeta", "dresidual"].iter().enumerate() {
        assert_close(&ours[j], &fd[j], 1e-4, name);
    }
}

#[test]
fn training_mode_matches_finite_differences_in_f32_too() {
    let shape = [3, 2, 4, 3];
    let x = uniform(&shape, 1, DType::F64);
    let gamma = uniform(&[2], 2, DType::F64);
    let beta = uniform(&[2], 3, DType::F64);
    let r = uniform(&shape, 4, DType::F64);
    let f32v = |t: &Tensor| Var::from_tensor(&t.to_dtype(DType::F32).unwrap()).unwrap();
    let (xv, gv, bv) = (f32v(&x), f32v(&gamma), f32v(&beta));
    let (y, _, _) = batch_norm_train(&xv, &gv, &bv, 1e-3, Epilogue::None).unwrap();
    let ours = autograd(&y, &r.to_dtype(DType::F32).unwrap(), &[&xv, &gv, &bv]);
    let fd = [
        finite_difference(
            |x| Ok(batch_norm_train(x, &gamma, &beta, 1e-3, Epilogue::None)?.0),
            &x,
            &r,
        ),
        finite_difference(
            |g| Ok(batch_norm_train(&x, g, &beta, 1e-3, Epilogue::None)?.0),
            &gamma,
            &r,
        ),
        finite_difference(
            |b| Ok(batch_norm_train(&x, &gamma, b, 1e-3, Epilogue::None)?.0),
            &beta,
            &r,
        ),
    ];
    for (j, name) in ["dx", "dgamma", "dbeta"].iter().enumerate() {
        assert_close(&ours[j], &fd[j], 1e-4, name);
    }
}

#[test]
fn a_plain_input_gets_no_gradient_but_the_affine_parameters_do() {
    let x = uniform(&[2, 3, 4, 4], 1, DType::F32);
    let gamma = Var::ones(3, DType::F32, &Device::Cpu).unwrap();
    let beta = Var::zeros(3, DType::F32, &Device::Cpu).unwrap();
    let (y, _, _) = batch_norm_train(&x, &gamma, &beta, 1e-5, Epilogue::None).unwrap();
    let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    assert!(grads.get(&x).is_none());
    assert!(grads.get(gamma.as_tensor()).is_some() && grads.get(beta.as_tensor()).is_some());
}

#[test]
fn evaluation_mode_uses_the_running_statistics() {
    let x = Var::from_tensor(&uniform(&[2, 3, 4, 5], 1, DType::F64)).unwrap();
    let gamma = Var::from_tensor(&uniform(&[3], 2, DType::F64)).unwrap();
    let beta = Var::from_tensor(&uniform(&[3], 3, DType::F64)).unwrap();
    let mean = uniform(&[3], 4, DType::F64);
    let var = (uniform(&[3], 5, DType::F64).abs().unwrap() + 0.5).unwrap();
    let y = batch_norm_eval(&x, &gamma, &beta, &mean, &var, 1e-5).unwrap();
    let r4 = |t: &Tensor| t.reshape((1, 3, 1, 1)).unwrap();
    let want = x
        .broadcast_sub(&r4(&mean))
        .unwrap()
        .broadcast_div(&r4(&(&var + 1e-5).unwrap().sqrt().unwrap()))
        .unwrap()
        .broadcast_mul(&r4(&gamma))
        .unwrap()
        .broadcast_add(&r4(&beta))
        .unwrap();
    assert_close(&y, &want, 1e-12, "y");
    let r = uniform(&[2, 3, 4, 5], 6, DType::F64);
    let ours = autograd(&y, &r, &[&x, &gamma, &beta]);
    let theirs = autograd(&want, &r, &[&x, &gamma, &beta]);
    for (j, name) in ["dx", "dgamma", "dbeta"].iter().enumerate() {
        assert_close(&ours[j], &theirs[j], 1e-10, name);
    }
}

#[test]
fn running_statistics_move_as_in_pytorch() {
    let dev = Device::Cpu;
    let running_mean = Var::zeros(2, DType::F32, &dev).unwrap();
    let running_var = Var::ones(2, DType::F32, &dev).unwrap();
    let mean = Tensor::new(&[1.0f32, -2.0], &dev).unwrap();
    let var = Tensor::new(&[4.0f32, 0.5], &dev).unwrap();
    update_running_stats(&running_mean, &running_var, &mean, &var, 0.1, 5).unwrap();
    let m: Vec<f32> = running_mean.to_vec1().unwrap();
    let v: Vec<f32> = running_var.to_vec1().unwrap();
    assert!((m[0] - 0.1).abs() < 1e-6 && (m[1] + 0.2).abs() < 1e-6);
    assert!((v[0] - (0.9 + 0.1 * 5.0)).abs() < 1e-6 && (v[1] - (0.9 + 0.1 * 0.625)).abs() < 1e-6);
}

#[test]
fn results_do_not_depend_on_the_thread_budget() {
    let x = Var::from_tensor(&uniform(&[5, 7, 3, 4], 1, DType::F64)).unwrap();
    let gamma = Var::from_tensor(&uniform(&[7], 2, DType::F64)).unwrap();
    let beta = Var::from_tensor(&uniform(&[7], 3, DType::F64)).unwrap();
    let r = uniform(&[5, 7, 3, 4], 4, DType::F64);
    let run = |threads| {
        with_thread_budget(threads, || {
            let (y, _, _) = batch_norm_train(&x, &gamma, &beta, 1e-5, Epilogue::None).unwrap();
            let mut out = autograd(&y, &r, &[&x, &gamma, &beta]);
            out.push(y);
            out
        })
    };
    let one = run(1);
    for threads in [2, 3, 16] {
        for (a, b) in run(threads).iter().zip(&one) {
            assert_close(a, b, 1e-13, &format!("{threads} threads"));
        }
    }
}
