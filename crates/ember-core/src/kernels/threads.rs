//! One thread budget for the whole process: `EMBER_NUM_THREADS` (default: the number of cores)
//! sizes rayon's global pool, which the GEMMs, the attention kernel and the tokenizer's batch
//! encoding all run on, so they never oversubscribe the machine.

use std::sync::OnceLock;

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
