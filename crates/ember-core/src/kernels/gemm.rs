//! f32 linear layers, `y = x W^T + b`, on the `gemm` crate (the GEMM candle itself uses) called on
//! plain slices: the bias is written into the output first and the GEMM accumulates onto it, so
//! no separate broadcast add or transposed copy is made, and the thread split follows the
//! process budget.

use gemm::Parallelism;

use super::threads::num_threads;

/// `out[m, n] = x[m, k] · w[n, k]^T + bias[n]` (`bias` may be empty).
pub fn linear(x: &[f32], w: &[f32], bias: &[f32], m: usize, k: usize, n: usize, out: &mut [f32]) {
    assert_eq!(x.len(), m * k, "x is not [m, k]");
    assert_eq!(w.len(), n * k, "w is not [n, k]");
    assert_eq!(out.len(), m * n, "out is not [m, n]");
    assert!(bias.is_empty() || bias.len() == n, "bias is not [n]");
    if m == 0 || n == 0 {
        return;
    }
    let read_dst = !bias.is_empty();
    if read_dst {
        for row in out.chunks_exact_mut(n) {
            row.copy_from_slice(bias);
        }
    }
    let threads = num_threads();
    // Small products finish before the pool wakes up.
    let par = if threads > 1 && m * n * k >= 1 << 17 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: the asserts above bound every access: dst is [m, n] row-major (row stride n,
    // column stride 1), lhs is [m, k] row-major, and rhs = w^T is read as a [k, n] matrix with
    // row stride 1 and column stride k, i.e. element (p, j) = w[j * k + p] < n * k.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            read_dst,
            x.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            k as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_naive_product() {
        let (m, k, n) = (5, 19, 7);
        let x: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 * 0.1 - 0.6).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i % 7) as f32 * 0.2 - 0.5).collect();
        let b: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let mut out = vec![0.0; m * n];
        linear(&x, &w, &b, m, k, n, &mut out);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = b[j] + (0..k).map(|p| x[i * k + p] * w[j * k + p]).sum::<f32>();
                assert!((out[i * n + j] - want).abs() < 1e-4);
            }
        }
        let mut out2 = vec![9.0; m * n];
        linear(&x, &w, &[], m, k, n, &mut out2);
        assert!((out2[0] - (out[0] - b[0])).abs() < 1e-4);
    }
}
