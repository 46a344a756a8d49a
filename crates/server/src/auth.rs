//! Authentication, as memcached 1.6.18 does it.
//!
//! - `-S` (SASL over the binary protocol): `SASL_LIST_MECHS` answers `PLAIN`; `SASL_AUTH`/`SASL_STEP`
//!   check `PLAIN` credentials against the file named by `MEMCACHED_SASL_PWDB` (lines
//!   `user:password`), which, as in memcached, is read at every attempt so edits apply without a
//!   restart. Any other opcode but `VERSION` before authenticating gets status 0x20 "Auth failure."
//!   and the connection is closed. `-S` makes the server binary-only, as memcached does.
//! - `-Y <file>` (ASCII authentication token): a connection first sends
//!   `set <any> <flags> <exptime> <len>\r\n<user> <password>\r\n`; anything else gets
//!   `CLIENT_ERROR unauthenticated`. The file (`user:password` lines, no limit of 8 users) is read at
//!   start and again on SIGHUP; a failed reload keeps the old users, as memcached does. `-Y` makes
//!   the server ASCII-only.
//!
//! The per-connection state is [`ConnAuth`]; the shared state (users, counters) is [`AuthState`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use anyhow::{bail, Context};
use ferrocache_protocol::auth::{self as wire, AsciiAuth, AsciiAuthParse};
use ferrocache_protocol::binary::{opcode, response, status, BinaryRequest, Header};
use ferrocache_protocol::text::reply;
use parking_lot::RwLock;
use subtle::ConstantTimeEq;

use crate::dispatch::{Ctx, Next};
use crate::Shared;

/// The environment variable memcached (built with its own password DB) reads the SASL password file
/// name from.
pub const SASL_PWDB_ENV: &str = "MEMCACHED_SASL_PWDB";

/// Users and their passwords. `Debug` shows only how many, never a password.
#[derive(Clone, Default)]
pub struct PasswordFile {
    users: HashMap<Vec<u8>, Vec<Vec<u8>>>,
}

impl std::fmt::Debug for PasswordFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PasswordFile({} users)", self.users.len())
    }
}

/// Why a `-Y` file cannot be used; the texts are memcached's.
#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    #[error("Could not open authfile [{0}] for reading, error {1}")]
    Open(String, std::io::Error),
    #[error("Authfile [{0}] has a malformed entry. Should be 'user:password'")]
    Malformed(String),
}

impl PasswordFile {
    /// Parses a `-Y` file like memcached's `authfile_load`: every line is `user:password`, the
    /// password running to the end of the line (it may hold `:`); a line without `:` (a blank line
    /// too) makes the whole file malformed. A user may appear more than once; any of its passwords
    /// then works.
    pub fn parse_auth_file(text: &[u8]) -> Option<PasswordFile> {
        let mut file = PasswordFile::default();
        for line in text.split_inclusive(|&b| b == b'\n') {
            let line = &line[..memchr::memchr(0, line).unwrap_or(line.len())];
            let colon = memchr::memchr(b':', line)?;
            let rest = &line[colon + 1..];
            let end = memchr::memchr2(b'\r', b'\n', rest).unwrap_or(rest.len());
            file.users
                .entry(line[..colon].to_vec())
                .or_default()
                .push(rest[..end].to_vec());
        }
        Some(file)
    }

    /// Parses a SASL password DB like memcached's `sasl_server_userdb_checkpass`: the password ends
    /// at `:` (more fields may follow), `\r` or `\n`; the first line naming a user is the only one
    /// that counts; lines without `:` are skipped.
    pub fn parse_sasl_pwdb(text: &[u8]) -> PasswordFile {
        let mut file = PasswordFile::default();
        for line in text.split(|&b| b == b'\n') {
            let Some(colon) = memchr::memchr(b':', line) else {
                continue;
            };
            let rest = &line[colon + 1..];
            let end = memchr::memchr2(b':', b'\r', rest).unwrap_or(rest.len());
            file.users
                .entry(line[..colon].to_vec())
                .or_insert_with(|| vec![rest[..end].to_vec()]);
        }
        file
    }

