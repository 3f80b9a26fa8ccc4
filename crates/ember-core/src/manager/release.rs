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
//! manager calls [`release_free_memory`] from its timer thread after a model is freed or loaded.
//! Off glibc (musl, macOS, Windows) this is a no-op: those allocators return memory on their own
//! schedule, and a Rust user can pick a global allocator for their binary.

/// Returns free memory held by the C allocator to the operating system. Cost: one pass over the
/// allocator's arenas (milliseconds), so it runs on the manager's timer thread, never on a
/// request's path, and only after memory was freed.
pub(super) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    trim();
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
