//! The engine with scripted modules and paused time: schedules, thresholds, titles,
//! ownership, backoff, reload and shutdown, exact to the (virtual) second.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ShutdownReport;
use super::driver::{Failure, ModuleDriver};
use super::engine::spawn_with_timer;
use super::host_module::HostFacts;
use super::ownership::{Policy, TenantPolicy};
use super::select::{Collect, EntrySpec, GroupSpec, Selector};
use super::timer::WakeTimer;
use super::{
    CallBounds, EngineConfig, EngineHandle, HostIdentity, ModuleSpec, ModuleState, Outputs,
};
use crate::metric::{MetricDescriptor, MetricValue, SendRequest, Slope, ValueType};
use crate::store::{Store, StoreConfig};

const SEC: Duration = Duration::from_secs(1);

/// What the scripted modules did, in order: "name:start", "name:handle:metric", ...
type Journal = Arc<Mutex<Vec<String>>>;

/// A module whose metrics answer from a shared table; `fail_starts` inits fail first,
/// and a metric whose value is missing from the table traps.
struct Scripted {
    name: String,
    metrics: Vec<&'static str>,
    values: Arc<Mutex<HashMap<String, MetricValue>>>,
    fail_starts: u32,
    journal: Journal,
}

impl ModuleDriver for Scripted {
    fn start(&mut self) -> Result<Vec<MetricDescriptor>, Failure> {
        self.journal
            .lock()
            .unwrap()
            .push(format!("{}:start", self.name));
        if self.fail_starts > 0 {
            self.fail_starts -= 1;
            return Err(Failure::error(format!(
                "module {}: init: not yet",
                self.name
            )));
        }
        Ok(self.metrics.iter().map(|name| descriptor(name)).collect())
    }

    fn handle(&mut self, metric: &str) -> Result<MetricValue, Failure> {
        self.journal
            .lock()
            .unwrap()
            .push(format!("{}:handle:{metric}", self.name));
        match self.values.lock().unwrap().get(metric) {
            Some(value) => Ok(value.clone()),
            None => Err(Failure::trap(format!(
                "module {}: handler of metric {metric}: trap",
                self.name
            ))),
        }
    }

    fn cleanup(&mut self) {
        self.journal
            .lock()
            .unwrap()
            .push(format!("{}:cleanup", self.name));
    }
}

fn descriptor(name: &str) -> MetricDescriptor {
    MetricDescriptor {
        name: name.into(),
        value_type: ValueType::Double,
        units: "u".into(),
        slope: Slope::Both,
        format: "%.1f".into(),
        time_max: 60,
        description: format!("{name} desc"),
        groups: vec!["test".into()],
        extra: Vec::new(),
    }
}

struct Harness {
    values: Arc<Mutex<HashMap<String, MetricValue>>>,
    journal: Journal,
    store: Arc<Store>,
    sends: mpsc::Receiver<SendRequest>,
    handle: EngineHandle,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<ShutdownReport>,
    start: Instant,
}

struct ModuleDef {
    name: &'static str,
    metrics: Vec<&'static str>,
    fail_starts: u32,
    fingerprint: &'static str,
    /// Run on its own worker thread, as wasm modules do, rather than inline.
    threaded: bool,
}

fn module(name: &'static str, metrics: &[&'static str]) -> ModuleDef {
    ModuleDef {
        name,
        metrics: metrics.to_vec(),
        fail_starts: 0,
        fingerprint: "v1",
        threaded: false,
    }
}

fn every(seconds: u32, time_threshold: u32, entries: Vec<EntrySpec>) -> GroupSpec {
    GroupSpec {
        collect: Collect::Every(seconds * SEC),
        time_threshold: time_threshold * SEC,
        entries,
    }
}

fn by_name(name: &str, value_threshold: Option<f64>) -> EntrySpec {
    EntrySpec {
        selector: Selector::name(name, None),
        value_threshold,
    }
}

