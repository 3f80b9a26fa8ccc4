//! The multi-model manager on tiny models: LRU order, the memory budget after every operation,
//! single-flight loads, in-use models surviving eviction, keep-alive, pinning, failing loads, and
//! a bounded multi-threaded stress run.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{copy_dir, cosine, json, rows, strings, tiny};
use ember_core::manager::{KeepAlive, LoadState, ManagerConfig};
use ember_core::{DType, EmbedOptions, ErrorKind, ModelManager, ModelSpec, Registry, Resolver};

const KINDS: [&str; 3] = ["bert", "mpnet", "xlm-roberta"];

/// A registry with tiny-bert (default), tiny-mpnet, tiny-xlm-roberta, and extra ids for copies.
fn registry(extra: &[(&str, std::path::PathBuf)]) -> Registry {
    let mut reg = Registry::builtin();
    for kind in KINDS {
        let mut spec = ModelSpec::for_path(&format!("tiny-{kind}"), &tiny(kind));
        spec.is_default = kind == "bert";
        reg.register(spec).unwrap();
    }
    for (id, path) in extra {
        reg.register(ModelSpec::for_path(id, path)).unwrap();
    }
    reg
}

fn manager(config: ManagerConfig) -> ModelManager {
    ModelManager::with_config(registry(&[]), Resolver::from_env(), config)
}

fn fast(config: ManagerConfig) -> ManagerConfig {
    ManagerConfig {
        tick: Duration::from_millis(20),
        release_wait: Duration::from_secs(5),
        ..config
    }
}

fn loaded_ids(m: &ModelManager) -> Vec<(String, DType)> {
    let mut out = Vec::new();
    for s in m.status().unwrap() {
        for i in s.instances {
            out.push((s.spec.id.clone(), i.dtype));
        }
    }
    out.sort();
    out
}

fn one(m: &ModelManager, id: &str, dtype: Option<DType>) {
    let out = m
        .embed(
            Some(id),
            dtype,
            &["hello world".into()],
            &EmbedOptions::default(),
        )
        .unwrap();
    assert_eq!(out.rows, 1);
}

#[test]
fn evicts_least_recently_used_first() {
    let m = manager(fast(ManagerConfig {
        max_models: 3,
        ..Default::default()
    }));
    one(&m, "tiny-bert", None); // pinned default
    one(&m, "tiny-mpnet", None);
    one(&m, "tiny-xlm-roberta", None);
    one(&m, "tiny-mpnet", None); // now xlm-roberta is least recently used
    one(&m, "tiny-mpnet", Some(DType::Int8));
    let ids = loaded_ids(&m);
    assert!(ids.contains(&("tiny-mpnet".into(), DType::Fp32)), "{ids:?}");
    assert!(
        !ids.iter().any(|(id, _)| id == "tiny-xlm-roberta"),
        "{ids:?}"
    );
    assert!(
        ids.contains(&("tiny-bert".into(), DType::Fp32)),
        "pinned default stays: {ids:?}"
    );
    let stats = m.stats().unwrap();
    assert_eq!(stats.evictions.lru, 1);
    assert_eq!(stats.models_loaded, 3);
}

#[test]
fn memory_budget_holds_after_every_operation() {
    // Room for about two tiny FP32 models (each ~140 KB with its tokenizer).
    let probe = manager(ManagerConfig::default());
    one(&probe, "tiny-bert", None);
    let size = probe.stats().unwrap().bytes_in_use;
    let budget = size * 5 / 2;
    let m = manager(fast(ManagerConfig {
        max_memory: Some(budget),
        ..Default::default()
    }));
    let ops: [(&str, Option<DType>); 8] = [
        ("tiny-bert", None),
        ("tiny-mpnet", None),
        ("tiny-xlm-roberta", None),
        ("tiny-mpnet", Some(DType::Fp16)),
        ("tiny-mpnet", None),
        ("tiny-xlm-roberta", Some(DType::Int8)),
        ("tiny-bert", Some(DType::Bf16)),
        ("tiny-xlm-roberta", None),
    ];
    for (id, dtype) in ops {
        one(&m, id, dtype);
        let s = m.stats().unwrap();
        assert!(
            s.bytes_in_use <= budget,
            "{} > {budget} after {id} {dtype:?}",
            s.bytes_in_use
        );
    }
    let s = m.stats().unwrap();
    assert!(s.evictions.memory >= 3, "{s:?}");
    assert_eq!(s.bytes_budget, Some(budget));
}

