//! logs_manager's logic: `log` (the store: ingest, queries, tails, retention) and `records`
//! (filters and the API's record shapes).

pub mod log;
pub mod records;