    /// Reads and parses a `-Y` file.
    pub fn load_auth_file(path: &Path) -> Result<PasswordFile, AuthFileError> {
        let name = path.display().to_string();
        let text = std::fs::read(path).map_err(|e| AuthFileError::Open(name.clone(), e))?;
        PasswordFile::parse_auth_file(&text).ok_or(AuthFileError::Malformed(name))
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether `password` is `user`'s. Passwords are compared in constant time (for a given
    /// length), and an unknown user costs a comparison too, so a failed attempt does not tell by its
    /// timing how much of a password was right.
    pub fn check(&self, user: &[u8], password: &[u8]) -> bool {
        let mut ok = subtle::Choice::from(0);
        match self.users.get(user) {
            Some(passwords) => {
                for candidate in passwords {
                    ok |= candidate.as_slice().ct_eq(password);
                }
            }
            None => {
                let _ = password.ct_eq(password);
            }
        }
        bool::from(ok)
    }
}

/// The authentication flags, validated as memcached validates them.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// `-S`.
    pub sasl: bool,
    /// `MEMCACHED_SASL_PWDB`, required with `-S`.
    pub sasl_pwdb: Option<PathBuf>,
    /// `-Y` and its users as read at start.
    pub auth_file: Option<(PathBuf, Arc<PasswordFile>)>,
}

impl AuthConfig {
    /// Checks `-S`/`-Y` against the protocol (`-B`) and UDP (`-U`) flags with memcached's messages,
    /// reads the `-Y` file, and picks up `MEMCACHED_SASL_PWDB` from `pwdb_env`.
    pub fn from_flags(
        sasl: bool,
        auth_file: Option<&str>,
        pwdb_env: Option<std::ffi::OsString>,
        protocol: &str,
        udp_port: i64,
    ) -> anyhow::Result<AuthConfig> {
        let mut config = AuthConfig {
            sasl,
            ..AuthConfig::default()
        };
        if sasl {
            if protocol == "ascii" {
                bail!("ERROR: You cannot allow the ASCII protocol while using SASL.");
            }
            if udp_port != 0 {
                bail!("ERROR: Cannot enable UDP while using binary SASL authentication.");
            }
            let Some(pwdb) = pwdb_env.filter(|p| !p.is_empty()) else {
                // memcached: "Error initializing sasl.", exit status 1.
                return Err(crate::config::failure(format!(
                    "-S (SASL) needs a password file: set {SASL_PWDB_ENV}=<file> \
                     (lines user:password), as memcached's own password DB reads it"
                )));
            };
            config.sasl_pwdb = Some(PathBuf::from(pwdb));
        }
        if let Some(file) = auth_file {
            if protocol == "binary" {
                bail!(
                    "ERROR: You cannot allow the BINARY protocol while using ascii authentication tokens."
                );
            }
            if udp_port != 0 {
                bail!("Cannot use UDP with ascii authentication enabled (-U 0 to disable)");
            }
            let path = PathBuf::from(file);
            let users = PasswordFile::load_auth_file(&path)
                .map_err(|e| crate::config::failure(format!("{e:#}")))?;
            config.auth_file = Some((path, Arc::new(users)));
        }
        Ok(config)
    }

    /// The protocol the flags force: `-Y` makes the server ASCII-only and wins over `-S` (memcached
    /// then listens "(ascii)"); `-S` alone makes it binary-only.
    pub fn forced_protocol(&self) -> Option<&'static str> {
        if self.auth_file.is_some() {
            Some("ascii")
        } else if self.sasl {
            Some("binary")
        } else {
            None
        }
    }
}

/// Shared authentication state: the `-Y` users (swapped on SIGHUP) and the `stats` counters.
#[derive(Debug, Default)]
pub struct AuthState {
    ascii_users: Option<RwLock<Arc<PasswordFile>>>,
    /// `stats`: authentication attempts that completed (success or failure).
    pub auth_cmds: AtomicU64,
    /// `stats`: failed attempts.
    pub auth_errors: AtomicU64,
}

impl AuthState {
    pub fn new(config: &AuthConfig) -> AuthState {
        AuthState {
            ascii_users: config
                .auth_file
                .as_ref()
                .map(|(_, users)| RwLock::new(users.clone())),
            ..AuthState::default()
        }
    }

