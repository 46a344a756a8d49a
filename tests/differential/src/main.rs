//! `difftest`: sends the same byte streams to Debian's memcached and to ferrocached and compares
//! the replies byte for byte, CAS ids aside.
//!
//! Cases live in `tests/differential/cases/*.txt`:
//!
//! ```text
//! === name of the case
//! flags: -C -m 8            (optional: extra server flags for both servers)
//! env: NAME=VALUE ...       (optional: environment for both servers)
//! stats: cmd_get get_hits   (optional: compare only these STAT lines)
//! > set a 0 0 1\r\nx\r\n    (one write; escapes \r \n \t \0 \\ \xNN, {repeat:N:text}, {cas})
//! > get a\r\n               (the next write, after a short pause: splits are real)
//! ```
//!
//! Every case runs against a fresh pair of servers. After the last write the tool reads until the
//! server has been quiet for a moment or closes the connection; the transcript is the replies plus
//! a `<closed>` marker. CAS ids in `VALUE` lines are renamed in order of first appearance (c1, c2,
//! ...), so "same item, same id" and "changed item, new id" are still compared; so are the `c`
//! flags of meta replies and the CAS field of binary responses. `{cas}` in a write is replaced by
//! the last CAS id that server sent (in a `VALUE` line or a meta reply).
//! `{cases}` in flags and env is the cases directory (for files such as `-Y {cases}/auth/users`).
//!
//! `--random N [--seed S]` runs N sessions of random requests instead, one in four in the binary
//! protocol (see `random.rs`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use ferrocache_testkit::Server;

mod random;

/// Requests in a `--random` session.
const RANDOM_COMMANDS: usize = 30;

pub(crate) struct Case {
    name: String,
    flags: Vec<String>,
    env: Vec<(String, String)>,
    stats: Option<Vec<String>>,
    writes: Vec<String>,
}

fn parse_cases(text: &str, file: &Path) -> anyhow::Result<Vec<Case>> {
    let mut cases: Vec<Case> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let context = || format!("{}:{}", file.display(), n + 1);
        if let Some(name) = line.strip_prefix("=== ") {
            cases.push(Case {
                name: name.trim().to_string(),
                flags: Vec::new(),
                env: Vec::new(),
                stats: None,
                writes: Vec::new(),
            });
            continue;
        }
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let Some(case) = cases.last_mut() else {
            bail!("{}: text before the first === case", context());
        };
        if let Some(flags) = line.strip_prefix("flags:") {
            case.flags = flags.split_whitespace().map(str::to_string).collect();
        } else if let Some(env) = line.strip_prefix("env:") {
            for pair in env.split_whitespace() {
                let Some((name, value)) = pair.split_once('=') else {
                    bail!("{}: env wants NAME=VALUE, got {pair:?}", context());
                };
                case.env.push((name.to_string(), value.to_string()));
            }
        } else if let Some(stats) = line.strip_prefix("stats:") {
            case.stats = Some(stats.split_whitespace().map(str::to_string).collect());
        } else if let Some(write) = line.strip_prefix("> ") {
            case.writes.push(write.to_string());
        } else {
            bail!("{}: cannot read {line:?}", context());
        }
    }
    Ok(cases)
}

/// Expands escapes, `{repeat:N:text}` and `{cas}` into the bytes to send.
fn expand(write: &str, last_cas: &str) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    let bytes = write.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                let (byte, used) = match bytes.get(i + 1) {
                    Some(b'r') => (b'\r', 2),
                    Some(b'n') => (b'\n', 2),
                    Some(b't') => (b'\t', 2),
                    Some(b'0') => (0, 2),
                    Some(b'\\') => (b'\\', 2),
                    Some(b'x') => {
                        let hex = write.get(i + 2..i + 4).context("short \\x escape")?;
                        (u8::from_str_radix(hex, 16).context("bad \\x escape")?, 4)
                    }
                    _ => bail!("bad escape in {write:?}"),
                };
                out.push(byte);
                i += used;
            }
            b'{' => {
                let end = write[i..].find('}').context("unclosed {")? + i;
                let inner = &write[i + 1..end];
                if inner == "cas" {
                    out.extend_from_slice(last_cas.as_bytes());
                } else if let Some(spec) = inner.strip_prefix("repeat:") {
                    let (count, text) = spec.split_once(':').context("repeat:N:text")?;
                    let count: usize = count.parse().context("repeat count")?;
                    let text = expand(text, last_cas)?;
                    for _ in 0..count {
                        out.extend_from_slice(&text);
                    }
                } else {
                    bail!("unknown {{{inner}}}");
                }
                i = end + 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// The CAS id of the last `VALUE key flags bytes cas` line, or meta reply with a `c` flag, in
/// `reply`.
fn last_cas_in(reply: &[u8]) -> Option<String> {
    reply
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let line = std::str::from_utf8(line).ok()?.trim_end();
            let fields: Vec<&str> = line.split(' ').collect();
            if fields.len() == 5 && fields[0] == "VALUE" {
                return Some(fields[4].to_string());
            }
            if !META_REPLIES.contains(&fields[0]) {
                return None;
            }
            fields
                .iter()
                .skip(1)
                .find_map(|f| meta_cas(f).map(str::to_string))
        })
        .next_back()
}