#[test]
fn concurrent_requests_for_a_cold_model_load_it_once() {
    let m = Arc::new(manager(ManagerConfig::default()));
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (m, b) = (m.clone(), barrier.clone());
            std::thread::spawn(move || {
                b.wait();
                m.lease(Some("tiny-mpnet"), None).unwrap()
            })
        })
        .collect();
    let models: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(models.windows(2).all(|w| std::ptr::eq(&*w[0], &*w[1])));
    let s = m.stats().unwrap();
    assert_eq!(s.loads, 1, "{s:?}");
    assert_eq!(s.hits + s.misses, 8);
}

#[test]
fn a_model_in_use_survives_eviction_and_is_released_after() {
    let m = manager(fast(ManagerConfig {
        max_models: 2,
        ..Default::default()
    }));
    one(&m, "tiny-bert", None);
    let held = m.lease(Some("tiny-mpnet"), None).unwrap();
    one(&m, "tiny-xlm-roberta", None); // evicts tiny-mpnet from the cache while it is held
    assert!(!loaded_ids(&m).iter().any(|(id, _)| id == "tiny-mpnet"));
    let s = m.stats().unwrap();
    assert!(
        s.bytes_draining > 0,
        "its bytes stay counted while in use: {s:?}"
    );
    let out = held
        .embed(&["still works".into()], &EmbedOptions::default())
        .unwrap();
    assert_eq!(out.model, "tiny-mpnet");
    drop(held);
    assert_eq!(m.stats().unwrap().bytes_draining, 0);
}

