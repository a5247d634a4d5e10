//! `process_*`: the agent's own CPU, memory, file descriptors and start time, as Prometheus
//! client libraries export them on Linux, read from `/proc/self` at each scrape (a few small
//! file reads). Served in every `monitor.metric_names` mode. Elsewhere than Linux, nothing.

use crate::metrics::{Family, catalogue};

/// The process families, or none when `/proc/self` cannot be read.
pub fn families() -> Vec<Family> {
    read().unwrap_or_default()
}

fn read() -> Option<Vec<Family>> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces), from field 3 (state) on.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field n (1-based, proc(5)) is fields[n - 3].
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |t| t as f64);
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096.0, |p| p as f64);
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())?;
    let cpu = (field(14)? + field(15)?) / ticks;
    let start = boot + field(22)? / ticks;
    let mut out = vec![
        Family::of(&catalogue::PROCESS_CPU_SECONDS_TOTAL).with(&[], cpu),
        Family::of(&catalogue::PROCESS_START_TIME_SECONDS).with(&[], start),
        Family::of(&catalogue::PROCESS_VIRTUAL_MEMORY_BYTES).with(&[], field(23)?),
        Family::of(&catalogue::PROCESS_RESIDENT_MEMORY_BYTES).with(&[], field(24)? * page),
    ];
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        out.push(Family::of(&catalogue::PROCESS_OPEN_FDS).with(&[], dir.count() as f64));
    }
    if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
        // "Max open files            1024                 524288               files"
        let soft = |prefix: &str| {
            let l = limits.lines().find(|l| l.starts_with(prefix))?;
            match l[prefix.len()..].split_whitespace().next()? {
                "unlimited" => Some(u64::MAX as f64),
                v => v.parse::<f64>().ok(),
            }
        };
        if let Some(v) = soft("Max open files") {
            out.push(Family::of(&catalogue::PROCESS_MAX_FDS).with(&[], v));
        }
        if let Some(v) = soft("Max address space") {
            out.push(Family::of(&catalogue::PROCESS_VIRTUAL_MEMORY_MAX_BYTES).with(&[], v));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_agent_reads_its_own_process_figures() {
        let text = crate::metrics::render(&super::families());
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_virtual_memory_max_bytes",
            "process_start_time_seconds",
            "process_open_fds",
            "process_max_fds",
        ] {
            assert!(
                text.contains(&format!("\n{name} ")),
                "{name} missing:\n{text}"
            );
        }
    }
}
