//! Time as a parameter: the CA reads "now" only through a `Clock`, so tests can pin it and
//! validity windows, CRL schedules and expiry sweeps are reproducible.

use time::OffsetDateTime;

/// A source of the current time.
pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
}

/// The wall clock, truncated to whole seconds (X.509 times carry no fractions).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one reading of the wall clock
    fn now(&self) -> OffsetDateTime {
        let now = OffsetDateTime::now_utc();
        now.replace_nanosecond(0).unwrap_or(now)
    }
}

/// A clock that always answers the same instant.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub OffsetDateTime);

impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        self.0
    }
}

/// The monotonic clock, for timeouts and durations (never for certificate times).
#[allow(clippy::disallowed_methods)] // the one reading of the monotonic clock
pub fn monotonic_now() -> std::time::Instant {
    std::time::Instant::now()
}
