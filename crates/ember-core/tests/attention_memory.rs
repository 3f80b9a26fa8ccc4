//! The tiled attention kernel's memory grows linearly with the length: bytes allocated during
//! a call, counted by this binary's global allocator, at 512, 2,048 and 8,192 tokens. Its own
//! test binary, so no other test's allocations are counted.
//!
//! `unsafe` lives only in kernel modules, with one exception here: a global allocator can only
//! be written with it, and counting bytes at the allocator is the one measure that neither the
//! kernel reports about itself nor the OS blurs (resident pages, allocator caches).
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use ember_core::kernels::flash::{attention, Heads, Rows, Span, Spec};

/// The system allocator, counting the bytes live now and the most live since the last reset.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the counters only observe.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
        PEAK.fetch_max(live, Ordering::SeqCst);
        // SAFETY: the caller's layout, forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Bytes allocated above the inputs during one call over one sequence of `n` tokens.
fn extra_bytes(n: usize, span: Span) -> usize {
    let spec = Spec {
        heads: Heads {
            heads: 2,
            kv_heads: 2,
            head_dim: 64,
        },
        span,
        scale: 0.125,
    };
    let qkv: Vec<f32> = (0..n * spec.heads.row())
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let mut ctx = vec![0f32; n * spec.heads.ctx_row()];
    // The pool's threads and their buffers exist before the count starts.
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build_global()
        .ok();
    let base = LIVE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    // A fresh calling thread, so its buffers start empty (and are freed when it ends).
    std::thread::scope(|s| {
        s.spawn(|| attention(&qkv, &[Rows { start: 0, len: n }], &spec, &mut ctx));
    });
    assert!(ctx.iter().all(|v| v.is_finite()));
    PEAK.load(Ordering::SeqCst) - base
}

#[test]
fn memory_grows_linearly_with_the_length() {
    // The copies of K and V the kernel makes: 2 heads × 64 values × 4 bytes, twice, per token.
    let kv = |n: usize| n * 2 * 64 * 4 * 2;
    for span in [Span::FULL, Span::CAUSAL, Span::window(64, 64)] {
        let sizes = [512, 2048, 8192].map(|n| (n, extra_bytes(n, span)));
        // Shown with `--nocapture`: the figures the issue asks for.
        eprintln!("{span:?}: bytes allocated per call at (tokens, bytes): {sizes:?}");
        for &(n, bytes) in &sizes {
            // K and V blocks plus per-thread tiles and the task list: a few times K and V, never
            // the 8192² · 4 = 256 MiB of one head's score matrix.
            assert!(
                bytes <= 2 * kv(n) + (1 << 20),
                "{span:?}: {n} tokens took {bytes} bytes (K and V: {})",
                kv(n)
            );
        }
        // No ratio between the lengths is asserted: the two pool threads' peaks overlap as the
        // scheduler has them (2,048 tokens of a windowed span measured 1.57 MB in one run and
        // 2.10 MB in another), so ratios of single runs wander; each length's own linear
        // budget above does not, and it holds 8,192 tokens to under 7 % of one head's scores.
    }
}
