//! CPU kernels for the encoders' hot loops: the process thread budget, f32 linear layers (on
//! weights packed at load, `sgemm`, or as stored, `gemm`),
//! layer norm, GELU, attention (dense, and tiled for long inputs: `flash`) and the int8 GEMM.
//!
//! Every kernel has a portable path and, where it pays, an AVX2+FMA path chosen at run time with
//! `is_x86_feature_detected!`, so one build is fast on every x86-64 machine. Tests run each SIMD
//! path against the portable one on the same inputs. `unsafe` is allowed here and only here
//! (intrinsics, raw GEMM pointers); each block says why it is sound.
#![allow(unsafe_code)]

pub mod attention;
pub mod elementwise;
pub mod flash;
pub mod gated;
pub mod gemm;
pub mod int8;
pub mod rope;
pub mod sgemm;
pub mod threads;

/// The widest instruction-set level the kernels may use, whatever the CPU has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum IsaCap {
    /// Plain Rust only.
    Portable,
    /// Up to AVX2 + FMA (and the AVX2 int8 kernel); on AArch64, NEON.
    Avx2,
    /// Everything the CPU has (AVX-512, VNNI).
    Native,
}

impl IsaCap {
    /// Reads `EMBER_ISA`: `portable`, `avx2`, or unset / `native` / anything else for no cap.
    /// Like oneDNN's `ONEDNN_MAX_CPU_ISA`, it lets one machine measure the narrower kernels (the
    /// benchmarks of an AVX2-only CPU) and sidestep a wide path.
    fn from_env() -> Self {
        Self::parse(&std::env::var("EMBER_ISA").unwrap_or_default())
    }

    /// `EMBER_ISA`'s value to a cap (unknown values cap nothing, as unset).
    pub fn parse(v: &str) -> Self {
        match v.trim().to_ascii_lowercase().as_str() {
            "portable" => IsaCap::Portable,
            "avx2" => IsaCap::Avx2,
            _ => IsaCap::Native,
        }
    }
}

/// The cap `EMBER_ISA` sets, read once.
pub fn isa_cap() -> IsaCap {
    static CAP: std::sync::OnceLock<IsaCap> = std::sync::OnceLock::new();
    *CAP.get_or_init(IsaCap::from_env)
}

/// True when the AVX2 + FMA paths may run on this CPU (F16C too, which every AVX2 CPU has: the
/// f16 GEMM reads half floats with it) and `EMBER_ISA` allows them.
#[inline]
pub fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        isa_cap() >= IsaCap::Avx2
            && std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// True when the AVX-512 f32 paths may run (AVX-512 F on top of everything `has_avx2` wants) and
/// `EMBER_ISA` sets no cap.
#[cfg(all(target_arch = "x86_64", ember_avx512))]
#[inline]
pub fn has_avx512() -> bool {
    isa_cap() == IsaCap::Native && std::is_x86_feature_detected!("avx512f") && has_avx2()
}

/// Bytes a tile asks the cache for while it runs, so the next panel is on its way from memory
/// before the next tile reads it: `len` bytes from `start`, spread evenly over the `k` steps.
///
/// A short input (a query: 15 rows, three tiles per panel) reads each panel three times, the
/// first time from memory (a model's weights are larger than the L3 cache), and the first tile
/// then waits on memory while the other two compute from L1. Each tile prefetching a share of the
/// next panel keeps memory busy during all three.
#[derive(Debug, Clone, Copy)]
pub struct Prefetch {
    /// The first byte (only hinted at, never read).
    pub start: *const u8,
    /// Bytes to cover.
    pub len: usize,
}

impl Prefetch {
    /// Nothing to prefetch.
    pub const NONE: Prefetch = Prefetch {
        start: std::ptr::null(),
        len: 0,
    };

    /// Tile `t` of `tiles`' share of `next` (what the call after this tile's series reads).
    pub fn share<T>(next: &[T], t: usize, tiles: usize) -> Self {
        let bytes = std::mem::size_of_val(next);
        if bytes == 0 || tiles == 0 {
            return Self::NONE;
        }
        Self {
            start: next.as_ptr().cast::<u8>().wrapping_add(t * bytes / tiles),
            len: bytes.div_ceil(tiles),
        }
    }

    /// Bytes to cover per step of a `k`-step loop: one or two cache lines (two panels at once).
    #[inline(always)]
    pub fn step(self, k: usize) -> usize {
        self.len.div_ceil(k.max(1))
    }

