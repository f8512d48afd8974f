//! System identity: `machine_type` from the kernel's architecture name, and the
//! one-line files of `/proc/sys/kernel`. Pure.

/// gmond names the architecture it was compiled for (`x86`, `x86_64`, `ia64`,
/// `sparc`, `alpha`, `powerpc`, `m68k`, `mips`, `arm`, `hppa`, `s390`). A wasm
/// module has no such thing, so it maps the kernel's name (`uname -m`, from
/// `/proc/sys/kernel/arch`) onto gmond's; an architecture gmond has no name for
/// (gmond reports an empty string there) keeps the kernel's name.
pub fn machine_type(kernel_arch: &str) -> String {
    let arch = kernel_arch.trim();
    let gmond_name = match arch {
        "i386" | "i486" | "i586" | "i686" => "x86",
        "x86_64" => "x86_64",
        "ia64" => "ia64",
        "alpha" => "alpha",
        "m68k" => "m68k",
        _ if arch.starts_with("sparc") => "sparc",
        _ if arch.starts_with("ppc") || arch.starts_with("powerpc") => "powerpc",
        _ if arch.starts_with("mips") => "mips",
        _ if arch.starts_with("arm") => "arm",
        _ if arch.starts_with("parisc") => "hppa",
        _ if arch.starts_with("s390") => "s390",
        _ => arch,
    };
    gmond_name.to_string()
}

/// The first line of a one-value file such as `/proc/sys/kernel/osrelease`.
pub fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default().trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_kernel_architectures_to_gmond_names() {
        assert_eq!(machine_type("x86_64\n"), "x86_64");
        assert_eq!(machine_type("i686\n"), "x86");
        assert_eq!(machine_type("ppc64le\n"), "powerpc");
        assert_eq!(machine_type("armv7l\n"), "arm");
        assert_eq!(machine_type("s390x\n"), "s390");
        assert_eq!(machine_type("aarch64\n"), "aarch64");
    }

    #[test]
    fn takes_the_first_line() {
        assert_eq!(first_line("6.18.44-fc-v669\n"), "6.18.44-fc-v669");
        assert_eq!(first_line(""), "");
    }
}