#[test]
fn a_load_waits_for_in_use_models_to_be_released_within_the_budget() {
    let probe = manager(ManagerConfig::default());
    one(&probe, "tiny-bert", None);
    let size = probe.stats().unwrap().bytes_in_use;
    // Room for the pinned default plus one more.
    let m = Arc::new(manager(fast(ManagerConfig {
        max_memory: Some(size * 21 / 10),
        ..Default::default()
    })));
    one(&m, "tiny-bert", None);
    let held = m.lease(Some("tiny-mpnet"), None).unwrap();
    let budget_ok = Arc::new(AtomicBool::new(true));
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        drop(held);
    });
    let watcher = {
        let (m, ok) = (m.clone(), budget_ok.clone());
        std::thread::spawn(move || {
            for _ in 0..50 {
                if m.stats().unwrap().bytes_in_use > size * 21 / 10 {
                    ok.store(false, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let start = Instant::now();
    one(&m, "tiny-xlm-roberta", None);
    assert!(
        start.elapsed() >= Duration::from_millis(150),
        "the load waited for the release"
    );
    releaser.join().unwrap();
    watcher.join().unwrap();
    assert!(
        budget_ok.load(Ordering::SeqCst),
        "budget exceeded while waiting"
    );
}

#[test]
fn keep_alive_zero_duration_and_forever() {
    let m = manager(fast(ManagerConfig::default()));
    let zero = Some(KeepAlive::For(Duration::ZERO));
    m.load("tiny-mpnet", None, None).unwrap();
    assert_eq!(
        m.model_status("tiny-mpnet").unwrap().state,
        LoadState::Loaded
    );
    m.embed_keep_alive(
        Some("tiny-mpnet"),
        None,
        zero,
        &["x".into()],
        &EmbedOptions::default(),
    )
    .unwrap();
    assert_eq!(
        m.model_status("tiny-mpnet").unwrap().state,
        LoadState::Unloaded,
        "0 unloads after the request"
    );
    // As in Ollama, a load with keep-alive 0 unloads right away.
    m.load("tiny-mpnet", None, zero).unwrap();
    assert_eq!(
        m.model_status("tiny-mpnet").unwrap().state,
        LoadState::Unloaded
    );

    m.load(
        "tiny-xlm-roberta",
        None,
        Some(KeepAlive::For(Duration::from_millis(150))),
    )
    .unwrap();
    m.load("tiny-mpnet", Some(DType::Int8), Some(KeepAlive::Forever))
        .unwrap();
    let status = m.model_status("tiny-xlm-roberta").unwrap();
    assert_eq!(status.state, LoadState::Loaded);
    assert!(status.instances[0].expires_at_ms.is_some());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        m.model_status("tiny-xlm-roberta").unwrap().state,
        LoadState::Unloaded,
        "expired on the timer"
    );
    assert_eq!(
        m.model_status("tiny-mpnet").unwrap().state,
        LoadState::Loaded,
        "-1 stays"
    );
    assert!(m.stats().unwrap().evictions.keep_alive >= 2);
}

#[test]
fn pinned_models_survive_and_cannot_be_unloaded() {
    let m = manager(fast(ManagerConfig {
        max_models: 2,
        pinned: vec!["tiny-mpnet".into()],
        keep_alive: KeepAlive::For(Duration::ZERO),
        ..Default::default()
    }));
    one(&m, "tiny-bert", None);
    one(&m, "tiny-mpnet", None);
    std::thread::sleep(Duration::from_millis(100));
    let ids = loaded_ids(&m);
    assert_eq!(ids.len(), 2, "pinned models ignore keep-alive: {ids:?}");
    // No unpinned model to evict and no room: a clear capacity error.
    let err = m.lease(Some("tiny-xlm-roberta"), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Capacity, "{err}");
    assert!(err.to_string().contains("pinned"), "{err}");
    for id in ["tiny-bert", "tiny-mpnet"] {
        let err = m.unload(id, None).unwrap_err();
        assert!(err.to_string().contains("pinned"), "{err}");
        let err = m.unload(id, Some(DType::Fp32)).unwrap_err();
        assert!(err.to_string().contains("pinned"), "{err}");
    }
    // Other dtypes of a pinned model are not pinned: unloading "all" takes them and keeps fp32.
    let m = manager(ManagerConfig::default());
    one(&m, "tiny-bert", None);
    one(&m, "tiny-bert", Some(DType::Int8));
    assert_eq!(m.unload("tiny-bert", None).unwrap(), 1);
    assert_eq!(loaded_ids(&m), vec![("tiny-bert".to_string(), DType::Fp32)]);
    let err = m.unload("no-such-model", None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ModelNotFound);
}

#[test]
fn explicit_load_unload_and_status() {
    let m = manager(ManagerConfig::default());
    let s = m.load("tiny-mpnet", Some(DType::Int8), None).unwrap();
    assert_eq!(s.state, LoadState::Loaded);
    assert_eq!(s.instances[0].dtype, DType::Int8);
    assert!(s.instances[0].bytes > 0 && s.instances[0].load_ms > 0.0);
    one(&m, "tiny-mpnet", Some(DType::Int8));
    assert!(m.model_status("tiny-mpnet").unwrap().instances[0].hits >= 1);
    assert_eq!(m.unload("tiny-mpnet", Some(DType::Fp32)).unwrap(), 0);
    assert_eq!(m.unload("tiny-mpnet", None).unwrap(), 1);
    assert_eq!(
        m.model_status("tiny-mpnet").unwrap().state,
        LoadState::Unloaded
    );
    assert_eq!(m.stats().unwrap().evictions.unload, 1);
}

#[test]
fn a_model_bigger_than_the_budget_is_refused_and_others_stay() {
    let probe = manager(ManagerConfig::default());
    probe.load("tiny-mpnet", Some(DType::Int8), None).unwrap();
    let int8 = probe.model_status("tiny-mpnet").unwrap().bytes;
    let m = manager(ManagerConfig {
        max_memory: Some(int8 * 3 / 2),
        ..Default::default()
    });
    m.load("tiny-mpnet", Some(DType::Int8), None).unwrap();
    let err = m.lease(Some("tiny-mpnet"), Some(DType::Fp32)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Capacity);
    assert!(
        err.to_string()
            .contains("more than the whole memory budget"),
        "{err}"
    );
    assert_eq!(
        loaded_ids(&m),
        vec![("tiny-mpnet".to_string(), DType::Int8)]
    );
}

#[test]
fn a_failing_load_reaches_every_waiter_and_is_retried() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("flaky");
    copy_dir(&tiny("bert"), &dir);
    let good = std::fs::read(dir.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("model.safetensors"), b"\x08\0\0\0\0\0\0\0{broken}").unwrap();
    let m = Arc::new(ModelManager::with_config(
        registry(&[("flaky", dir.clone())]),
        Resolver::from_env(),
        ManagerConfig::default(),
    ));
    let barrier = Arc::new(Barrier::new(6));
    let errors: Vec<String> = (0..6)
        .map(|_| {
            let (m, b) = (m.clone(), barrier.clone());
            std::thread::spawn(move || {
                b.wait();
                m.lease(Some("flaky"), None).unwrap_err().to_string()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert!(
        errors.iter().all(|e| e.contains("corrupt safetensors")),
        "{errors:?}"
    );
    let s = m.stats().unwrap();
    assert!(s.load_failures >= 1 && s.loads == 0, "{s:?}");
    let status = m.model_status("flaky").unwrap();
    assert_eq!(status.state, LoadState::Failed);
    assert!(status.error.unwrap().contains("corrupt"));
    // Not cached: once the file is fixed the next request loads it.
    std::fs::write(dir.join("model.safetensors"), good).unwrap();
    one(&m, "flaky", None);
    assert_eq!(m.model_status("flaky").unwrap().state, LoadState::Loaded);
}

#[test]
fn stress_more_models_than_fit_no_deadlock_budget_kept_answers_correct() {
    let probe = manager(ManagerConfig::default());
    one(&probe, "tiny-bert", None);
    let budget = probe.stats().unwrap().bytes_in_use * 3;
    let m = Arc::new(manager(fast(ManagerConfig {
        max_memory: Some(budget),
        max_models: 4,
        ..Default::default()
    })));
    let expected: Vec<(String, Vec<String>, Vec<Vec<f32>>)> = KINDS
        .iter()
        .map(|k| {
            let e = json(tiny(k).join("expected.json"));
            (
                format!("tiny-{k}"),
                strings(&e["texts"]),
                rows(&e["normalized"]),
            )
        })
        .collect();
    let expected = Arc::new(expected);
    let stop = Arc::new(AtomicBool::new(false));
    let over_budget = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (m, stop, over) = (m.clone(), stop.clone(), over_budget.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if m.stats().unwrap().bytes_in_use > budget {
                    over.store(true, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    let workers: Vec<_> = (0..6)
        .map(|t| {
            let (m, expected) = (m.clone(), expected.clone());
            std::thread::spawn(move || {
                let mut n = 0usize;
                let mut i = t;
                while Instant::now() < deadline {
                    let (id, texts, want) = &expected[i % 3];
                    let dtype = DType::ALL[(i / 3) % 4];
                    let j = i % texts.len();
                    let out = m
                        .embed(
                            Some(id),
                            Some(dtype),
                            &texts[j..=j],
                            &EmbedOptions::default(),
                        )
                        .unwrap_or_else(|e| panic!("{id} {dtype}: {e}"));
                    let c = cosine(out.row(0), &want[j]);
                    assert!(c > 0.999, "{id} {dtype} text {j}: cosine {c}");
                    n += 1;
                    i += 7;
                }
                n
            })
        })
        .collect();
    let total: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    stop.store(true, Ordering::SeqCst);
    watcher.join().unwrap();
    assert!(total > 50, "only {total} requests answered");
    assert!(
        !over_budget.load(Ordering::SeqCst),
        "the budget was exceeded"
    );
    let s = m.stats().unwrap();
    assert!(s.evictions.memory + s.evictions.lru > 0, "{s:?}");
}

#[test]
fn a_loaded_directory_states_the_facts_its_files_declare() {
    // A directory id has no catalog facts until a copy is loaded; then its status states what
    // the files say (config.json, 1_Pooling, config_sentence_transformers.json).
    let m = manager(ManagerConfig::default());
    let dir = tiny("qwen3");
    let id = dir.to_str().unwrap();
    let before = m.model_status(id).unwrap().spec;
    assert_eq!((before.architecture.as_str(), before.dimension), ("", 0));
    assert!(before.prompts.is_empty());
    one(&m, id, None);
    let after = m.model_status(id).unwrap().spec;
    assert_eq!(
        after.architecture,
        json(dir.join("config.json"))["model_type"]
    );
    let pooling = json(dir.join("1_Pooling/config.json"));
    assert_eq!(after.dimension, pooling["word_embedding_dimension"]);
    assert_eq!(pooling["pooling_mode_lasttoken"], true);
    assert_eq!(after.pooling, ember_core::Pooling::LastToken);
    let st = json(dir.join("config_sentence_transformers.json"));
    assert_eq!(after.prompts["query"], st["prompts"]["query"]);
    assert!(after.max_seq_length > 0);
    // The listing says the same.
    let listed = m.status().unwrap();
    let entry = listed.iter().find(|s| s.spec.id == id).unwrap();
    assert_eq!(entry.spec.architecture, after.architecture);
    // A catalog entry that states its architecture keeps its own facts.
    let mut stated = ModelSpec::for_path("stated", &tiny("bert"));
    stated.architecture = "bert".into();
    stated
        .prompts
        .insert("catalog".into(), "from the catalog: ".into());
    let mut reg = registry(&[]);
    reg.register(stated).unwrap();
    let m = ModelManager::with_config(reg, Resolver::from_env(), ManagerConfig::default());
    one(&m, "stated", None);
    let spec = m.model_status("stated").unwrap().spec;
    assert_eq!(spec.prompts.keys().collect::<Vec<_>>(), ["catalog"]);
}