fn config(
    groups: Vec<GroupSpec>,
    modules: Vec<ModuleDef>,
    values: &Arc<Mutex<HashMap<String, MetricValue>>>,
    journal: &Journal,
) -> EngineConfig {
    let modules = modules
        .into_iter()
        .map(|def| ModuleSpec {
            name: def.name.into(),
            fingerprint: def.fingerprint.into(),
            bounds: CallBounds {
                init: SEC,
                handler: SEC,
                cleanup: SEC,
            },
            driver: Box::new(Scripted {
                name: def.name.into(),
                metrics: def.metrics,
                values: values.clone(),
                fail_starts: def.fail_starts,
                journal: journal.clone(),
            }),
            inline: !def.threaded,
        })
        .collect();
    EngineConfig {
        host: HostIdentity {
            name: "testhost".into(),
            ip: "127.0.0.1".into(),
        },
        facts: HostFacts {
            started: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            location: "rack9".into(),
        },
        groups,
        modules,
        send_metadata_interval: None,
        policy: Default::default(),
    }
}

fn harness(groups: Vec<GroupSpec>, modules: Vec<ModuleDef>, values: &[(&str, f64)]) -> Harness {
    harness_with(groups, modules, values, Policy::default())
}

fn harness_with(
    groups: Vec<GroupSpec>,
    modules: Vec<ModuleDef>,
    values: &[(&str, f64)],
    policy: Policy,
) -> Harness {
    let values: HashMap<String, MetricValue> = values
        .iter()
        .map(|(name, v)| (name.to_string(), MetricValue::Double(*v)))
        .collect();
    let values = Arc::new(Mutex::new(values));
    let journal = Journal::default();
    let store = Arc::new(Store::new(StoreConfig::for_tests("c")));
    let (sink, sends) = mpsc::channel(1024);
    let shutdown = CancellationToken::new();
    let outputs = Outputs {
        store: store.clone(),
        sink: Some(sink),
        network: None,
    };
    let engine_config = EngineConfig {
        policy,
        ..config(groups, modules, &values, &journal)
    };
    // tokio's paused clock drives these tests: the engine sleeps on tokio's timer.
    let (handle, task) =
        spawn_with_timer(engine_config, outputs, shutdown.clone(), WakeTimer::Tokio);
    Harness {
        values,
        journal,
        store,
        sends,
        handle,
        shutdown,
        task,
        start: Instant::now(),
    }
}

impl Harness {
    fn set(&self, metric: &str, value: f64) {
        self.values
            .lock()
            .unwrap()
            .insert(metric.into(), MetricValue::Double(value));
    }

    /// The next send of the test's own metrics (the accounting metrics are left out):
    /// (seconds since start, names sent, names sent with metadata).
    async fn next_send(&mut self) -> (u64, Vec<String>, Vec<String>) {
        loop {
            let request = self.sends.recv().await.expect("the engine is running");
            let at = Instant::now().duration_since(self.start).as_secs();
            let metrics: Vec<_> = request
                .metrics
                .iter()
                .filter(|m| !m.name.starts_with("wasmond_"))
                .collect();
            if metrics.is_empty() {
                continue;
            }
            let names = metrics.iter().map(|m| m.name.to_string()).collect();
            let with_meta = metrics
                .iter()
                .filter(|m| m.metadata.is_some())
                .map(|m| m.name.to_string())
                .collect();
            return (at, names, with_meta);
        }
    }

    /// Every send of the test's own metrics until `until` seconds after the start, the
    /// sends of one second together: (second, names).
    async fn sends_until(&mut self, until: u32) -> Vec<(u64, Vec<String>)> {
        let end = self.start + until * SEC;
        let mut sends: Vec<(u64, Vec<String>)> = Vec::new();
        loop {
            tokio::select! {
                request = self.sends.recv() => {
                    let request = request.expect("the engine is running");
                    let at = Instant::now().duration_since(self.start).as_secs();
                    let names = request.metrics.iter().map(|m| m.name.to_string()).filter(|n| !n.starts_with("wasmond_"));
                    match sends.last_mut() {
                        Some((second, sent)) if *second == at => sent.extend(names),
                        _ => sends.push((at, names.collect())),
                    }
                    sends.retain(|(_, sent)| !sent.is_empty());
                }
                () = tokio::time::sleep_until(end) => return sends,
            }
        }
    }

    fn journal(&self) -> Vec<String> {
        self.journal.lock().unwrap().clone()
    }

    async fn stop(self) -> ShutdownReport {
        self.shutdown.cancel();
        self.task.await.unwrap()
    }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(start_paused = true)]