    fn count(&self, ok: bool) {
        self.auth_cmds.fetch_add(1, Relaxed);
        if !ok {
            self.auth_errors.fetch_add(1, Relaxed);
        }
    }

    /// `stats reset` zeroes these, as memcached's thread stats.
    pub fn reset(&self) {
        self.auth_cmds.store(0, Relaxed);
        self.auth_errors.store(0, Relaxed);
    }
}

/// Where a connection's SASL exchange is (memcached keeps this in its Cyrus connection).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum SaslPhase {
    #[default]
    Idle,
    /// `SASL_AUTH PLAIN` came without data: the credentials come in a `SASL_STEP`.
    AwaitingPlain,
    /// An exchange succeeded; Cyrus refuses the next start on the same connection once.
    Done,
}

/// One connection's authentication state.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnAuth {
    pub authenticated: bool,
    phase: SaslPhase,
    /// memcached's `sasl_started`: a `SASL_STEP` is refused unless the last `SASL_AUTH` started.
    started: bool,
}

/// The outcome of one SASL request.
enum SaslResult {
    Ok,
    Continue,
    Fail,
}

/// What an unauthenticated `-Y` connection does next.
pub enum LoginStep {
    Incomplete,
    Close,
    Done(usize),
}

impl Ctx<'_> {
    fn auth_error_reply(&mut self, r: &BinaryRequest<'_>, code: u16) {
        self.binary_status_reply(r.opcode, r.opaque, code);
    }

    /// A header with `code` and memcached's text for it as the body.
    fn binary_status_reply(&mut self, opcode: u8, opaque: u32, code: u16) {
        let text = status::text(code);
        let header = Header {
            opcode,
            status: code,
            opaque,
            cas: 0,
        };
        let out = self.out.text();
        response(out, header, &[], &[], text.len());
        out.extend_from_slice(text.as_bytes());
    }

    /// The binary protocol's authentication: the SASL opcodes (with or without `-S`, so their
    /// argument checks come first as in memcached) and, with `-S`, the refusal of anything else
    /// before logging in. `None` means the request is not ours.
    pub(crate) fn binary_auth(&mut self, r: &BinaryRequest<'_>) -> Option<Next> {
        let sasl = self.shared.config.auth.sasl;
        let is_sasl_op = matches!(
            r.opcode,
            opcode::SASL_LIST_MECHS | opcode::SASL_AUTH | opcode::SASL_STEP
        );
        if sasl && !is_sasl_op && r.opcode != opcode::VERSION && !self.auth.authenticated {
            // memcached: "Auth failure." and close, whatever the opcode (quiet ones and QUIT too).
            self.auth_error_reply(r, status::AUTH_ERROR);
            return Some(Next::CloseAfterWrite);
        }
        if !is_sasl_op {
            return None;
        }
        let shape_ok = match r.opcode {
            opcode::SASL_LIST_MECHS => {
                r.extras.is_empty() && r.key.is_empty() && r.value.is_empty()
            }
            _ => r.extras.is_empty() && !r.key.is_empty() && r.key.len() <= 250,
        };
        if !shape_ok {
            self.auth_error_reply(r, status::INVALID_ARGUMENTS);
            return Some(Next::CloseAfterWrite);
        }
        if !sasl {
            self.auth_error_reply(r, status::UNKNOWN_COMMAND);
            return Some(Next::Continue);
        }
        if r.opcode == opcode::SASL_LIST_MECHS {
            // memcached re-inits its SASL connection here, which logs the connection out.
            self.auth.authenticated = false;
            self.binary_auth_reply(r, status::OK, wire::MECH_PLAIN.as_bytes());
            return Some(Next::Continue);
        }
        if r.key.len() > wire::MAX_MECH_LEN {
            // Answered without closing: memcached swallows the data and goes on.
            self.auth_error_reply(r, status::INVALID_ARGUMENTS);
            return Some(Next::Continue);
        }
        match self.sasl_exchange(r) {
            SaslResult::Ok => {
                self.shared.auth.count(true);
                self.binary_auth_reply(r, status::OK, b"Authenticated");
            }
            SaslResult::Continue => self.binary_auth_reply(r, status::AUTH_CONTINUE, b""),
            SaslResult::Fail => {
                self.shared.auth.count(false);
                self.auth_error_reply(r, status::AUTH_ERROR);
            }
        }
        Some(Next::Continue)
    }

    /// An oversized request on a connection that has not logged in: memcached checks the login
    /// before the size, so it answers "Auth failure." and closes instead of "Too large.".
    pub(crate) fn binary_auth_too_large(&mut self, opcode: u8, opaque: u32) -> Option<Next> {
        if !self.shared.config.auth.sasl || self.auth.authenticated {
            return None;
        }
        self.binary_status_reply(opcode, opaque, status::AUTH_ERROR);
        Some(Next::CloseAfterWrite)
    }

    fn binary_auth_reply(&mut self, r: &BinaryRequest<'_>, code: u16, body: &[u8]) {
        let out = self.out.text();
        let header = Header {
            opcode: r.opcode,
            status: code,
            opaque: r.opaque,
            cas: 0,
        };
        response(out, header, &[], &[], body.len());
        out.extend_from_slice(body);
    }

    /// `SASL_AUTH`/`SASL_STEP`, reproducing what memcached with Cyrus answers (checked against
    /// Debian's memcached 1.6.18 -S): every SASL request logs the connection out first; a success
    /// is followed by one refused `SASL_AUTH`; a failed `SASL_STEP` keeps the exchange open.
    fn sasl_exchange(&mut self, r: &BinaryRequest<'_>) -> SaslResult {
        self.auth.authenticated = false;
        let state = &mut self.auth;
        let result = if r.opcode == opcode::SASL_AUTH {
            let result = if state.phase == SaslPhase::Done || !wire::is_plain(r.key) {
                SaslResult::Fail
            } else if r.value.is_empty() {
                SaslResult::Continue
            } else if sasl_plain_ok(self.shared, r.value) {
                SaslResult::Ok
            } else {
                SaslResult::Fail
            };
            let state = &mut self.auth;
            state.started = !matches!(result, SaslResult::Fail);
            state.phase = match result {
                SaslResult::Ok => SaslPhase::Done,
                SaslResult::Continue => SaslPhase::AwaitingPlain,
                SaslResult::Fail => SaslPhase::Idle,
            };
            result
        } else if !state.started {
            SaslResult::Fail
        } else if state.phase == SaslPhase::AwaitingPlain {
            if sasl_plain_ok(self.shared, r.value) {
                self.auth.phase = SaslPhase::Done;
                SaslResult::Ok
            } else {
                SaslResult::Fail
            }
        } else {
            state.phase = SaslPhase::Idle;
            SaslResult::Fail
        };
        self.auth.authenticated = matches!(result, SaslResult::Ok);
        result
    }

    /// Whether this text connection must still log in (`-Y`).
    pub(crate) fn ascii_login_pending(&self) -> bool {
        self.shared.config.auth.auth_file.is_some() && !self.auth.authenticated
    }

    /// Handles the next request of a `-Y` connection that has not logged in yet.
    pub(crate) fn ascii_login(&mut self, buf: &[u8]) -> LoginStep {
        let (auth, used) = match wire::parse_ascii_auth(buf) {
            AsciiAuthParse::Incomplete => return LoginStep::Incomplete,
            AsciiAuthParse::Close => return LoginStep::Close,
            AsciiAuthParse::Done(auth, used) => (auth, used),
        };
        let text = match auth {
            AsciiAuth::NotAuthCommand => reply::CLIENT_ERROR_UNAUTHENTICATED,
            AsciiAuth::BadTermination => reply::CLIENT_ERROR_BAD_TERMINATION,
            AsciiAuth::BadFormat => reply::CLIENT_ERROR_AUTH_TOKEN_FORMAT,
            AsciiAuth::Credentials { user, password } => {
                let ok = self
                    .shared
                    .auth
                    .ascii_users
                    .as_ref()
                    .is_some_and(|users| users.read().check(user, password));
                self.shared.auth.count(ok);
                if ok {
                    self.auth.authenticated = true;
                    reply::STORED
                } else {
                    tracing::info!(
                        "authentication failed for user {}",
                        String::from_utf8_lossy(user)
                    );
                    reply::CLIENT_ERROR_AUTH_FAILURE
                }
            }
        };
        reply::line(self.out.text(), text);
        LoginStep::Done(used)
    }
}

