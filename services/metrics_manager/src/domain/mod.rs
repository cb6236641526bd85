//! metrics_manager's logic: `series` (label sets, matchers, the exposition format), `tsdb` (the
//! store: head, cuts, rollups, retention), `query` (range evaluation), `scrape` (targets from the
//! registry) and `alerts` (rules, evaluation, webhooks).

pub mod alerts;
pub mod query;
pub mod scrape;
pub mod series;
pub mod tsdb;
