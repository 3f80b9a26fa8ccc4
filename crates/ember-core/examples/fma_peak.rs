//! Measures this machine's f32 FMA peak (GFLOP/s) on AVX2 (and AVX-512 where present), on 1 and
//! on N threads: the ceiling a GEMM's rate is judged against. Each thread runs 12 independent
//! chains of register-only FMAs, enough to cover the FMA latency on every x86-64 core.
//!
//!     cargo run --release -p ember-core --example fma_peak -- [THREADS]

// SIMD intrinsics behind run-time feature checks, as in `ember_core::kernels`.
#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// FMAs per chain.
    pub const STEPS: usize = 200_000_000;
    /// Independent chains (registers) per thread.
    pub const CHAINS: usize = 12;

    /// # Safety
    /// AVX2 and FMA must be available.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn avx2() -> f32 {
        let (x, y) = (_mm256_set1_ps(1.000_000_1), _mm256_set1_ps(0.999_999_9));
        let mut a = [_mm256_setzero_ps(); CHAINS];
        for _ in 0..STEPS {
            for v in a.iter_mut() {
                *v = _mm256_fmadd_ps(*v, x, y);
            }
        }
        // Returned so the chains are not optimized away.
        a.iter().map(|v| _mm256_cvtss_f32(*v)).sum()
    }

    /// # Safety
    /// AVX-512 F must be available.
    // Built only where `build.rs` found Rust 1.89+ (the AVX-512 intrinsics' release).
    #[cfg(ember_avx512)]
    #[allow(clippy::incompatible_msrv)]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn avx512() -> f32 {
        let (x, y) = (_mm512_set1_ps(1.000_000_1), _mm512_set1_ps(0.999_999_9));
        let mut a = [_mm512_setzero_ps(); CHAINS];
        for _ in 0..STEPS {
            for v in a.iter_mut() {
                *v = _mm512_fmadd_ps(*v, x, y);
            }
        }
        a.iter().map(|v| _mm512_reduce_add_ps(*v)).sum()
    }
}

#[cfg(target_arch = "x86_64")]
fn measure(name: &str, lanes: usize, threads: usize, f: fn() -> f32) {
    let start = std::time::Instant::now();
    let sums: Vec<f32> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads).map(|_| s.spawn(f)).collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    let secs = start.elapsed().as_secs_f64();
    let flops = (threads * x86::STEPS * x86::CHAINS * lanes * 2) as f64;
    eprintln!(
        "{name}: {threads} thread(s) {:.1} GFLOP/s ({secs:.2} s; checksum {:.1})",
        flops / secs / 1e9,
        sums.iter().sum::<f32>()
    );
}

fn main() {
    let threads: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: AVX2 and FMA were detected just above.
            let f: fn() -> f32 = || unsafe { x86::avx2() };
            for t in [1, threads] {
                measure("avx2+fma", 8, t, f);
            }
        }
        #[cfg(ember_avx512)]
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512 F was detected just above.
            let f: fn() -> f32 = || unsafe { x86::avx512() };
            for t in [1, threads] {
                measure("avx512f", 16, t, f);
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    eprintln!("fma_peak measures x86-64 only ({threads} threads asked)");
}