async fn collect_every_and_time_threshold_drive_the_sends() {
    let groups = vec![every(10, 30, vec![by_name("a", None), by_name("b", None)])];
    let mut h = harness(
        groups,
        vec![module("m", &["a", "b"])],
        &[("a", 1.0), ("b", 2.0)],
    );
    assert_eq!(
        h.next_send().await,
        (0, names(&["a", "b"]), names(&["a", "b"])),
        "metadata first time"
    );
    assert_eq!(
        h.sends_until(65).await,
        [(30, names(&["a", "b"])), (60, names(&["a", "b"]))]
    );
    let handles = h
        .journal()
        .iter()
        .filter(|line| *line == "m:handle:a")
        .count();
    assert_eq!(handles, 7, "collected at 0, 10, ..., 60");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn value_threshold_sends_the_group_early_and_values_reach_the_store() {
    let groups = vec![every(
        5,
        3600,
        vec![by_name("load", Some(1.0)), by_name("other", None)],
    )];
    let mut h = harness(
        groups,
        vec![module("m", &["load", "other"])],
        &[("load", 0.5), ("other", 7.0)],
    );
    assert_eq!(h.next_send().await.0, 0);
    tokio::time::sleep(7 * SEC).await;
    h.set("load", 1.4);
    tokio::time::sleep(5 * SEC).await;
    h.set("load", 2.4);
    let (at, sent, with_meta) = h.next_send().await;
    assert_eq!(
        (at, sent, with_meta),
        (15, names(&["load", "other"]), vec![]),
        "0.9 at 10 s no, 1.0 at 15 s yes"
    );
    let host = h
        .store
        .host("testhost")
        .expect("the engine writes its host");
    let load = host.metrics.iter().find(|m| m.name == "load").unwrap();
    assert_eq!(
        load.sample.as_ref().unwrap().value,
        MetricValue::Double(2.4)
    );
    assert_eq!(load.meta.as_ref().unwrap().title(), Some("load"));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn collect_once_collects_once_and_resends_every_time_threshold() {
    let groups = vec![GroupSpec {
        collect: Collect::Once,
        time_threshold: 20 * SEC,
        entries: vec![by_name("heartbeat", None), by_name("cpu_num", None)],
    }];
    let mut h = harness(groups, vec![module("m", &["cpu_num"])], &[("cpu_num", 4.0)]);
    let sends = h.sends_until(45).await;
    assert_eq!(
        sends,
        [
            (0, names(&["heartbeat", "cpu_num"])),
            (20, names(&["heartbeat", "cpu_num"])),
            (40, names(&["heartbeat", "cpu_num"]))
        ]
    );
    assert_eq!(
        h.journal().iter().filter(|l| l.contains("handle")).count(),
        1
    );
    let host = h.store.host("testhost").unwrap();
    assert_eq!(
        host.gmond_started, 1_700_000_000,
        "heartbeat sets GMOND_STARTED"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn name_match_titles_reach_the_metadata() {
    let entry = EntrySpec {
        selector: Selector::name_match("^multicpu_([a-z]+)([0-9]+)$", Some("CPU-\\2 \\1")).unwrap(),
        value_threshold: None,
    };
    let mut h = harness(
        vec![every(10, 60, vec![entry])],
        vec![module("mc", &["multicpu_idle0", "multicpu_user1"])],
        &[("multicpu_idle0", 90.0), ("multicpu_user1", 3.0)],
    );
    let request = h.sends.recv().await.unwrap();
    let titles: Vec<_> = request
        .metrics
        .iter()
        .map(|m| m.metadata.as_ref().unwrap().title().unwrap().to_string())
        .collect();
    assert_eq!(titles, ["CPU-0 idle", "CPU-1 user"]);
    h.stop().await;
}

fn running_metrics(state: &ModuleState) -> Vec<String> {
    match state {
        ModuleState::Running { metrics } => metrics.iter().map(|m| m.name.clone()).collect(),
        other => panic!("not running: {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_clash_refuses_only_the_clashing_metric_of_the_later_module() {
    let groups = vec![every(
        10,
        60,
        vec![by_name("shared", None), by_name("b_only", None)],
    )];
    let h = harness(
        groups,
        vec![module("a", &["shared"]), module("b", &["b_only", "shared"])],
        &[("shared", 1.0), ("b_only", 2.0)],
    );
    tokio::time::sleep(SEC).await;
    let status = h.handle.status().await.unwrap();
    assert_eq!(running_metrics(&status.modules["a"]), ["shared"]);
    assert_eq!(running_metrics(&status.modules["b"]), ["b_only"]);
    let journal = h.journal();
    assert!(
        journal.contains(&"b:handle:b_only".to_string()),
        "{journal:?}"
    );
    assert!(
        !journal.contains(&"b:handle:shared".to_string()),
        "{journal:?}"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_module_declared_first_wins_even_when_it_starts_last() {
    let groups = vec![every(10, 60, vec![by_name("shared", None)])];
    let late_first = ModuleDef {
        fail_starts: 1,
        ..module("a", &["shared"])
    };
    let h = harness(
        groups,
        vec![late_first, module("b", &["b_only", "shared"])],
        &[("shared", 1.0), ("b_only", 2.0)],
    );
    tokio::time::sleep(SEC / 2).await;
    let status = h.handle.status().await.unwrap();
    assert_eq!(
        running_metrics(&status.modules["b"]),
        ["b_only", "shared"],
        "b holds the name while a, whose first start failed, is not running"
    );
    tokio::time::sleep(SEC).await;
    let status = h.handle.status().await.unwrap();
    assert_eq!(running_metrics(&status.modules["a"]), ["shared"]);
    assert_eq!(
        running_metrics(&status.modules["b"]),
        ["b_only"],
        "b loses only the clashing name"
    );
    let report = h.stop().await;
    assert_eq!(report.cleaned_up, ["a", "b", "wasmond"]);
}

fn acme(modules: &[&str], groups: Vec<Option<usize>>) -> Policy {
    Policy {
        tenants: vec![TenantPolicy {
            name: "acme".into(),
            name_prefix: None,
            max_metrics: 100,
            cpu_per_minute: 60 * SEC,
        }],
        modules: modules.iter().map(|m| (m.to_string(), 0)).collect(),
        groups,
    }
}

#[tokio::test(start_paused = true)]
async fn a_tenant_declared_first_never_publishes_a_name_of_the_operator() {
    let groups = vec![every(
        10,
        60,
        vec![
            by_name("load_one", None),
            by_name("acme_x", None),
            by_name("cpu", None),
        ],
    )];
    // The tenant's module starts first and asks for the operator's name.
    let h = harness_with(
        groups,
        vec![
            module("squat", &["load_one", "acme_x"]),
            module("core", &["load_one", "cpu"]),
        ],
        &[("load_one", 1.0), ("acme_x", 2.0), ("cpu", 3.0)],
        acme(&["squat"], vec![None]),
    );
    tokio::time::sleep(SEC).await;
    let status = h.handle.status().await.unwrap();
    assert_eq!(
        running_metrics(&status.modules["core"]),
        ["load_one", "cpu"]
    );
    assert_eq!(running_metrics(&status.modules["squat"]), ["acme_x"]);
    let journal = h.journal();
    assert!(
        journal.contains(&"core:handle:load_one".to_string()),
        "{journal:?}"
    );
    assert!(
        !journal.contains(&"squat:handle:load_one".to_string()),
        "nothing of the loser's is ever collected, so never sent: {journal:?}"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_tenant_group_selects_only_its_tenant_s_metrics_and_its_accounting_is_published() {
    let all = EntrySpec {
        selector: Selector::name_match(".*", Some("pwned")).unwrap(),
        value_threshold: None,
    };
    let groups = vec![every(10, 60, vec![all])];
    let h = harness_with(
        groups,
        vec![module("core", &["load_one"]), module("mine", &["acme_x"])],
        &[("load_one", 1.0), ("acme_x", 2.0)],
        acme(&["mine"], vec![Some(0)]),
    );
    tokio::time::sleep(SEC).await;
    let status = h.handle.status().await.unwrap();
    let selected: Vec<String> = status.groups[0]
        .metrics
        .iter()
        .map(|m| m.key.metric.to_string())
        .collect();
    assert_eq!(selected, ["acme_x"]);
    let host = running_metrics(&status.modules["wasmond"]);
    assert!(
        host.contains(&"wasmond_tenant_acme_calls".to_string()),
        "{host:?}"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn failed_init_is_retried_with_backoff_then_collected() {
    let groups = vec![every(1, 3600, vec![by_name("late", None)])];
    let slow = ModuleDef {
        fail_starts: 3,
        ..module("slow", &["late"])
    };
    let mut h = harness(groups, vec![slow], &[("late", 5.0)]);
    // Starts at 0 (fails), 1 (fails), 3 (fails), 7 (succeeds): 1 s, 2 s, 4 s backoff.
    let (at, sent, _) = h.next_send().await;
    assert_eq!((at, sent), (7, names(&["late"])));
    assert_eq!(h.journal().iter().filter(|l| *l == "slow:start").count(), 4);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_trapping_module_is_backed_off_and_the_others_go_on() {
    let groups = vec![every(
        1,
        3600,
        vec![by_name("good", Some(0.0)), by_name("bad", Some(0.0))],
    )];
    let mut h = harness(
        groups,
        vec![module("g", &["good"]), module("b", &["bad"])],
        &[("good", 1.0)],
    );
    let sends = h.sends_until(10).await;
    assert_eq!(sends.len(), 10, "good is sent every second: {sends:?}");
    assert!(sends.iter().all(|(_, names)| names == &["good"]));
    // bad traps at 0, then is called again after 1, 2, 4 s of backoff: at 1, 3, 7.
    let calls: Vec<String> = h
        .journal()
        .into_iter()
        .filter(|l| l == "b:handle:bad")
        .collect();
    assert_eq!(calls.len(), 4, "{:?}", h.journal());
    h.set("bad", 3.0);
    let sends = h.sends_until(30).await;
    assert!(
        sends
            .iter()
            .any(|(_, names)| names.contains(&"bad".to_string())),
        "back after its backoff"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn reload_starts_added_stops_removed_restarts_changed_keeps_the_rest() {
    let groups = || {
        vec![every(
            10,
            60,
            vec![EntrySpec {
                selector: Selector::name_match(".", None).unwrap(),
                value_threshold: None,
            }],
        )]
    };
    let h = harness(
        groups(),
        vec![
            module("keep", &["k"]),
            module("drop", &["d"]),
            module("change", &["c"]),
        ],
        &[("k", 1.0), ("d", 2.0), ("c", 3.0), ("n", 4.0)],
    );
    tokio::time::sleep(SEC).await;
    h.journal.lock().unwrap().clear();
    let changed = ModuleDef {
        fingerprint: "v2",
        ..module("change", &["c"])
    };
    h.handle.reload(config(
        groups(),
        vec![module("keep", &["k"]), changed, module("new", &["n"])],
        &h.values,
        &h.journal,
    ));
    tokio::time::sleep(SEC).await;
    let journal = h.journal();
    let lifecycle: Vec<&String> = journal.iter().filter(|l| !l.contains(":handle:")).collect();
    assert_eq!(
        lifecycle,
        [
            "drop:cleanup",
            "change:cleanup",
            "change:start",
            "new:start"
        ]
    );
    let status = h.handle.status().await.unwrap();
    let running: Vec<&String> = status.modules.keys().collect();
    assert_eq!(running, ["change", "keep", "new", "wasmond"]);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_cleans_every_module_up() {
    let groups = vec![every(10, 60, vec![by_name("a", None)])];
    let h = harness(
        groups,
        vec![module("m1", &["a"]), module("m2", &["b"])],
        &[("a", 1.0)],
    );
    tokio::time::sleep(SEC).await;
    let journal = h.journal.clone();
    let report = h.stop().await;
    assert_eq!(report.cleaned_up, ["m1", "m2", "wasmond"]);
    assert!(report.timed_out.is_empty());
    assert!(
        journal
            .lock()
            .unwrap()
            .ends_with(&["m1:cleanup".to_string(), "m2:cleanup".to_string()])
    );
}

#[tokio::test(start_paused = true)]
async fn a_metadata_request_resends_metadata_at_once() {
    let groups = vec![every(10, 3600, vec![by_name("a", None)])];
    let mut h = harness(groups, vec![module("m", &["a"])], &[("a", 1.0)]);
    assert_eq!(h.next_send().await.2, names(&["a"]));
    tokio::time::sleep(3 * SEC).await;
    h.handle.resend_metadata(Some("a".into()));
    assert_eq!(
        h.next_send().await,
        (3, names(&["a"]), names(&["a"])),
        "the last value, with metadata"
    );
    assert_eq!(
        h.next_send().await,
        (3603, names(&["a"]), vec![]),
        "time_threshold counts from that send"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn accounting_metrics_are_published_by_the_builtin_group() {
    let mut h = harness(vec![], vec![module("m", &["a"])], &[("a", 1.0)]);
    let request = h.sends.recv().await.unwrap();
    let sent: Vec<String> = request.metrics.iter().map(|m| m.name.to_string()).collect();
    assert_eq!(
        sent,
        names(&[
            "wasmond_m_calls",
            "wasmond_m_errors",
            "wasmond_m_traps",
            "wasmond_m_traps_fuel",
            "wasmond_m_traps_deadline",
            "wasmond_m_traps_memory",
            "wasmond_m_traps_crash",
            "wasmond_m_errors_module",
            "wasmond_m_errors_invalid",
            "wasmond_m_errors_load",
            "wasmond_m_fuel",
            "wasmond_m_busy",
            "wasmond_m_memory"
        ])
    );
    h.stop().await;
}

/// What ganglia-web shows of the accounting metrics, read from the XML the store serves:
/// a title and a description each, rate units for the counters gmetad stores as RRD
/// COUNTERs (slope positive), and whole numbers (rrdtool takes no fraction for a COUNTER).
#[tokio::test(start_paused = true)]
async fn accounting_metrics_have_titles_descriptions_and_rate_units_in_the_xml() {
    let mut h = harness(vec![], vec![module("m", &["a"])], &[("a", 1.0)]);
    h.sends.recv().await.unwrap();
    let xml = String::from_utf8(crate::export::xml::document(
        &h.store,
        std::time::SystemTime::now(),
        0,
    ))
    .unwrap();
    let expected = [
        ("calls", "calls/s", "positive", "Module m calls"),
        ("errors", "errors/s", "positive", "Module m errors"),
        ("traps", "traps/s", "positive", "Module m traps"),
        ("fuel", "fuel/s", "positive", "Module m fuel burnt"),
        ("busy", "us/s", "positive", "Module m time in calls"),
        ("memory", "bytes", "both", "Module m peak memory"),
    ];
    for (suffix, units, slope, title) in expected {
        let name = format!("wasmond_m_{suffix}");
        let start = xml
            .find(&format!("<METRIC NAME=\"{name}\""))
            .unwrap_or_else(|| panic!("{name} not in\n{xml}"));
        let element = &xml[start..start + xml[start..].find("</METRIC>").unwrap()];
        let attr = |key: &str| {
            let from = element
                .find(&format!(" {key}=\""))
                .unwrap_or_else(|| panic!("{key}: {element}"));
            let value = &element[from + key.len() + 3..];
            value[..value.find('"').unwrap()].to_string()
        };
        assert_eq!(attr("UNITS"), units, "{element}");
        assert_eq!(attr("SLOPE"), slope, "{element}");
        assert!(
            attr("VAL").parse::<u64>().is_ok(),
            "a whole number: {element}"
        );
        assert!(
            element.contains(&format!("<EXTRA_ELEMENT NAME=\"TITLE\" VAL=\"{title}\"/>")),
            "{element}"
        );
        let desc = "<EXTRA_ELEMENT NAME=\"DESC\" VAL=\"Module m: ";
        assert!(element.contains(desc), "{element}");
    }
    h.stop().await;
}

/// Its start never ends (a compile or `init` far slower than any other module's).
struct SlowStart;

impl ModuleDriver for SlowStart {
    fn start(&mut self) -> Result<Vec<MetricDescriptor>, Failure> {
        std::thread::sleep(Duration::from_secs(3600));
        Err(Failure::error("started too late"))
    }
    fn handle(&mut self, _metric: &str) -> Result<MetricValue, Failure> {
        Err(Failure::error("never started"))
    }
    fn cleanup(&mut self) {}
}

#[tokio::test(start_paused = true)]
async fn an_earlier_module_slow_to_start_holds_a_healthy_ones_first_values_back_only_briefly() {
    let group = || vec![every(1, 3600, vec![by_name("good", Some(0.0))])];
    let mut h = harness(group(), Vec::new(), &[("good", 1.0)]);
    let slow = ModuleSpec {
        name: "slow".into(),
        fingerprint: "v1".into(),
        bounds: CallBounds {
            init: 3600 * SEC,
            handler: SEC,
            cleanup: SEC,
        },
        driver: Box::new(SlowStart),
        inline: false,
    };
    let mut next = config(group(), vec![module("g", &["good"])], &h.values, &h.journal);
    // Declared first, so `g` could lose names to it: `g` waits for it, but not for long.
    next.modules.insert(0, slow);
    h.handle.reload(next);
    let sends = h.sends_until(8).await;
    let first = sends.first().map(|(second, _)| *second);
    assert!(
        first.is_some_and(|second| second <= 4),
        "good first sent at {first:?}: {sends:?}"
    );
    assert!(sends.len() >= 4, "then every second: {sends:?}");
    h.stop().await;
}

/// Blocks in its first call until the test ends: a module no deadline can stop.
struct Wedged;

impl ModuleDriver for Wedged {
    fn start(&mut self) -> Result<Vec<MetricDescriptor>, Failure> {
        Ok(vec![descriptor("stuck")])
    }
    fn handle(&mut self, _metric: &str) -> Result<MetricValue, Failure> {
        std::thread::sleep(Duration::from_secs(3600));
        Err(Failure::trap("woke up"))
    }
    fn cleanup(&mut self) {}
}

#[tokio::test(start_paused = true)]
async fn a_wedged_module_is_skipped_and_abandoned_at_shutdown_within_its_bound() {
    let groups = vec![every(
        1,
        3600,
        vec![by_name("good", Some(0.0)), by_name("stuck", None)],
    )];
    let mut h = harness(groups, vec![module("g", &["good"])], &[("good", 1.0)]);
    let wedged = ModuleSpec {
        name: "wedged".into(),
        fingerprint: "v1".into(),
        bounds: CallBounds {
            init: SEC,
            handler: SEC,
            cleanup: SEC,
        },
        driver: Box::new(Wedged),
        inline: false,
    };
    let mut next = config(
        vec![every(
            1,
            3600,
            vec![by_name("good", Some(0.0)), by_name("stuck", None)],
        )],
        vec![module("g", &["good"])],
        &h.values,
        &h.journal,
    );
    next.modules.push(wedged);
    h.handle.reload(next);
    // The wedged thread starts for real; give it a moment of real time.
    for _ in 0..100 {
        let status = h.handle.status().await.unwrap();
        if matches!(
            status.modules.get("wedged"),
            Some(ModuleState::Running { .. })
        ) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
        tokio::task::yield_now().await;
    }
    let sends = h.sends_until(10).await;
    assert!(
        sends.len() >= 8,
        "good goes on while wedged never answers: {sends:?}"
    );
    let asked = Instant::now();
    let report = h.stop().await;
    assert_eq!(report.timed_out, ["wedged"]);
    assert!(
        Instant::now() - asked <= 3 * SEC,
        "bounded by its job: {:?}",
        Instant::now() - asked
    );
}

/// Regression: a module's worker thread once held 8 jobs at most, so a module in
/// more groups than that (core_metrics in the default config) lost the collections
/// of the last groups at start-up, when every group is due at once.
#[tokio::test]
async fn a_threaded_module_in_many_groups_has_every_group_collected_at_start() {
    const METRICS: [&str; 12] = [
        "g0", "g1", "g2", "g3", "g4", "g5", "g6", "g7", "g8", "g9", "g10", "g11",
    ];
    let groups = METRICS
        .iter()
        .map(|name| every(60, 3600, vec![by_name(name, None)]))
        .collect();
    let values: Vec<(&str, f64)> = METRICS.iter().map(|name| (*name, 1.0)).collect();
    let mut def = module("m", &METRICS);
    def.threaded = true;
    let mut h = harness(groups, vec![def], &values);
    let mut sent = std::collections::BTreeSet::new();
    let deadline = Instant::now() + 10 * SEC;
    while sent.len() < METRICS.len() {
        let (_, names, _) = tokio::time::timeout_at(deadline, h.next_send())
            .await
            .unwrap_or_else(|_| panic!("only {sent:?} sent"));
        sent.extend(names);
    }
    assert_eq!(sent, METRICS.iter().map(|name| name.to_string()).collect());
    h.stop().await;
}