    /// The hints of step `p` (`step` from [`Prefetch::step`]).
    #[inline(always)]
    pub fn at(self, p: usize, step: usize) {
        // A hint, never a read: any address is allowed (`wrapping_add` keeps the pointer
        // arithmetic defined).
        let at = self.start.wrapping_add(p * step);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch never faults; SSE is part of x86-64.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(at.cast());
            if step > 64 {
                _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(64).cast());
            }
        }
        // Elsewhere (the NEON kernel) there is no stable prefetch intrinsic: no hint.
        #[cfg(not(target_arch = "x86_64"))]
        let _ = at;
    }
}

/// The f32 kernels' instruction sets (the GEMM's microkernel and attention's products).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Simd {
    Portable,
    Avx2,
    #[cfg(all(target_arch = "x86_64", ember_avx512))]
    Avx512,
}

impl Simd {
    /// The widest this CPU runs.
    pub(crate) fn detect() -> Self {
        #[cfg(all(target_arch = "x86_64", ember_avx512))]
        if has_avx512() {
            return Simd::Avx512;
        }
        if has_avx2() {
            Simd::Avx2
        } else {
            Simd::Portable
        }
    }

    /// Every one this CPU runs, so tests can hold each SIMD path against the portable one.
    #[cfg(test)]
    pub(crate) fn available() -> Vec<Self> {
        let mut all = vec![Simd::Portable];
        if has_avx2() {
            all.push(Simd::Avx2);
        }
        #[cfg(all(target_arch = "x86_64", ember_avx512))]
        if has_avx512() {
            all.push(Simd::Avx512);
        }
        all
    }
}

/// Instruction set the kernels dispatch to on this machine (for logs and bench labels).
pub fn isa() -> &'static str {
    #[cfg(all(target_arch = "x86_64", ember_avx512))]
    if has_avx512() {
        return "avx512f";
    }
    if has_avx2() {
        "avx2+fma"
    } else {
        "portable"
    }
}

/// What this process computes with: the instruction sets the kernels picked at run time (after
/// any `EMBER_ISA` cap) and the thread budget. Logged by the server at start, exported in its
/// metrics and returned by the Python module, so a deployment can see that the fast path is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelInfo {
    /// The f32 kernels (GEMM, attention, element-wise): `avx512f`, `avx2+fma` or `portable`.
    pub f32: &'static str,
    /// The INT8 GEMM: `avx512-vnni`, `avx2`, `neon-dotprod` or `portable`.
    pub int8: &'static str,
    /// Threads of the pool every kernel runs on (`EMBER_NUM_THREADS`).
    pub threads: usize,
}

/// The kernels this machine runs (see [`KernelInfo`]).
pub fn info() -> KernelInfo {
    KernelInfo {
        f32: isa(),
        int8: int8::Isa::detect().name(),
        threads: threads::num_threads(),
    }
}

/// Deterministic pseudo-random values in `[-scale, scale)` for the kernels' tests (xorshift, so
/// every SIMD path and its portable twin see the same inputs).
#[cfg(test)]
pub(crate) fn test_data(n: usize, seed: u32, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 20_000) as f32 / 10_000.0 * scale - scale
        })
        .collect()
}

#[cfg(test)]
mod cap_tests {
    use super::IsaCap;

    #[test]
    fn isa_cap_parses_its_levels() {
        assert_eq!(IsaCap::parse("portable"), IsaCap::Portable);
        assert_eq!(IsaCap::parse(" AVX2\n"), IsaCap::Avx2);
        for v in ["", "native", "avx512", "sse9"] {
            assert_eq!(IsaCap::parse(v), IsaCap::Native, "{v:?}");
        }
        assert!(IsaCap::Portable < IsaCap::Avx2 && IsaCap::Avx2 < IsaCap::Native);
    }
}

#[cfg(test)]
mod prefetch_tests {
    use super::Prefetch;

    /// The tiles' shares cover the next panel, every byte of it, and each tile's steps reach the
    /// end of its share.
    #[test]
    fn shares_cover_the_next_panel() {
        for &(len, tiles, k) in &[
            (384 * 16, 3, 384),
            (1536 * 16, 8, 1536),
            (77, 5, 7),
            (64, 1, 1),
        ] {
            let next = vec![0f32; len];
            let base = next.as_ptr() as usize;
            let bytes = len * 4;
            let mut covered = vec![false; bytes];
            for t in 0..tiles {
                let pf = Prefetch::share(&next, t, tiles);
                let start = pf.start as usize - base;
                assert!(
                    pf.step(k) * k >= pf.len,
                    "tile {t}: steps fall short of the share"
                );
                for c in covered.iter_mut().skip(start).take(pf.len) {
                    *c = true;
                }
            }
            assert!(
                covered.iter().all(|&c| c),
                "{len} values in {tiles} tiles: a gap"
            );
        }
        let none = Prefetch::share::<f32>(&[], 0, 3);
        assert_eq!((none.start, none.len), (std::ptr::null(), 0));
    }
}
