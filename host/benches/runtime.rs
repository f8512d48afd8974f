//! Runtime costs: one handler call of a Rust guest returning a double (fuel and
//! deadline bookkeeping included), instantiation plus `init`, and loading a module
//! with and without the compile cache.

use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use wasmond::runtime::{Runtime, RuntimeConfig, Sandbox};
use wasmond_test_guests as guests;

fn runtime(cache_dir: Option<&Path>) -> Runtime {
    let config = RuntimeConfig {
        cache_dir: cache_dir.map(Path::to_path_buf),
        ..RuntimeConfig::default()
    };
    Runtime::new(config).unwrap()
}

fn handler_call(c: &mut Criterion) {
    let module = runtime(None)
        .load("example", Path::new(guests::EXAMPLE), Sandbox::default())
        .unwrap();
    let mut instance = module.start(Vec::new()).unwrap();
    c.bench_function("handler call (double)", |b| {
        b.iter(|| instance.handle("example_double").unwrap())
    });
}

fn instantiation(c: &mut Criterion) {
    let module = runtime(None)
        .load("example", Path::new(guests::EXAMPLE), Sandbox::default())
        .unwrap();
    c.bench_function("instantiate + init + cleanup", |b| {
        b.iter(|| module.start(Vec::new()).unwrap().cleanup().unwrap())
    });
}

fn load(c: &mut Criterion) {
    let wasm = Path::new(guests::EXAMPLE);
    let mut group = c.benchmark_group("load example");
    group.sample_size(20);
    let uncached = runtime(None);
    group.bench_function("uncached (compile)", |b| {
        b.iter(|| uncached.load("example", wasm, Sandbox::default()).unwrap())
    });
    let cache = tempfile::TempDir::new().unwrap();
    let cached = runtime(Some(cache.path()));
    cached.load("example", wasm, Sandbox::default()).unwrap();
    group.bench_function("cached (deserialize)", |b| {
        b.iter(|| cached.load("example", wasm, Sandbox::default()).unwrap())
    });
    group.finish();
}

criterion_group!(benches, handler_call, instantiation, load);
criterion_main!(benches);
