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

/// tiny-bert (the default), tiny-mpnet and tiny-xlm-roberta.
fn registry() -> Registry {
    let mut reg = Registry::builtin();
    for kind in ["bert", "mpnet", "xlm-roberta"] {
        let mut spec = ModelSpec::for_path(&format!("tiny-{kind}"), &tiny(kind));
        spec.is_default = kind == "bert";
        reg.register(spec).unwrap();
    }
    reg
}

#[test]
fn freed_models_are_handed_back_by_the_timer_thread() {
    let m = ModelManager::with_config(
        registry(),
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
    let held = m.lease(Some("tiny-mpnet"), Some(DType::Fp32)).unwrap();
    assert_eq!(wait_releases(&m, 3), 3);
    assert_eq!(m.unload("tiny-mpnet", None).unwrap(), 1);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(m.stats().unwrap().memory_releases, 3, "still in use");
    assert!(m.stats().unwrap().bytes_draining > 0);
    drop(held);
    assert_eq!(wait_releases(&m, 4), 4);
    assert_eq!(m.stats().unwrap().bytes_draining, 0);
}

#[test]
fn loads_get_room_in_arrival_order() {
    // Sizes: real bytes once loaded, and the estimate a load reserves first.
    let probe = ModelManager::new(registry(), Resolver::from_env());
    let real = |id: &str, d| probe.lease(Some(id), Some(d)).unwrap().info().bytes;
    let est = |kind: &str, d| state::estimate_bytes(&tiny(kind), d);
    let pinned = real("tiny-bert", DType::Fp32);
    let held_bytes = real("tiny-mpnet", DType::Int8);
    let (big, big_est) = (
        real("tiny-xlm-roberta", DType::Fp32),
        est("xlm-roberta", DType::Fp32),
    );
    let (small, small_est) = (real("tiny-bert", DType::Int8), est("bert", DType::Int8));
    let budget = pinned + big.max(big_est) + 1000;
    // The big model cannot fit beside the held one; the small one could (it would jump the
    // line without ordering), but cannot fit beside the big one.
    assert!(pinned + held_bytes + big_est > budget);
    assert!(pinned + held_bytes + small.max(small_est) <= budget);
    assert!(pinned + big + small_est > budget);

    let m = Arc::new(ModelManager::with_config(
        registry(),
        Resolver::from_env(),
        ManagerConfig {
            max_memory: Some(budget),
            tick: Duration::from_millis(10),
            release_wait: Duration::from_secs(60),
            ..ManagerConfig::default()
        },
    ));
    drop(m.lease(None, None).unwrap());
    let held = m.lease(Some("tiny-mpnet"), Some(DType::Int8)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let wait_for = |what: &str, cond: &dyn Fn(&ManagerStats) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cond(&m.stats().unwrap()) {
            assert!(Instant::now() < deadline, "never: {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    let first = {
        let (m, tx) = (m.clone(), tx.clone());
        std::thread::spawn(move || {
            let model = m.lease(Some("tiny-xlm-roberta"), Some(DType::Fp32));
            tx.send("big").unwrap();
            model.map(drop)
        })
    };
    wait_for("the big load waits for the held model", &|s| {
        s.loads_waiting == 1 && s.bytes_draining > 0
    });
    let second = {
        let m = m.clone();
        std::thread::spawn(move || {
            let model = m.lease(Some("tiny-bert"), Some(DType::Int8));
            tx.send("small").unwrap();
            model.map(drop)
        })
    };
    wait_for("the small load queues behind it", &|s| s.loads_waiting == 2);
    drop(held);
    let order: Vec<&str> = (0..2)
        .map(|_| rx.recv_timeout(Duration::from_secs(60)).unwrap())
        .collect();
    assert_eq!(order, ["big", "small"]);
    first.join().unwrap().unwrap();
    second.join().unwrap().unwrap();
    let s = m.stats().unwrap();
    assert!(s.bytes_in_use <= budget && s.loads_waiting == 0, "{s:?}");
}
