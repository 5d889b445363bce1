//! The machine description every suite record carries: CPUs, CPU model,
//! compiler, date, and the build profile.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Where and when the suite ran.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// `std::thread::available_parallelism` (what `nproc` prints).
    pub nproc: usize,
    /// The first `model name` line of `/proc/cpuinfo`, or `unknown`.
    pub cpu_model: String,
    /// `rustc -V` of the compiler that built the suite.
    pub rustc: String,
    /// UTC start time, `YYYY-MM-DDTHH:MM:SSZ`.
    pub date: String,
    /// `release` (optimised) or `debug` (debug assertions on: figures are
    /// meaningless).
    pub profile: &'static str,
}

impl Machine {
    /// Describes this machine now.
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: cpu_model(&cpuinfo).unwrap_or_else(|| "unknown".into()),
            rustc: env!("KMEM_SUITE_RUSTC").to_string(),
            date: utc_date_time(secs),
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
        }
    }

    /// One line for the terminal and the report.
    pub fn summary(&self) -> String {
        format!(
            "{} CPUs ({}), {}, {} build, {}",
            self.nproc, self.cpu_model, self.rustc, self.profile, self.date
        )
    }
}

/// CPU time used so far, in clock ticks: the whole machine's busy time
/// (`/proc/stat`, all but idle and iowait) and this process's (`utime +
/// stime` of `/proc/self/stat`). Their difference over an interval is what
/// other processes took: the noise a shared machine put into a benchmark.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTicks {
    /// Busy ticks of all CPUs.
    pub machine: u64,
    /// This process's ticks.
    pub process: u64,
}

impl CpuTicks {
    /// Reads both counters now (zeros where `/proc` is unreadable).
    pub fn now() -> Self {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let own = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        Self {
            machine: machine_busy(&stat).unwrap_or(0),
            process: process_ticks(&own).unwrap_or(0),
        }
    }

    /// Seconds of CPU other processes used since `earlier` (100 ticks per
    /// second, Linux's `USER_HZ`).
    pub fn others_since(&self, earlier: &Self) -> f64 {
        let machine = self.machine.saturating_sub(earlier.machine);
        let own = self.process.saturating_sub(earlier.process);
        machine.saturating_sub(own) as f64 / 100.0
    }
}

/// Busy ticks from the `cpu` line of a `/proc/stat` text.
pub fn machine_busy(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let total: u64 = v.iter().take(8).sum();
    Some(total - v.get(3)? - v.get(4).copied().unwrap_or(0))
}

/// `utime + stime` from a `/proc/<pid>/stat` text (fields 14 and 15,
/// counted after the parenthesised command name, which may hold spaces).
pub fn process_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// The value of the first `model name` line of a `/proc/cpuinfo` text.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "model name").then(|| v.trim().to_string())
    })
}

/// `secs` since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ` (UTC, proleptic
/// Gregorian; Howard Hinnant's days-to-civil algorithm).
pub fn utc_date_time(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::{cpu_model, machine_busy, process_ticks, utc_date_time, CpuTicks, Machine};

    #[test]
    fn proc_parsing() {
        let stat = "cpu  100 5 50 1000 20 1 2 3 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(machine_busy(stat), Some(100 + 5 + 50 + 1 + 2 + 3));
        let own = "4242 (kmem suite) R 1 2 3 4 5 6 7 8 9 10 70 30 0 0 20";
        assert_eq!(process_ticks(own), Some(100));
        let a = CpuTicks {
            machine: 1000,
            process: 500,
        };
        let b = CpuTicks {
            machine: 1300,
            process: 700,
        };
        assert_eq!(b.others_since(&a), 1.0);
        let now = CpuTicks::now();
        assert!(now.machine >= now.process / 2);
    }

    #[test]
    fn dates() {
        assert_eq!(utc_date_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_date_time(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_date_time(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(utc_date_time(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn cpu_models() {
        let text = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\nmodel name\t: other\n";
        assert_eq!(
            cpu_model(text).as_deref(),
            Some("Intel(R) Xeon(R) Processor")
        );
        assert_eq!(cpu_model("flags: x"), None);
        let m = Machine::detect();
        assert!(m.nproc >= 1 && m.rustc.starts_with("rustc") && m.date.ends_with('Z'));
    }
}
