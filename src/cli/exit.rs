//! Exit codes. The `unlock.sh` persona keeps the legacy 0/1; `deploy-lock`
//! has one code per kind of outcome (documented in the man page and README).

/// Legacy `unlock.sh`: everything that is not success.
pub const LEGACY_FAILURE: i32 = 1;

pub const OK: i32 = 0;
/// The operation was declined (confirmation not given); nothing changed.
pub const CANCELLED: i32 = 1;
/// Command-line usage error (clap's convention).
pub const USAGE: i32 = 2;
/// The state file is not valid JSON or not the documented shape (EX_DATAERR).
pub const DATA_ERROR: i32 = 65;
/// A file or folder could not be read or written (EX_IOERR).
pub const IO_ERROR: i32 = 74;
/// The lock is held (EX_TEMPFAIL): try again later or use --wait.
pub const LOCK_HELD: i32 = 75;
/// --wait gave up (GNU timeout's code).
pub const WAIT_TIMED_OUT: i32 = 124;
