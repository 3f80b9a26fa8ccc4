//! The manager's timer thread hands freed model memory back to the operating system.

use super::*;
use crate::registry::ModelSpec;

fn tiny(kind: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/reference/tiny")
        .join(kind)
}

/// Waits (bounded) until the timer thread has handed freed memory back `n` times.
fn wait_releases(m: &ModelManager, n: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = m.stats().unwrap().memory_releases;
        if r >= n || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn freed_models_are_handed_back_by_the_timer_thread() {
    let mut reg = Registry::builtin();
    let mut spec = ModelSpec::for_path("tiny-bert", &tiny("bert"));
    spec.is_default = true;
    reg.register(spec).unwrap();
    reg.register(ModelSpec::for_path("tiny-mpnet", &tiny("mpnet")))
        .unwrap();
    let m = ModelManager::with_config(
        reg,
        Resolver::from_env(),
        ManagerConfig {
            tick: Duration::from_millis(10),
            ..ManagerConfig::default()
        },
    );
    // A load frees its scratch copies: one release.
    m.load("tiny-mpnet", Some(DType::Int8), None).unwrap();
    assert_eq!(wait_releases(&m, 1), 1);
    // Nothing freed since: no further release, however many ticks pass.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(m.stats().unwrap().memory_releases, 1);
    // An unload with no request holding the model frees it at once.
    assert_eq!(m.unload("tiny-mpnet", None).unwrap(), 1);
    assert_eq!(wait_releases(&m, 2), 2);
    // A model evicted while a request holds it is freed when that request lets go.
    let held = m.acquire(Some("tiny-mpnet"), Some(DType::Fp32)).unwrap();
    assert_eq!(wait_releases(&m, 3), 3);
    assert_eq!(m.unload("tiny-mpnet", None).unwrap(), 1);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(m.stats().unwrap().memory_releases, 3, "still in use");
    assert!(m.stats().unwrap().bytes_draining > 0);
    drop(held);
    assert_eq!(wait_releases(&m, 4), 4);
    assert_eq!(m.stats().unwrap().bytes_draining, 0);
}
