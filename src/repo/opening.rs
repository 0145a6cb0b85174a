//! What opening a repository reads before it can unlock it.

use super::{keys, Backend, CONFIG_KEY, MARKER_KEY};
use crate::error::{BackendError, Error, Result};

/// The marker, and the config and key slots as read (their errors count
/// only once the marker said this is a repository).
pub struct Read {
    pub marker: Vec<u8>,
    pub config: std::result::Result<Vec<u8>, BackendError>,
    pub slots: Result<keys::SlotsRead>,
}

/// Reads the marker, the config and the key slots. On remote storage at
/// once: each is a round trip, and every command opens. A local directory
/// is read in order, so that one that is no repository is told so before
/// anything else in it is read (its `config` may be anything, a pipe
/// included).
pub fn read(backend: &dyn Backend) -> Result<Read> {
    let no_marker = |e: BackendError| {
        if e.is_not_found() {
            Error::NoRepository(backend.location())
        } else {
            e.into()
        }
    };
    if !backend.is_remote() {
        let marker = backend.get(MARKER_KEY).map_err(no_marker)?;
        return Ok(Read { marker, config: backend.get(CONFIG_KEY), slots: keys::read_slots(backend) });
    }
    let (marker, (config, slots)) = crate::pool::beside(
        || backend.get(MARKER_KEY),
        || crate::pool::beside(|| backend.get(CONFIG_KEY), || keys::read_slots(backend)),
    );
    Ok(Read { marker: marker.map_err(no_marker)?, config, slots })
}
