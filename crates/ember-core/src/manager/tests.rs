//! The manager's own tests: its timer thread hands freed model memory back to the operating
//! system, loads get room in arrival order, and each model's counters follow it across
//! evictions and reloads.

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

/// (hits, misses, loads, load failures) of `c`.
fn uses(c: &ModelCounters) -> (u64, u64, u64, u64) {
    (c.hits, c.misses, c.loads, c.load_failures)
}

/// (lru, memory, keep_alive, unload, replaced) evictions of `c`.
fn evictions(c: &ModelCounters) -> (u64, u64, u64, u64, u64) {
    let e = &c.evictions;
    (e.lru, e.memory, e.keep_alive, e.unload, e.replaced)
}

fn counters(m: &ModelManager, id: &str) -> ModelCounters {
    m.model_status(id).unwrap().counters
}

/// The counters of `id`'s loaded `dtype` instance.
fn instance(m: &ModelManager, id: &str, dtype: DType) -> InstanceStatus {
    let status = m.model_status(id).unwrap();
    let found = status.instances.into_iter().find(|i| i.dtype == dtype);
    found.unwrap_or_else(|| panic!("{id} ({dtype}) is not loaded"))
}

/// The manager-wide counters are every model's summed.
fn assert_totals_are_the_sums(m: &ModelManager) {
    let s = m.stats().unwrap();
    let all: Vec<ModelCounters> = m.status().unwrap().iter().map(|x| x.counters).collect();
    let sum = |f: fn(&ModelCounters) -> u64| all.iter().map(f).sum::<u64>();
    assert_eq!(
        (s.hits, s.misses, s.loads, s.load_failures),
        (
            sum(|c| c.hits),
            sum(|c| c.misses),
            sum(|c| c.loads),
            sum(|c| c.load_failures)
        )
    );
    assert_eq!(s.evictions.total(), sum(|c| c.evictions.total()));
}

#[test]
fn each_model_s_counters_survive_eviction_and_reload() {
    // Room for two models: the pinned default and one other.
    let m = ModelManager::with_config(
        registry(),
        Resolver::from_env(),
        ManagerConfig {
            max_models: 2,
            tick: Duration::from_millis(10),
            ..ManagerConfig::default()
        },
    );
    // Every catalog model reports counters, zeros before any use.
    let all = m.status().unwrap();
    assert!(all.len() > 3 && all.iter().all(|s| s.counters == ModelCounters::default()));

    drop(m.lease(None, None).unwrap());
    drop(m.lease(Some("tiny-mpnet"), None).unwrap()); // miss, load
    drop(m.lease(Some("tiny-mpnet"), None).unwrap()); // hit
    drop(m.lease(Some("tiny-mpnet"), None).unwrap()); // hit
    assert_eq!(uses(&counters(&m, "tiny-mpnet")), (2, 1, 1, 0));
    // The slots are full: tiny-mpnet, least recently used and unpinned, is evicted.
    drop(m.lease(Some("tiny-xlm-roberta"), None).unwrap());
    let mpnet = counters(&m, "tiny-mpnet");
    assert_eq!(
        m.model_status("tiny-mpnet").unwrap().state,
        LoadState::Unloaded
    );
    assert_eq!(
        (uses(&mpnet), evictions(&mpnet)),
        ((2, 1, 1, 0), (1, 0, 0, 0, 0))
    );

    // Reloaded (evicting tiny-xlm-roberta), the hits before the eviction are still counted; the
    // instance's own hits start again from this load.
    drop(m.lease(Some("tiny-mpnet"), None).unwrap());
    drop(m.lease(Some("tiny-mpnet"), None).unwrap());
    let i = instance(&m, "tiny-mpnet", DType::Fp32);
    assert_eq!((i.hits, uses(&i.counters)), (1, (3, 2, 2, 0)));
    assert_eq!(evictions(&i.counters), (1, 0, 0, 0, 0));
    assert_eq!(
        evictions(&counters(&m, "tiny-xlm-roberta")),
        (1, 0, 0, 0, 0)
    );

    // Unloaded, then loaded in INT8 with keep-alive 0 (unloaded as soon as it is let go).
    assert_eq!(m.unload("tiny-mpnet", None).unwrap(), 1);
    let zero = Some(KeepAlive::For(Duration::ZERO));
    m.load("tiny-mpnet", Some(DType::Int8), zero).unwrap();
    let mpnet = m.model_status("tiny-mpnet").unwrap();
    assert_eq!(mpnet.state, LoadState::Unloaded);
    assert_eq!(
        (uses(&mpnet.counters), evictions(&mpnet.counters)),
        ((3, 3, 3, 0), (1, 0, 1, 1, 0))
    );

    // A changed catalog entry replaces the loaded model.
    m.load("tiny-xlm-roberta", None, None).unwrap();
    m.update_registry(|reg| reg.register(ModelSpec::for_path("tiny-xlm-roberta", &tiny("bert"))))
        .unwrap();
    let xlm = counters(&m, "tiny-xlm-roberta");
    assert_eq!(
        (uses(&xlm), evictions(&xlm)),
        ((0, 2, 2, 0), (1, 0, 0, 0, 1))
    );

    // The pinned default was loaded once and never evicted; a model never asked for has zeros.
    let bert = counters(&m, "tiny-bert");
    assert_eq!((uses(&bert), bert.evictions.total()), ((0, 1, 1, 0), 0));
    assert_eq!(counters(&m, "all-MiniLM-L6-v2"), ModelCounters::default());
    assert_totals_are_the_sums(&m);
}

#[test]
fn memory_evictions_and_failed_loads_are_counted_per_model() {
    let probe = ModelManager::new(registry(), Resolver::from_env());
    // Each model's real size and the estimate its load reserves first.
    let sizes = |kind: &str| {
        let id = format!("tiny-{kind}");
        let real = probe.lease(Some(&id), None).unwrap().info().bytes;
        (real, state::estimate_bytes(&tiny(kind), DType::Fp32))
    };
    let (pinned, (mpnet, mpnet_est), (xlm, xlm_est)) =
        (sizes("bert").0, sizes("mpnet"), sizes("xlm-roberta"));
    // The default and one of the others fit; the default and both others do not.
    let budget = pinned + mpnet.max(mpnet_est).max(xlm).max(xlm_est) + 1000;
    assert!(pinned + mpnet + xlm.min(xlm_est) > budget);

    // A model whose directory has no weights: every load fails.
    let broken = tempfile::tempdir().unwrap();
    for file in ["config.json", "tokenizer.json"] {
        std::fs::copy(tiny("bert").join(file), broken.path().join(file)).unwrap();
    }
    let mut reg = registry();
    reg.register(ModelSpec::for_path("broken", broken.path()))
        .unwrap();
    let m = ModelManager::with_config(
        reg,
        Resolver::from_env(),
        ManagerConfig {
            max_memory: Some(budget),
            tick: Duration::from_millis(10),
            ..ManagerConfig::default()
        },
    );
    drop(m.lease(None, None).unwrap());
    drop(m.lease(Some("tiny-mpnet"), None).unwrap());
    drop(m.lease(Some("tiny-xlm-roberta"), None).unwrap());
    assert_eq!(evictions(&counters(&m, "tiny-mpnet")), (0, 1, 0, 0, 0));
    assert_eq!(counters(&m, "tiny-xlm-roberta").evictions.total(), 0);
    for _ in 0..2 {
        m.lease(Some("broken"), None).unwrap_err();
    }
    assert_eq!(uses(&counters(&m, "broken")), (0, 2, 0, 2));
    assert_totals_are_the_sums(&m);
}