/// Checks a `PLAIN` message against the password DB, read now as memcached reads it at every
/// attempt. An authorization identity other than the user itself is refused, as Cyrus refuses it.
fn sasl_plain_ok(shared: &Shared, message: &[u8]) -> bool {
    let Some(plain) = wire::parse_plain(message) else {
        return false;
    };
    if plain.authcid.is_empty()
        || plain.password.is_empty()
        || !(plain.authzid.is_empty() || plain.authzid == plain.authcid)
    {
        return false;
    }
    let Some(path) = shared.config.auth.sasl_pwdb.as_deref() else {
        return false;
    };
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) => {
            tracing::warn!("Failed to open sasl database <{}>: {e}", path.display());
            return false;
        }
    };
    let ok = PasswordFile::parse_sasl_pwdb(&text).check(plain.authcid, plain.password);
    if !ok {
        tracing::info!(
            "User <{}> failed to authenticate",
            String::from_utf8_lossy(plain.authcid)
        );
    }
    ok
}

/// With `-Y`, reloads the users on SIGHUP, as memcached does; a file that cannot be read or is
/// malformed leaves the old users in place. Without `-Y` nothing is installed (SIGHUP keeps its
/// default action).
pub fn spawn_reload_on_sighup(shared: &Arc<Shared>) -> anyhow::Result<()> {
    let Some((path, _)) = shared.config.auth.auth_file.clone() else {
        return Ok(());
    };
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = signal(SignalKind::hangup()).context("cannot catch SIGHUP")?;
    let shared = shared.clone();
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match PasswordFile::load_auth_file(&path) {
                Ok(users) => {
                    tracing::info!("SIGHUP: reloaded {} users from the auth file", users.len());
                    if let Some(lock) = &shared.auth.ascii_users {
                        *lock.write() = Arc::new(users);
                    }
                }
                Err(e) => tracing::warn!("SIGHUP: {e}; keeping the previous users"),
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_file_like_memcached() {
        let file = PasswordFile::parse_auth_file(b"alice:secret\r\nbob:pa:ss\ncarol:\nalice:two")
            .expect("valid");
        assert!(file.check(b"alice", b"secret"));
        assert!(file.check(b"alice", b"two"));
        assert!(file.check(b"bob", b"pa:ss"));
        assert!(file.check(b"carol", b""));
        assert!(!file.check(b"alice", b"secre"));
        assert!(!file.check(b"alice", b"secret\r"));
        assert!(!file.check(b"dave", b"secret"));
        assert!(PasswordFile::parse_auth_file(b"alice:secret\n\nbob:x\n").is_none());
        assert!(PasswordFile::parse_auth_file(b"alice\n").is_none());
    }

    #[test]
    fn sasl_pwdb_like_memcached() {
        let file = PasswordFile::parse_sasl_pwdb(b"alice:secret:extra\r\nalice:other\n\nbob:pw\n");
        assert!(file.check(b"alice", b"secret"));
        assert!(
            !file.check(b"alice", b"other"),
            "only the first line of a user counts"
        );
        assert!(file.check(b"bob", b"pw"));
        assert!(!file.check(b"bob", b"pw\n"));
    }

    #[test]
    fn flags_checked_like_memcached() {
        let pwdb = || Some(std::ffi::OsString::from("/nonexistent"));
        assert!(AuthConfig::from_flags(true, None, pwdb(), "ascii", 0).is_err());
        assert!(AuthConfig::from_flags(true, None, pwdb(), "auto", 1).is_err());
        assert!(AuthConfig::from_flags(true, None, None, "auto", 0).is_err());
        let c = AuthConfig::from_flags(true, None, pwdb(), "auto", 0).expect("valid");
        assert_eq!(c.forced_protocol(), Some("binary"));
        assert!(AuthConfig::from_flags(false, Some("/nonexistent"), None, "auto", 0).is_err());
        assert_eq!(
            AuthConfig::default().forced_protocol(),
            None,
            "no auth, no change"
        );
    }
}
