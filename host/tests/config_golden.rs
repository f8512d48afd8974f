//! Golden tests for the config loader: every `tests/config/<case>.conf` is loaded
//! and compared with `<case>.json` (the typed config and its warnings) or
//! `<case>.err` (the error text). `BLESS=1` writes the expectations instead.
//! Paths in the output are relative to `tests/config/`, so snapshots do not
//! depend on where the repository is checked out.

use std::fs;
use std::path::{Path, PathBuf};

use wasmond::config::load;

fn cases_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/config");
    fs::canonicalize(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

/// The output of loading one case: (extension of the expectation, its text).
fn render(case: &Path, dir: &Path) -> (&'static str, String) {
    let prefix = format!("{}/", dir.display());
    match load(case) {
        Ok(loaded) => {
            let json = serde_json::to_string_pretty(&loaded).expect("a config serializes");
            ("json", json.replace(&prefix, "") + "\n")
        }
        Err(errors) => ("err", errors.to_string().replace(&prefix, "") + "\n"),
    }
}

#[test]
fn config_cases_match_their_expected_output() {
    let dir = cases_dir();
    let bless = std::env::var_os("BLESS").is_some();
    let mut cases: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 10,
        "expected the config cases in {}",
        dir.display()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let (ext, actual) = render(case, &dir);
        let expected_path = case.with_extension(ext);
        let other_path = case.with_extension(if ext == "json" { "err" } else { "json" });
        if bless {
            fs::write(&expected_path, &actual).unwrap();
            let _ = fs::remove_file(&other_path);
            continue;
        }
        match fs::read_to_string(&expected_path) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures.push(format!(
                "{}: output differs\n--- expected\n{expected}\n--- actual\n{actual}",
                case.display()
            )),
            Err(_) if other_path.exists() => failures.push(format!(
                "{}: expected {}, got:\n{actual}",
                case.display(),
                other_path.display()
            )),
            Err(_) => failures.push(format!(
                "{}: no {} (run with BLESS=1); got:\n{actual}",
                case.display(),
                expected_path.display()
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} config cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

/// The acceptance case: errors on several lines each name file:line:col.
#[test]
fn several_syntax_errors_are_each_reported_with_their_position() {
    let dir = cases_dir();
    let errors = load(dir.join("errors_syntax.conf")).unwrap_err();
    let lines: Vec<u32> = errors.0.iter().map(|e| e.at.line).collect();
    assert!(lines.len() >= 4, "{errors}");
    assert!(
        lines.windows(2).all(|w| w[0] < w[1]),
        "one error per line, in order: {errors}"
    );
    for line in errors.to_string().lines() {
        assert!(
            line.starts_with(&format!("{}/errors_syntax.conf:", dir.display())),
            "{line}"
        );
    }
}
