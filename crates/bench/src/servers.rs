//! The servers under test: binaries started with the same flags on ephemeral loopback ports
//! (`-p -1` and `MEMCACHED_PORT_FILENAME`), or addresses of servers already running.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// One server to measure.
pub struct Target {
    pub name: String,
    pub addr: String,
    /// Present when the bench started the server (so its CPU time and RSS can be read).
    child: Option<Child>,
    _dir: Option<PathBuf>,
}

impl Target {
    /// Starts `bin` with `args` on 127.0.0.1 and a free port.
    pub fn start(name: &str, bin: &str, args: &[String]) -> anyhow::Result<Target> {
        let dir = std::env::temp_dir().join(format!(
            "ferrobench-{}-{}-{name}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        std::fs::create_dir_all(&dir)?;
        let port_file = dir.join("port");
        let mut cmd = Command::new(bin);
        cmd.args(["-p", "-1", "-U", "0", "-l", "127.0.0.1"]);
        if bin.ends_with("memcached") && is_root() {
            cmd.args(["-u", "root"]);
        }
        let child = cmd
            .args(args)
            .env("MEMCACHED_PORT_FILENAME", &port_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start {bin}"))?;
        let mut target = Target {
            name: name.to_string(),
            addr: String::new(),
            child: Some(child),
            _dir: Some(dir),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                if let Some(port) = text.lines().find_map(|l| l.strip_prefix("TCP INET: ")) {
                    target.addr = format!("127.0.0.1:{}", port.trim());
                    return Ok(target);
                }
            }
            if let Some(child) = target.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    bail!("{name} ({bin}) exited with {status} before listening");
                }
            }
            if Instant::now() > deadline {
                bail!("{name} did not start listening");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A server that is already running at `addr`.
    pub fn existing(name: &str, addr: &str) -> Target {
        Target {
            name: name.to_string(),
            addr: addr.to_string(),
            child: None,
            _dir: None,
        }
    }

    /// CPU seconds (user + system) the server process used so far, when we started it.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let pid = self.child.as_ref()?.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: f64 =
            fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        Some(ticks / 100.0)
    }

    /// Resident memory of the server process in bytes, when we started it.
    pub fn rss_bytes(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb * 1024)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = &self._dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}