/// The first word of a meta reply line that may carry a `c<cas>` flag.
const META_REPLIES: [&str; 8] = ["HD", "VA", "EN", "NF", "NS", "EX", "ME", "MN"];

/// The CAS id in a meta reply token (`c123`, or `cas=123` in `me`'s line).
fn meta_cas(token: &str) -> Option<&str> {
    let digits = token
        .strip_prefix("cas=")
        .or_else(|| token.strip_prefix('c'))?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some(digits)
}

/// Numbers CAS ids in order of first appearance (0 stays 0: "no CAS").
#[derive(Default)]
struct CasNames(Vec<String>);

impl CasNames {
    fn name(&mut self, cas: &str) -> usize {
        if cas == "0" {
            return 0;
        }
        match self.0.iter().position(|c| c == cas) {
            Some(i) => i + 1,
            None => {
                self.0.push(cas.to_string());
                self.0.len()
            }
        }
    }
}

/// Binary protocol transcripts: the CAS field of each response header renamed like text ids,
/// and of the STAT answers (opcode 0x10) only those the case compares, and the empty last one.
fn normalise_binary(transcript: &[u8], stats: Option<&[String]>) -> Vec<u8> {
    let mut names = CasNames::default();
    let mut out = Vec::with_capacity(transcript.len());
    let mut at = 0;
    while at + 24 <= transcript.len() && transcript[at] == 0x81 {
        let header = &transcript[at..at + 24];
        let body = u32::from_be_bytes(header[8..12].try_into().expect("4 bytes")) as usize;
        let end = (at + 24 + body).min(transcript.len());
        let key_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let key_at = at + 24 + usize::from(header[4]);
        let key = transcript.get(key_at..key_at + key_len).unwrap_or_default();
        let compared = header[1] != 0x10
            || key.is_empty()
            || stats.is_none_or(|names| names.iter().any(|n| n.as_bytes() == key));
        if compared {
            let cas = u64::from_be_bytes(header[16..24].try_into().expect("8 bytes"));
            let id = names.name(&cas.to_string()) as u64;
            out.extend_from_slice(&header[..16]);
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&transcript[at + 24..end]);
        }
        at = end;
    }
    out.extend_from_slice(&transcript[at.min(transcript.len())..]);
    out
}

/// Reads until nothing arrives for `quiet` or the peer closes.
fn read_quiet(stream: &mut TcpStream, quiet: Duration, out: &mut Vec<u8>) -> bool {
    stream.set_read_timeout(Some(quiet)).expect("set timeout");
    let mut buf = [0u8; 65536];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cases")
}

fn run_case(case: &Case, bin: &Path) -> anyhow::Result<Vec<u8>> {
    let cases = cases_dir();
    let cases = cases
        .to_str()
        .context("cases directory path is not UTF-8")?;
    let flags: Vec<String> = case
        .flags
        .iter()
        .map(|f| f.replace("{cases}", cases))
        .collect();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let env: Vec<(&str, PathBuf)> = case
        .env
        .iter()
        .map(|(name, value)| {
            (
                name.as_str(),
                PathBuf::from(value.replace("{cases}", cases)),
            )
        })
        .collect();
    let env: Vec<(&str, &Path)> = env.iter().map(|(n, v)| (*n, v.as_path())).collect();
    let server = Server::start_bin_env(bin, &flags, &env);
    let mut stream = TcpStream::connect(server.addr()).context("connect")?;
    stream.set_nodelay(true)?;
    let mut transcript = Vec::new();
    let mut last_cas = String::from("0");
    let mut closed = false;
    for write in &case.writes {
        let bytes = expand(write, &last_cas)?;
        if stream.write_all(&bytes).is_err() {
            closed = true;
            break;
        }
        let mut reply = Vec::new();
        closed = read_quiet(&mut stream, Duration::from_millis(60), &mut reply);
        if let Some(cas) = last_cas_in(&reply) {
            last_cas = cas;
        }
        transcript.extend_from_slice(&reply);
        if closed {
            break;
        }
    }
    if !closed {
        closed = read_quiet(&mut stream, Duration::from_millis(100), &mut transcript);
    }
    if closed {
        transcript.extend_from_slice(b"<closed>");
    }
    Ok(normalise(&transcript, case.stats.as_deref()))
}

