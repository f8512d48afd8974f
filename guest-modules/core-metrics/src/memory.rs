//! Memory metrics from `/proc/meminfo`, in KB as gmond reports them. Pure.

use crate::parse::ParseError;

const MEMINFO: &str = "/proc/meminfo";

/// The value in KB of the `/proc/meminfo` line `label` (e.g. `MemTotal`), if present.
pub fn kilobytes(meminfo: &str, label: &str) -> Result<Option<f32>, ParseError> {
    let Some(line) = meminfo
        .lines()
        .find(|line| line.split_once(':').is_some_and(|(key, _)| key == label))
    else {
        return Ok(None);
    };
    let (_, rest) = line.split_once(':').unwrap_or_default();
    let number = rest.split_whitespace().next().unwrap_or_default();
    let kb: u64 = number
        .parse()
        .map_err(|_| ParseError::new(MEMINFO, format!("{label}: not a number: {number:?}")))?;
    Ok(Some(kb as f32))
}

/// Like [`kilobytes`], but the line must be there.
pub fn required_kilobytes(meminfo: &str, label: &str) -> Result<f32, ParseError> {
    kilobytes(meminfo, label)?.ok_or_else(|| ParseError::new(MEMINFO, format!("no {label} line")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO_6X: &str = "MemTotal:       24684084 kB\n\
        MemFree:        19187568 kB\n\
        MemAvailable:   22780320 kB\n\
        Buffers:           42412 kB\n\
        Cached:          3688060 kB\n\
        SwapCached:            0 kB\n\
        SwapTotal:             0 kB\n\
        SwapFree:              0 kB\n\
        Shmem:              8872 kB\n\
        SReclaimable:     183548 kB\n";

    #[test]
    fn reads_labels_exactly() {
        assert_eq!(
            required_kilobytes(MEMINFO_6X, "MemTotal").unwrap(),
            24684084.0
        );
        assert_eq!(
            required_kilobytes(MEMINFO_6X, "Cached").unwrap(),
            3688060.0,
            "not SwapCached"
        );
        assert_eq!(
            required_kilobytes(MEMINFO_6X, "SReclaimable").unwrap(),
            183548.0
        );
        assert_eq!(required_kilobytes(MEMINFO_6X, "SwapTotal").unwrap(), 0.0);
    }

    #[test]
    fn missing_lines_are_none_or_errors() {
        // Linux removed MemShared in 2.5.52; gmond then reports 0.
        assert_eq!(kilobytes(MEMINFO_6X, "MemShared").unwrap(), None);
        assert!(required_kilobytes(MEMINFO_6X, "MemShared").is_err());
        assert!(kilobytes("MemTotal: lots kB\n", "MemTotal").is_err());
    }
}
