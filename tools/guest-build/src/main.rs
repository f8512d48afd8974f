//! `guest-build`: the two steps of building a C guest module that would otherwise need
//! the `wit-bindgen` and `wasm-tools` CLIs (minutes each to `cargo install`), plus a look
//! at what a built component imports.
//!
//! - `c-bindings WIT_DIR WORLD OUT_DIR` writes `<world>.h`, `<world>.c` and
//!   `<world>_component_type.o` (the world's type, linked into the core module so that
//!   componentizing knows which WIT it implements).
//! - `componentize CORE.wasm OUT.wasm` wraps a core module into a component, adapting
//!   `wasi_snapshot_preview1` imports (what wasi-libc calls) to WASI 0.2 with the reactor
//!   adapter shipped by the host's wasmtime version. It validates the result.
//! - `imports COMPONENT.wasm` prints the interfaces a component imports and exports, one
//!   per line, so a build can check that a module asks for nothing it should not.
//!
//! It knows nothing of the host, nor of any particular module.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};
use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};
use wit_bindgen_core::Files;
use wit_bindgen_core::wit_parser::{Resolve, WorldItem, WorldKey};
use wit_component::{ComponentEncoder, DecodedWasm};

const USAGE: &str = "usage:
  guest-build c-bindings WIT_DIR WORLD OUT_DIR
  guest-build componentize CORE.wasm OUT.wasm
  guest-build imports COMPONENT.wasm";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(error) = run(&args) {
        eprintln!("guest-build: {error:#}");
        std::process::exit(1);
    }
}

fn run(args: &[String]) -> Result<()> {
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["c-bindings", wit, world, out] => c_bindings(Path::new(wit), world, Path::new(out)),
        ["componentize", core, out] => componentize(Path::new(core), Path::new(out)),
        ["imports", component] => print_interfaces(Path::new(component)),
        _ => bail!("{USAGE}"),
    }
}

/// What `wit-bindgen c --world WORLD WIT_DIR --out-dir OUT_DIR` does.
fn c_bindings(wit: &Path, world: &str, out: &Path) -> Result<()> {
    let mut resolve = Resolve::default();
    let (package, _sources) = resolve
        .push_path(wit)
        .with_context(|| format!("reading WIT from {}", wit.display()))?;
    let world_id = resolve.select_world(&[package], Some(world))?;
    let mut files = Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world_id, &mut files)
        .context("generating C bindings")?;
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for (name, contents) in files.iter() {
        let path = out.join(name);
        fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// What `wasm-tools component new CORE --adapt wasi_snapshot_preview1=<reactor> -o OUT`
/// does. The adapter is only embedded when the module imports `wasi_snapshot_preview1`.
fn componentize(core: &Path, out: &Path) -> Result<()> {
    let module = read(core)?;
    let mut encoder = ComponentEncoder::default();
    encoder
        .module(&module)
        .context("reading the core module's component type")?;
    encoder.validate(true);
    if imports_wasi_preview1(&module) {
        encoder
            .adapter(
                WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
                WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
            )
            .context("loading the WASI preview1 adapter")?;
    }
    let component = encoder
        .encode()
        .with_context(|| format!("componentizing {}", core.display()))?;
    fs::write(out, component).with_context(|| format!("writing {}", out.display()))
}

/// A cheap check on the raw bytes: an import's module name is stored verbatim.
fn imports_wasi_preview1(module: &[u8]) -> bool {
    let needle = WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME.as_bytes();
    module.windows(needle.len()).any(|window| window == needle)
}

fn print_interfaces(component: &Path) -> Result<()> {
    let bytes = read(component)?;
    let decoded = wit_component::decode(&bytes)
        .with_context(|| format!("{} is not a component", component.display()))?;
    let DecodedWasm::Component(resolve, world) = decoded else {
        bail!("{} is a WIT package, not a component", component.display());
    };
    let world = &resolve.worlds[world];
    // Types a world `use`s show up as imports too; only interfaces and functions matter.
    let named = |(key, item): (&WorldKey, &WorldItem)| {
        (!matches!(item, WorldItem::Type { .. })).then(|| resolve.name_world_key(key))
    };
    for name in world.imports.iter().filter_map(named) {
        println!("import {name}");
    }
    for name in world.exports.iter().filter_map(named) {
        println!("export {name}");
    }
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("reading {}", path.display()))
}