/// Renames CAS ids, hides the version string, and keeps only the STAT lines the case compares
/// (with byte counts hidden once a CAS id other than 0 was shown).
fn normalise(transcript: &[u8], stats: Option<&[String]>) -> Vec<u8> {
    if transcript.first() == Some(&0x81) {
        return normalise_binary(transcript, stats);
    }
    let mut names = CasNames::default();
    let mut out = Vec::new();
    let mut rest = transcript;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |p| p + 1);
        let line = &rest[..end];
        rest = &rest[end..];
        let text = String::from_utf8_lossy(line);
        let fields: Vec<&str> = text.trim_end().split(' ').collect();
        if fields.len() == 5 && fields[0] == "VALUE" && fields[4].parse::<u64>().is_ok() {
            let id = names.name(fields[4]);
            out.extend_from_slice(
                format!("VALUE {} {} {} c{id}\r\n", fields[1], fields[2], fields[3]).as_bytes(),
            );
        } else if META_REPLIES.contains(&fields[0]) && fields.iter().any(|f| meta_cas(f).is_some())
        {
            let renamed: Vec<String> = fields
                .iter()
                .map(|f| match meta_cas(f) {
                    Some(cas) if f.starts_with("cas=") => format!("cas=c{}", names.name(cas)),
                    Some(cas) => format!("c#{}", names.name(cas)),
                    None => f.to_string(),
                })
                .collect();
            out.extend_from_slice(renamed.join(" ").as_bytes());
            out.extend_from_slice(b"\r\n");
        } else if fields[0] == "VERSION" && fields.len() == 2 {
            out.extend_from_slice(b"VERSION <version>\r\n");
        } else if fields[0] == "STAT" && fields.len() >= 3 {
            if stats.is_none_or(|names| names.iter().any(|n| n == fields[1])) {
                if matches!(fields[1], "bytes_read" | "bytes_written") && !names.0.is_empty() {
                    // The servers' CAS ids have different lengths, and so do the replies that
                    // show them and the requests that quote them.
                    out.extend_from_slice(
                        format!("STAT {} <depends on CAS ids>\r\n", fields[1]).as_bytes(),
                    );
                } else {
                    out.extend_from_slice(line);
                }
            }
        } else {
            out.extend_from_slice(line);
        }
    }
    out
}

fn escape(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes {
        match b {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n\n    "),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut ferrocached: Option<PathBuf> = None;
    let mut memcached: Option<PathBuf> = None;
    let mut filter: Option<String> = None;
    let mut verbose = false;
    let mut memcached_only = false;
    let mut random: Option<u64> = None;
    let mut seed: u64 = 1;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--ferrocached" => ferrocached = args.next().map(PathBuf::from),
            "--memcached" => memcached = args.next().map(PathBuf::from),
            "--filter" => filter = args.next(),
            "--verbose" => verbose = true,
            "--against-memcached-only" => memcached_only = true,
            "--random" => random = Some(args.next().context("--random N")?.parse()?),
            "--seed" => seed = args.next().context("--seed S")?.parse()?,
            "-h" | "--help" => {
                println!(
                    "difftest [--ferrocached PATH] [--memcached PATH] [--filter TEXT] [--verbose] \
                     [--against-memcached-only] [--random N [--seed S]]\n\
                     Runs tests/differential/cases/*.txt against memcached and ferrocached and \
                     compares the replies. --random N runs N sessions of random requests \
                     instead, seeds S to S+N-1 (S defaults to 1)."
                );
                return Ok(());
            }
            other => bail!("unknown argument {other}"),
        }
    }
    let memcached = memcached.unwrap_or_else(ferrocache_testkit::memcached_bin);
    let other = if memcached_only {
        memcached.clone()
    } else {
        ferrocached
            .or_else(|| std::env::var_os("FERROCACHED_BIN").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("target/release/ferrocached"))
    };
    anyhow::ensure!(
        other.exists(),
        "{} not found: build it first",
        other.display()
    );
    let cases = match random {
        Some(n) => (seed..seed.saturating_add(n))
            .map(|s| match s % 4 {
                // One session in four speaks the binary protocol.
                3 => random::binary_session(s, RANDOM_COMMANDS),
                _ => random::session(s, RANDOM_COMMANDS),
            })
            .collect(),
        None => file_cases()?,
    };
    let (mut total, mut differences) = (0, 0);
    for case in cases {
        if filter
            .as_ref()
            .is_some_and(|f| !case.name.contains(f.as_str()))
        {
            continue;
        }
        total += 1;
        let expected = run_case(&case, &memcached)?;
        let got = run_case(&case, &other)?;
        if expected == got {
            if verbose {
                println!("ok    {}\n    {}", case.name, escape(&expected));
            } else {
                println!("ok    {}", case.name);
            }
        } else {
            differences += 1;
            println!(
                "DIFF  {}\n  memcached:\n    {}\n  ferrocached:\n    {}",
                case.name,
                escape(&expected),
                escape(&got)
            );
            if random.is_some() {
                println!("  as a case:\n=== {}", case.name);
                if !case.flags.is_empty() {
                    println!("flags: {}", case.flags.join(" "));
                }
                for write in &case.writes {
                    println!("> {write}");
                }
            }
        }
    }
    println!("{total} cases, {differences} differences");
    if differences > 0 {
        std::process::exit(1);
    }
    Ok(())
}

