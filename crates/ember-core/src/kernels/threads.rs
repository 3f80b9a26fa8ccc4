//! One thread budget for the whole process: `EMBER_NUM_THREADS` (default: the number of cores)
//! sizes rayon's global pool, which the GEMMs, the attention kernel and the tokenizer's batch
//! encoding all run on, so they never oversubscribe the machine.

use std::cell::RefCell;
use std::sync::OnceLock;
use std::thread::LocalKey;

static THREADS: OnceLock<usize> = OnceLock::new();

/// The thread budget, read once from `EMBER_NUM_THREADS` (a positive integer; anything else
/// means "all cores"). The first call also sizes rayon's global pool to it.
pub fn num_threads() -> usize {
    *THREADS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let n = std::env::var("EMBER_NUM_THREADS")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or(cores);
        // Fails only when someone built the global pool first; then their size stands and we
        // follow it so the GEMM's own split matches the pool.
        match rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
        {
            Ok(()) => n,
            Err(_) => rayon::current_num_threads(),
        }
    })
}

/// Runs `f` on a worker of the pool (at once when already on one).
///
/// Each parallel loop started from outside the pool is injected into it while the caller sleeps
/// on a lock until it ends: a forward pass has about ten such loops per layer, and a short
/// sequence's loops last tens of microseconds, so the wake-ups alone cost a fifth of a batch-1
/// call. Started from a worker, the loops split by work stealing while the other workers are
/// still spinning from the previous loop, and the caller wakes once per pass.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    num_threads();
    rayon::scope(|_| f())
}

/// Runs `f` with this thread's value in `slot` (buffers kept across calls), or a fresh default
/// one when a caller up the stack holds it: a pool worker waiting on its loop may run another
/// task that wants the same buffers.
pub(crate) fn with_local<T: Default, R>(
    slot: &'static LocalKey<RefCell<T>>,
    f: impl FnOnce(&mut T) -> R,
) -> R {
    let mut v = slot
        .with(|c| c.try_borrow_mut().map(|mut v| std::mem::take(&mut *v)))
        .unwrap_or_default();
    let r = f(&mut v);
    slot.with(|c| {
        if let Ok(mut kept) = c.try_borrow_mut() {
            *kept = v;
        }
    });
    r
}
