//! The S3 server's clock, read from the `Date` header of every response at
//! no extra request: [`crate::backend::Backend::server_time`] of the S3
//! backend, which a backup compares its snapshot time with.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};

/// The `Date` header of the newest response, and when it came.
#[derive(Debug, Clone, Default)]
pub(super) struct ServerClock(Arc<Mutex<Option<DateSeen>>>);

/// A `Date` header's time, and the instant it was read.
type DateSeen = (DateTime<Utc>, Instant);

impl ServerClock {
    /// The server's time now: its last `Date` plus what has passed since.
    pub(super) fn now(&self) -> Option<DateTime<Utc>> {
        let (date, seen) = (*self.0.lock().unwrap_or_else(|p| p.into_inner()))?;
        Some(date + chrono::Duration::from_std(seen.elapsed()).ok()?)
    }
}

impl aws_sdk_s3::config::Intercept for ServerClock {
    fn name(&self) -> &'static str {
        "cairn server clock"
    }

    fn read_after_transmit(
        &self,
        context: &aws_sdk_s3::config::interceptors::BeforeDeserializationInterceptorContextRef<'_>,
        _: &aws_sdk_s3::config::RuntimeComponents,
        _: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        let date = context.response().headers().get("date").and_then(|d| DateTime::parse_from_rfc2822(d).ok());
        if let Some(d) = date {
            *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((d.with_timezone(&Utc), Instant::now()));
        }
        Ok(())
    }
}
