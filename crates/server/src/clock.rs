//! The server's clock, in memcached's terms: `rel_time` seconds since a start point, and the
//! conversion of client exptimes into that clock (memcached's `realtime()`).

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferrocache_store::RelTime;

/// Exptimes up to this many seconds are relative; above, absolute unix times (memcached's
/// `REALTIME_MAXDELTA`, 30 days).
pub const REALTIME_MAXDELTA: i64 = 60 * 60 * 24 * 30;

/// memcached starts its relative clock this many seconds in the past (`ITEM_UPDATE_INTERVAL + 2`),
/// so that relative time 1 ("already expired") is always in the past.
const START_OFFSET: u32 = 62;

/// Monotonic relative clock anchored to the wall clock at start. Like memcached's
/// `current_time`, [`Clock::now`] reads a value that [`Clock::tick`] sets when each second turns,
/// so the request path never asks the system for the time.
#[derive(Debug)]
pub struct Clock {
    started: Instant,
    /// Unix time of relative time 0.
    process_started: i64,
    /// The relative time of the last tick.
    current: AtomicU32,
}

impl Clock {
    pub fn new() -> Clock {
        let unix_now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        Clock {
            started: Instant::now(),
            process_started: unix_now - i64::from(START_OFFSET),
            current: AtomicU32::new(START_OFFSET),
        }
    }

    /// Seconds on the relative clock, as of the last [`Clock::tick`].
    pub fn now(&self) -> RelTime {
        self.current.load(Relaxed)
    }

    /// Reads the system's monotonic clock and sets the relative time from it. Returns how long
    /// until the next second turns: the server's ticker sleeps that long and ticks again.
    pub fn tick(&self) -> Duration {
        let elapsed = self.started.elapsed();
        self.current.store(
            START_OFFSET.saturating_add(elapsed.as_secs() as u32),
            Relaxed,
        );
        Duration::from_secs(1) - Duration::from_nanos(u64::from(elapsed.subsec_nanos()))
    }

    /// Unix time now, as memcached reports it in `stats time`.
    pub fn unix_now(&self) -> i64 {
        self.to_unix(self.now())
    }

    /// The unix time of a relative time (memcached's `process_started + t`).
    pub fn to_unix(&self, time: RelTime) -> i64 {
        self.process_started + i64::from(time)
    }

    /// Seconds since the server started (`stats uptime`), as of the last tick.
    pub fn uptime(&self) -> u32 {
        self.now() - START_OFFSET
    }

    /// memcached's `realtime(EXPTIME_TO_POSITIVE_TIME(exptime))`: 0 stays "never"; a negative exptime
    /// becomes already expired; up to 30 days is relative to now; above is an absolute unix time,
    /// already expired when not after the start.
    pub fn exptime_to_rel(&self, exptime: i32) -> RelTime {
        let exptime = if exptime < 0 {
            REALTIME_MAXDELTA + 1
        } else {
            i64::from(exptime)
        };
        self.realtime(exptime)
    }

    /// The binary protocol's exptime: memcached widens the unsigned 32-bit field to `time_t`, so
    /// it is never negative; 0xffffffff is an absolute time in 2106, not "already expired".
    pub fn binary_exptime_to_rel(&self, exptime: u32) -> RelTime {
        self.realtime(i64::from(exptime))
    }

    /// The relative time of a unix time (0 stays "never"; a time not after the start is
    /// already past), the inverse of [`Clock::to_unix`].
    pub fn unix_to_rel(&self, unix: i64) -> RelTime {
        match unix {
            0 => 0,
            _ if unix <= self.process_started => 1,
            _ => u32::try_from(unix - self.process_started).unwrap_or(u32::MAX),
        }
    }

    fn realtime(&self, exptime: i64) -> RelTime {
        if exptime == 0 {
            return 0;
        }
        if exptime > REALTIME_MAXDELTA {
            return self.unix_to_rel(exptime);
        }
        u32::try_from(exptime + i64::from(self.now())).unwrap_or(u32::MAX)
    }

    /// memcached's `flush_all [delay]`: the relative time from which items stored before are gone.
    pub fn flush_point(&self, delay: i64) -> RelTime {
        if delay > 0 {
            self.realtime(delay)
        } else {
            self.now()
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_exptimes_like_memcached() {
        let clock = Clock::new();
        let now = clock.now();
        assert_eq!(clock.exptime_to_rel(0), 0);
        assert_eq!(clock.exptime_to_rel(10), now + 10);
        assert_eq!(clock.exptime_to_rel(-1), 1);
        assert_eq!(
            clock.exptime_to_rel(REALTIME_MAXDELTA as i32),
            now + REALTIME_MAXDELTA as u32
        );
        // An absolute time in the past.
        assert_eq!(clock.exptime_to_rel(REALTIME_MAXDELTA as i32 + 1), 1);
        // An absolute time one hour ahead.
        let in_an_hour = clock.unix_now() + 3600;
        assert_eq!(clock.exptime_to_rel(in_an_hour as i32), now + 3600);
        // The binary protocol's field is unsigned: all ones is far in the future.
        assert_eq!(clock.uptime(), 0);
        assert_eq!(clock.binary_exptime_to_rel(0), 0);
        assert_eq!(clock.binary_exptime_to_rel(10), now + 10);
        assert_eq!(
            clock.binary_exptime_to_rel(u32::MAX),
            (i64::from(u32::MAX) - clock.process_started) as u32
        );
    }

    #[test]
    fn moves_only_when_it_ticks() {
        let clock = Clock::new();
        assert_eq!(clock.now(), START_OFFSET);
        // Pretend the server started 3.25 seconds ago.
        let clock = Clock {
            started: Instant::now() - Duration::from_millis(3250),
            ..clock
        };
        assert_eq!(clock.now(), START_OFFSET, "no tick yet");
        let until_next = clock.tick();
        assert_eq!(clock.now(), START_OFFSET + 3);
        assert_eq!(clock.uptime(), 3);
        assert!(
            until_next <= Duration::from_millis(750) && until_next > Duration::from_millis(500),
            "{until_next:?}"
        );
        assert_eq!(clock.exptime_to_rel(10), START_OFFSET + 13);
    }
}
