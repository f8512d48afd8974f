//! Load and process metrics from `/proc/loadavg`
//! (`0.12 0.34 0.56 2/123 4567`). Pure.

use crate::parse::{ParseError, field};

const LOADAVG: &str = "/proc/loadavg";

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadAvg {
    pub one: f32,
    pub five: f32,
    pub fifteen: f32,
    /// Runnable tasks, the reader included.
    pub runnable: u32,
    pub total: u32,
}

impl LoadAvg {
    pub fn parse(loadavg: &str) -> Result<LoadAvg, ParseError> {
        let tasks: String = field(LOADAVG, loadavg, 3)?;
        let (runnable, total) = tasks.split_once('/').ok_or_else(|| {
            ParseError::new(LOADAVG, format!("field 3 is not running/total: {tasks:?}"))
        })?;
        let count = |text: &str| {
            text.parse::<u32>()
                .map_err(|_| ParseError::new(LOADAVG, format!("bad task count {text:?}")))
        };
        Ok(LoadAvg {
            one: field(LOADAVG, loadavg, 0)?,
            five: field(LOADAVG, loadavg, 1)?,
            fifteen: field(LOADAVG, loadavg, 2)?,
            runnable: count(runnable)?,
            total: count(total)?,
        })
    }

    /// `proc_run`: runnable tasks other than the one reading the file, as gmond
    /// subtracts itself.
    pub fn running_others(&self) -> u32 {
        self.runnable.saturating_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_loadavg() {
        let load = LoadAvg::parse("3.17 1.77 0.75 6/123 12147\n").unwrap();
        assert_eq!((load.one, load.five, load.fifteen), (3.17, 1.77, 0.75));
        assert_eq!(
            (load.runnable, load.total, load.running_others()),
            (6, 123, 5)
        );
    }

    #[test]
    fn never_underflows_running() {
        assert_eq!(LoadAvg::parse("0 0 0 0/1 1").unwrap().running_others(), 0);
    }

    #[test]
    fn rejects_malformed_lines() {
        assert!(LoadAvg::parse("").is_err());
        assert!(LoadAvg::parse("0.1 0.2 0.3").is_err());
        assert!(LoadAvg::parse("0.1 0.2 0.3 5 9").is_err());
        assert!(LoadAvg::parse("x 0.2 0.3 1/5 9").is_err());
        assert!(LoadAvg::parse("0.1 0.2 0.3 1/y 9").is_err());
    }
}
