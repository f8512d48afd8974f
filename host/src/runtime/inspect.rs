//! What compiling a component would cost, read from its bytes before Cranelift sees
//! them.
//!
//! Cranelift's time and memory grow with the number of functions it compiles and, faster
//! than linearly, with the size of the largest one: a "compile bomb" (tens of thousands of
//! functions, or one enormous function) held healthy modules' first values back for
//! seconds and drove the daemon to a gigabyte. So a component is measured first — a walk
//! over its sections that outlines each function body without parsing it, over every core
//! module nested in it — and refused with the cap it crosses, before anything is compiled.
//! The caps leave room for the largest guest wasmond bundles, the Python interpreter.

use std::path::Path;

use wasmparser::{Parser, Payload};

use super::error::LoadError;

/// Functions defined by all the core modules of one component. The bundled Python
/// interpreter defines 13 369.
pub const MAX_FUNCTIONS: u64 = 50_000;
/// Bytes of one function's body. The largest of the Python interpreter's (its bytecode
/// loop) has 426 843.
pub const MAX_FUNCTION_BYTES: u64 = 1 << 20;
/// Bytes of code (function bodies) of all the core modules of one component. The Python
/// interpreter has 6.5 MB.
pub(crate) const MAX_CODE_BYTES: u64 = 32 << 20;

/// The code a component holds, over all its nested core modules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CodeSize {
    pub functions: u64,
    pub largest_function: u64,
    pub code_bytes: u64,
}

/// Measures the code of the component in `bytes`.
pub(crate) fn code_size(bytes: &[u8]) -> Result<CodeSize, String> {
    let mut size = CodeSize::default();
    for payload in Parser::new(0).parse_all(bytes) {
        if let Payload::CodeSectionEntry(body) = payload.map_err(|e| e.to_string())? {
            let len = body.range().len() as u64;
            size.functions += 1;
            size.code_bytes += len;
            size.largest_function = size.largest_function.max(len);
        }
    }
    Ok(size)
}

/// Refuses a component whose code crosses a cap, naming the file and the cap.
pub(crate) fn check(path: &Path, bytes: &[u8]) -> Result<CodeSize, LoadError> {
    let size = code_size(bytes).map_err(|message| LoadError::Compile {
        path: path.to_path_buf(),
        message,
    })?;
    let over = |what: &'static str, found: u64, max: u64| LoadError::OverBudget {
        path: path.to_path_buf(),
        what,
        found,
        max,
    };
    if size.functions > MAX_FUNCTIONS {
        return Err(over("functions", size.functions, MAX_FUNCTIONS));
    }
    if size.largest_function > MAX_FUNCTION_BYTES {
        return Err(over(
            "bytes in one function",
            size.largest_function,
            MAX_FUNCTION_BYTES,
        ));
    }
    if size.code_bytes > MAX_CODE_BYTES {
        return Err(over("bytes of code", size.code_bytes, MAX_CODE_BYTES));
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component of one core module with `functions` functions of `body` each.
    fn component(functions: usize, body: &str) -> Vec<u8> {
        let funcs = format!("(func {body})").repeat(functions);
        wat::parse_str(format!(
            "(component (core module {funcs}) (core module (func)))"
        ))
        .unwrap()
    }

    #[test]
    fn functions_of_every_nested_module_are_counted() {
        let size = code_size(&component(3, "nop")).unwrap();
        assert_eq!(size.functions, 4);
        assert!(size.largest_function >= 2, "{size:?}");
    }

    #[test]
    fn a_component_over_a_cap_is_refused_naming_the_file_and_the_cap() {
        let path = Path::new("/m/bomb.wasm");
        let many = component(MAX_FUNCTIONS as usize, "");
        let error = check(path, &many).unwrap_err().to_string();
        assert_eq!(
            error,
            format!(
                "/m/bomb.wasm has {} functions, over the cap of {MAX_FUNCTIONS}: refused before compiling",
                MAX_FUNCTIONS + 1
            )
        );
        let huge = component(1, &"i32.const 0 drop ".repeat(400_000));
        let error = check(path, &huge).unwrap_err().to_string();
        assert!(
            error.contains(
                "bytes in one function, over the cap of 1048576: refused before compiling"
            ),
            "{error}"
        );
        check(path, &component(10, "nop")).unwrap();
    }
}
