//! The one place that reads the wall clock. Everything else takes `now` as an argument.

/// Seconds since the Unix epoch. All stored times use this unit.
pub type UnixTime = i64;

/// A source of the current time, so tests and handlers can agree on one `now`.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> UnixTime;

    /// Milliseconds since the Unix epoch, for ids that sort by creation time
    /// ([`crate::rand::ordered_id`]); never stored as a time. Clocks of whole seconds may
    /// keep this default.
    fn now_ms(&self) -> i64 {
        self.now().saturating_mul(1000)
    }
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // this is the clock module
    fn now(&self) -> UnixTime {
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(_) => 0,
        }
    }

    #[allow(clippy::disallowed_methods)] // this is the clock module
    fn now_ms(&self) -> i64 {
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => d.as_millis() as i64,
            Err(_) => 0,
        }
    }
}

/// Formats a Unix time as RFC 3339 with milliseconds, as Auth0 profiles show it.
pub fn rfc3339(t: UnixTime) -> String {
    let fmt =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].000Z");
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|dt| dt.format(&fmt).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20.000Z");
    }
}
