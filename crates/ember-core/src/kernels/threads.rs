//! One thread budget for the whole process: `EMBER_NUM_THREADS` (default: the number of cores)
//! sizes rayon's global pool, which the GEMMs, the attention kernel and the tokenizer's batch
//! encoding all run on, so they never oversubscribe the machine.

use std::cell::RefCell;
use std::sync::{Mutex, OnceLock};
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

/// The estimated cost of every forward pass in flight (see [`on_pool`]).
static PASSES: Mutex<Vec<u64>> = Mutex::new(Vec::new());

/// One pass in flight, counted while alive.
struct Pass(u64);

impl Pass {
    /// Enters a pass of `cost`; with `true` when every other pass in flight costs more.
    fn enter(cost: u64) -> (Self, bool) {
        let mut passes = PASSES.lock().unwrap_or_else(|p| p.into_inner());
        let smallest = passes.iter().all(|&c| c > cost);
        passes.push(cost);
        (Pass(cost), smallest)
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        let mut passes = PASSES.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = passes.iter().position(|&c| c == self.0) {
            passes.swap_remove(i);
        }
    }
}

/// Runs the forward pass `f`, whose work is about `cost` (any unit, the same for every caller),
/// on a worker of the pool when every other pass in flight costs more (at once when already on
/// a worker), and on the calling thread otherwise.
///
/// Each parallel loop started from outside the pool is injected into it while the caller sleeps
/// on a lock until it ends: a forward pass has about ten such loops per layer, and a short
/// sequence's loops last tens of microseconds, so the wake-ups alone cost a fifth of a batch-1
/// call. Started from a worker, the loops split by work stealing while the other workers are
/// still spinning from the previous loop, and the caller wakes once per pass.
///
/// But a worker waiting for the rest of its loop steals whatever is queued, and a whole pass
/// queued in the pool then runs to its end inside that loop. So a pass goes to the pool whole
/// only when it is smaller than every pass in flight: whoever steals it is working for a bigger
/// pass, which the short one delays a little (a query of a small model overtakes a large batch
/// of a big one, not the other way round). Any other pass injects its loops one at a time, as a
/// worker may steal a loop but never that pass, and it shares the cores loop by loop.
pub fn on_pool<R: Send>(cost: u64, f: impl FnOnce() -> R + Send) -> R {
    num_threads();
    if rayon::current_thread_index().is_some() {
        return f();
    }
    let (_pass, smallest) = Pass::enter(cost);
    if smallest {
        rayon::scope(|_| f())
    } else {
        f()
    }
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
