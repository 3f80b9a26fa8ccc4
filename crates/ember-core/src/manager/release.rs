//! Gives memory freed by unloaded models (and by the scratch copies a load makes) back to the
//! operating system.
//!
//! Why: glibc's allocator keeps freed memory in its arenas for reuse. A model's tensors are many
//! allocations of a few MB (below glibc's dynamic mmap threshold, which rises to 32 MB after the
//! first large free), made on whichever worker thread loaded the model, so they land in that
//! thread's arena; when the model is dropped the memory stays mapped. Measured with
//! `benches/soak.py` (700 MB budget, MiniLM + MPNet in four dtypes): with every model but the
//! pinned one unloaded, the process still held 2.3 GB RSS against 93 MB of live models, and peaked
//! at 3.4 GB. `malloc_trim(0)` on that process dropped it from 1.8 GB to 0.55 GB at once. So the
//! manager calls [`release_free_memory`] from its timer thread after a model is freed or loaded,
//! and every [`EVERY`] besides: memory it does not see freed (the scratch buffers a batch
//! worker thread keeps, sized by its largest batch, freed when the idle worker stops) would
//! otherwise stay resident; in the soak that left settled RSS drifting by up to 180 MB.
//! Off glibc (musl, macOS, Windows) this is a no-op: those allocators return memory on their own
//! schedule, and a Rust user can pick a global allocator for their binary.

/// Caps glibc's malloc arenas at one per core (at least 2) for the whole process, unless the user
/// set `MALLOC_ARENA_MAX`. A server calls it once at start, before its threads exist.
///
/// Why: glibc gives threads up to 8 arenas per core. The server's threads (async runtime, thread
/// pool, one batch worker per loaded model and dtype) spread model loads and batch buffers over
/// many arenas, and `malloc_trim` cannot give back memory stranded between live chunks or at the
/// top of every one of them. Measured with `benches/soak.py` (10 minutes, 700 MB budget, 8 model
/// and dtype pairs, 2026-11-24 on the 2-core machine): with glibc's default the settled RSS grew
/// 155 → 194 MB (+24 %) between the checkpoints; with 2 arenas it went 123 → 118 MB (−4 %). The
/// cost is more contention on the arena locks, which is small with as many arenas as cores.
/// Off glibc this is a no-op.
pub fn limit_allocator_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
            return;
        }
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        arena_max(cores.clamp(2, 64) as std::ffi::c_int);
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn arena_max(n: std::ffi::c_int) {
    extern "C" {
        /// glibc, `<malloc.h>`: `int mallopt(int param, int value)`.
        fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
    }
    /// `M_ARENA_MAX` in `<malloc.h>`.
    const M_ARENA_MAX: std::ffi::c_int = -8;
    // SAFETY: `mallopt` has no preconditions; it takes the main arena's lock to change a tunable
    // and returns 0 if the value is refused (then the default stands, which is harmless).
    let ok = unsafe { mallopt(M_ARENA_MAX, n) };
    tracing::debug!(arenas = n, ok, "malloc arenas capped");
}

/// How often free memory is handed back even when no model was freed. A pass that finds little
/// to release takes about 1 ms (measured in the soak).
pub(super) const EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Returns free memory held by the C allocator to the operating system. Cost: one pass over the
/// allocator's arenas, each locked in turn; after a model was freed, the `madvise` of its pages
/// makes it tens of milliseconds (soak: median 40 ms, 90th percentile 120 ms on a busy 2-core
/// machine), during which threads allocating from the arena being trimmed wait. So it runs on
/// the manager's timer thread, never on a request's path.
pub(super) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let started = std::time::Instant::now();
        trim();
        tracing::debug!(
            us = started.elapsed().as_micros() as u64,
            "free memory handed back to the operating system"
        );
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() {
    extern "C" {
        /// glibc, `<malloc.h>`: `int malloc_trim(size_t pad)`.
        fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }
    // SAFETY: `malloc_trim` has no preconditions: it takes each arena's own lock, touches only
    // free chunks, and may be called from any thread at any time (glibc >= 2.8 also releases
    // whole free pages inside arenas, not only the top of the main heap). The return value only
    // says whether anything was released.
    let _ = unsafe { malloc_trim(0) };
}
