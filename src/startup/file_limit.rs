//! The process's open-file limit, and the share of it that client connections may take.
//!
//! Every connection is a file descriptor, and so are the database's files, checkpoints being
//! written and data sets being read. When connections take them all, training fails with "Too
//! many open files" and nothing new can be accepted: so the connections get a cap below the
//! limit, and the rest is kept in reserve.

/// Descriptors always kept out of the connections' reach: the SQLite files (five connections
/// of three files each), checkpoints and data sets being read or written, logs, the runtime.
pub const MIN_RESERVE: u64 = 64;

/// Raises the soft open-file limit to the hard one (what mature servers do at start-up: the
/// soft default of 1,024 is a relic) and returns the limit now in force; `None` where the
/// platform has no such limit or it cannot be read.
pub fn raise_open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we own; no other preconditions.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            // macOS refuses more than OPEN_MAX even when the hard limit is "unlimited".
            #[cfg(target_os = "macos")]
            let wanted = limit.rlim_max.min(libc::OPEN_MAX as libc::rlim_t);
            #[cfg(not(target_os = "macos"))]
            let wanted = limit.rlim_max;
            let raised = libc::rlimit {
                rlim_cur: wanted,
                rlim_max: limit.rlim_max,
            };
            // SAFETY: setrlimit reads the struct we own; failure leaves the limit unchanged.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                limit.rlim_cur = raised.rlim_cur;
            }
        }
        // RLIM_INFINITY is the largest value; no real process gets near it.
        Some(limit.rlim_cur)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Descriptors kept for everything but connections under a limit: a quarter of it, and at
/// least [`MIN_RESERVE`].
pub fn reserve(limit: u64) -> u64 {
    (limit / 4).max(MIN_RESERVE)
}

/// The connection cap: `configured` when non-zero, else what the open-file limit leaves after
/// the reserve (at least 1). Without a known limit, 1,024 connections.
pub fn connection_cap(configured: usize, open_file_limit: Option<u64>) -> usize {
    if configured > 0 {
        return configured;
    }
    match open_file_limit {
        Some(limit) => usize::try_from(limit.saturating_sub(reserve(limit)))
            .unwrap_or(usize::MAX)
            .max(1),
        None => 1024,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_derived_cap_keeps_a_quarter_of_the_descriptors_and_at_least_64() {
        assert_eq!(connection_cap(0, Some(1024)), 768);
        assert_eq!(connection_cap(0, Some(65_536)), 49_152);
        assert_eq!(connection_cap(0, Some(160)), 96);
        assert_eq!(connection_cap(0, Some(64)), 1, "a tiny limit still serves");
        assert_eq!(connection_cap(0, None), 1024);
        assert_eq!(connection_cap(8, Some(1024)), 8, "a configured cap wins");
    }

    #[cfg(unix)]
    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let limit = raise_open_file_limit().expect("unix has an open-file limit");
        let mut now = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut now) }, 0);
        assert_eq!(now.rlim_cur, limit);
        assert!(limit >= 64, "{limit}");
    }
}
