//! Where forward passes run (`kernels::threads::on_pool`). Its own test binary: no other test's
//! pass may be in flight while this one counts them.

use ember_core::kernels::threads::on_pool;
use std::sync::mpsc::channel;

#[test]
fn a_pass_goes_to_the_pool_whole_only_when_smaller_than_every_pass_in_flight() {
    // Two workers, so a pass held on one leaves the other free.
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build_global()
        .unwrap();
    let worker = rayon::current_thread_index;
    assert!(on_pool(100, worker).is_some(), "alone: on a worker");

    let (started_tx, started) = channel();
    let (release, release_rx) = channel::<()>();
    let first = std::thread::spawn(move || {
        on_pool(100, move || {
            started_tx.send(worker()).unwrap();
            release_rx.recv().unwrap();
        })
    });
    assert!(started.recv().unwrap().is_some(), "alone: on a worker");
    // Beside a pass of cost 100: a bigger or equal one must not queue whole in the pool, where
    // the first one's waiting workers could steal it; a smaller one may.
    let bigger = on_pool(200, worker);
    let equal = on_pool(100, worker);
    let smaller = on_pool(10, worker);
    release.send(()).unwrap();
    first.join().unwrap();
    assert_eq!(
        bigger, None,
        "bigger than one in flight: on the calling thread"
    );
    assert_eq!(
        equal, None,
        "as big as one in flight: on the calling thread"
    );
    assert!(smaller.is_some(), "smaller than all in flight: on a worker");

    // With none in flight again, any pass goes back to the pool.
    assert!(on_pool(1_000, worker).is_some());
    // A pass started from inside a pool runs where it is.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    assert_eq!(pool.install(|| on_pool(1, worker)), Some(0));
}