/// The cases of every `cases/*.txt`, in file order.
fn file_cases() -> anyhow::Result<Vec<Case>> {
    let dir = cases_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        cases.extend(parse_cases(&text, &file)?);
    }
    Ok(cases)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_escapes_and_repeats() {
        let bytes = expand(r"a\r\n\x01{repeat:3:ab}{cas}\0", "42").expect("valid");
        assert_eq!(bytes, b"a\r\n\x01ababab42\0");
        assert!(expand(r"\q", "0").is_err());
    }

    #[test]
    fn renames_cas_ids_in_order() {
        let t = b"VALUE a 0 1 77\r\nx\r\nVALUE b 0 1 99\r\ny\r\nVALUE a 0 1 77\r\nx\r\nVERSION 1.6.18\r\n";
        let n = normalise(t, None);
        assert_eq!(
            String::from_utf8_lossy(&n),
            "VALUE a 0 1 c1\r\nx\r\nVALUE b 0 1 c2\r\ny\r\nVALUE a 0 1 c1\r\nx\r\nVERSION <version>\r\n"
        );
    }

    #[test]
    fn keeps_only_compared_stats() {
        let t = b"STAT pid 1\r\nSTAT cmd_get 2\r\nEND\r\n";
        let keep = vec!["cmd_get".to_string()];
        assert_eq!(normalise(t, Some(&keep)), b"STAT cmd_get 2\r\nEND\r\n");
        // Once a CAS id other than 0 was shown, byte counts depend on the ids' lengths.
        let t = b"VALUE a 0 1 123\r\nx\r\nEND\r\nSTAT bytes_written 40\r\n";
        let keep = vec!["bytes_written".to_string()];
        assert_eq!(
            normalise(t, Some(&keep)),
            b"VALUE a 0 1 c1\r\nx\r\nEND\r\nSTAT bytes_written <depends on CAS ids>\r\n"
        );
    }

    #[test]
    fn keeps_only_compared_binary_stats() {
        let answer = |opcode: u8, key: &[u8], value: &[u8], cas: u64| {
            let mut p = vec![0x81, opcode];
            p.extend_from_slice(&(key.len() as u16).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, 0]);
            p.extend_from_slice(&((key.len() + value.len()) as u32).to_be_bytes());
            p.extend_from_slice(&[0; 4]);
            p.extend_from_slice(&cas.to_be_bytes());
            p.extend_from_slice(key);
            p.extend_from_slice(value);
            p
        };
        let transcript = [
            answer(0x01, b"", b"", 77),
            answer(0x10, b"pid", b"12", 0),
            answer(0x10, b"cmd_get", b"3", 0),
            answer(0x10, b"", b"", 0),
        ]
        .concat();
        let keep = vec!["cmd_get".to_string()];
        let expected = [
            answer(0x01, b"", b"", 1),
            answer(0x10, b"cmd_get", b"3", 0),
            answer(0x10, b"", b"", 0),
        ]
        .concat();
        assert_eq!(normalise(&transcript, Some(&keep)), expected);
        let mut closed = transcript.clone();
        closed.extend_from_slice(b"<closed>");
        assert!(normalise(&closed, None).ends_with(b"<closed>"));
    }
}
