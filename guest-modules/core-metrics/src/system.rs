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

/// `machine_type` on kernels older than 6.1, which lack `/proc/sys/kernel/arch`:
/// what `/proc/cpuinfo` says of an x86 CPU (its `flags`, with `lm` for 64-bit long
/// mode) or a 64-bit ARM one (`CPU architecture: 8`); None for anything else.
pub fn machine_type_from_cpuinfo(cpuinfo: &str) -> Option<String> {
    let value_of = |key: &str| {
        cpuinfo
            .lines()
            .find(|line| line.split(':').next().is_some_and(|k| k.trim() == key))
            .and_then(|line| line.split_once(':'))
            .map(|(_, value)| value.trim())
    };
    if let Some(flags) = value_of("flags") {
        let long_mode = flags.split_whitespace().any(|flag| flag == "lm");
        return Some(machine_type(if long_mode { "x86_64" } else { "i686" }));
    }
    (value_of("CPU architecture") == Some("8")).then(|| machine_type("aarch64"))
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
    fn falls_back_on_cpuinfo() {
        let x86_64 =
            "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu vme lm constant_tsc\n";
        assert_eq!(machine_type_from_cpuinfo(x86_64).as_deref(), Some("x86_64"));
        let x86 = "processor\t: 0\nflags\t\t: fpu vme pae\n";
        assert_eq!(machine_type_from_cpuinfo(x86).as_deref(), Some("x86"));
        let arm64 = "processor\t: 0\nFeatures\t: fp asimd\nCPU architecture: 8\n";
        assert_eq!(machine_type_from_cpuinfo(arm64).as_deref(), Some("aarch64"));
        assert_eq!(
            machine_type_from_cpuinfo("processor : 0\ncpu : POWER9\n"),
            None
        );
    }

    #[test]
    fn takes_the_first_line() {
        assert_eq!(first_line("6.18.44-fc-v669\n"), "6.18.44-fc-v669");
        assert_eq!(first_line(""), "");
    }
}
