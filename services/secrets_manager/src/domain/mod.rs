//! secrets_manager's logic: no HTTP types. `secrets` is the service (versions, labels, deletion,
//! access), `crypto` the at-rest format of a version, `names` the naming rules, `read_cache` recent reads' rows, `audit` the record
//! of every read and change, `rotation` the schedule that asks an endpoint for new values.

pub mod audit;
pub mod crypto;
pub mod names;
pub mod read_cache;
pub mod rotation;
pub mod secrets;
