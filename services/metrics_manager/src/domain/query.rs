//! Range queries: the series a set of matchers selects, evaluated at every `step` from `start` to
//! `end` through a function over a window (value, rate, increase, avg/min/max over time), then
//! optionally aggregated by labels (sum, avg, max, min, count) or turned into a quantile of
//! histogram buckets (`le`), as Prometheus's `histogram_quantile(q, sum by (…, le)(rate(…)))`.

use std::collections::BTreeMap;

use super::{
    series::{Labels, Matcher, NAME},
    tsdb::{Bucket, MINUTE_MS, Resolution, Tsdb},
};
use crate::model::{QueryAggregation as Aggregation, QueryFunction as Function};

#[derive(Debug, Clone)]
pub struct Query {
    pub matchers: Vec<Matcher>,
    pub start: i64,
    pub end: i64,
    pub step: i64,
    /// The function's window (ms); default: the step, at least a minute.
    pub window: Option<i64>,
    pub function: Function,
    pub aggregation: Option<Aggregation>,
    pub by: Vec<String>,
    pub quantile: Option<f64>,
}

pub struct Evaluated {
    pub resolution: Resolution,
    pub series: Vec<(Labels, Vec<(i64, f64)>)>,
}

/// A series' value at each step (`None` where it has none).
type Steps = Vec<Option<f64>>;
/// Series (or groups) with their values at each step.
type Grouped = Vec<(Labels, Steps)>;

/// How far back a step looks for its value.
const LOOKBACK_MS: i64 = 5 * MINUTE_MS;
pub const MAX_POINTS: i64 = 11_000;
pub const MAX_SERIES: usize = 10_000;
/// Series × points a query may compute.
pub const MAX_CELLS: i64 = 2_000_000;

#[derive(Debug)]
pub enum QueryError {
    /// The query cannot be answered as asked (the message says why).
    Invalid(&'static str, String),
    Io(std::io::Error),
}

impl From<std::io::Error> for QueryError {
    fn from(e: std::io::Error) -> Self {
        QueryError::Io(e)
    }
}

/// Evaluates `q`. Raw samples answer while the whole range is within `raw_horizon` (the oldest
/// time raw samples are kept for) and the step is under a minute; otherwise the 1-minute rollups.
pub fn evaluate(db: &Tsdb, q: &Query, raw_horizon: i64) -> Result<Evaluated, QueryError> {
    if q.end < q.start {
        return Err(QueryError::Invalid(
            "bad_range",
            "end is before start".into(),
        ));
    }
    if q.step <= 0 {
        return Err(QueryError::Invalid(
            "bad_step",
            "step must be positive".into(),
        ));
    }
    if (q.end - q.start) / q.step + 1 > MAX_POINTS {
        return Err(QueryError::Invalid(
            "too_many_points",
            format!("(end - start) / step gives over {MAX_POINTS} points: take a larger step"),
        ));
    }
    let mut window = q.window.unwrap_or(q.step.max(MINUTE_MS));
    let lookback = match q.function {
        Function::Value => LOOKBACK_MS,
        _ => window,
    };
    // Raw only when everything the first step looks back over is still raw.
    let resolution = if q.step < MINUTE_MS && q.start.saturating_sub(lookback) >= raw_horizon {
        Resolution::Raw
    } else {
        Resolution::Minute
    };
    if resolution == Resolution::Minute && matches!(q.function, Function::Rate | Function::Increase)
    {
        // Two minutes at least, or a window could hold only one.
        window = window.max(2 * MINUTE_MS);
    }
    let reach = match q.function {
        Function::Value => LOOKBACK_MS,
        _ => window,
    };
    // Counted before any chunk is read: an answer's size is bounded before it is built.
    let matching = db.matching(&q.matchers);
    if matching > MAX_SERIES {
        return Err(QueryError::Invalid(
            "too_many_series",
            format!("the matchers select {matching} series (at most {MAX_SERIES}): add matchers"),
        ));
    }
    let points = (q.end - q.start) / q.step + 1;
    if matching as i64 * points > MAX_CELLS {
        return Err(QueryError::Invalid(
            "too_many_points",
            format!(
                "{matching} series × {points} points is over {MAX_CELLS}: add matchers or take a larger step"
            ),
        ));
    }
    let selected = db.select(
        &q.matchers,
        q.start.saturating_sub(reach),
        q.end,
        resolution,
    )?;
    let span = match resolution {
        Resolution::Raw => 0,
        Resolution::Minute => MINUTE_MS,
    };
    let steps: Vec<i64> = (0..=(q.end - q.start) / q.step)
        .map(|i| q.start + i * q.step)
        .collect();
    let evaluated: Grouped = selected
        .iter()
        .map(|(labels, buckets)| {
            let values = steps
                .iter()
                .map(|&t| at_step(buckets, t, window, q.function, span))
                .collect();
            ((**labels).clone(), values)
        })
        .collect();

    let grouped = if let Some(quantile) = q.quantile {
        if !(0.0..=1.0).contains(&quantile) {
            return Err(QueryError::Invalid(
                "bad_quantile",
                "quantile must be between 0 and 1".into(),
            ));
        }
        histogram_quantile(quantile, evaluated, &q.by, steps.len())?
    } else if let Some(aggregation) = q.aggregation {
        aggregate(aggregation, evaluated, &q.by, steps.len())
    } else {
        evaluated
    };
    let series = grouped
        .into_iter()
        .map(|(labels, values)| {
            let points = steps
                .iter()
                .zip(values)
                .filter_map(|(&t, v)| v.filter(|v| v.is_finite()).map(|v| (t, v)))
                .collect::<Vec<_>>();
            (labels, points)
        })
        .filter(|(_, points)| !points.is_empty())
        .collect();
    Ok(Evaluated { resolution, series })
}

/// The function's value at step `t` over sorted `buckets`, each covering `span` ms from its time
/// (0 for raw samples, a minute for rollups): those that end in `(t - window, t]` count, so an
/// hour's step over rollups holds exactly that hour's minutes.
fn at_step(buckets: &[Bucket], t: i64, window: i64, function: Function, span: i64) -> Option<f64> {
    let end = buckets.partition_point(|b| b.t + span <= t);
    let reach = if function == Function::Value {
        LOOKBACK_MS
    } else {
        window
    };
    let start = buckets.partition_point(|b| b.t + span <= t.saturating_sub(reach));
    let inside = &buckets[start..end];
    match function {
        Function::Value => inside.last().map(|b| b.last),
        Function::Rate | Function::Increase => {
            if inside.len() < 2 {
                return None;
            }
            let mut increase = 0.0;
            for pair in inside.windows(2) {
                let (prev, cur) = (pair[0].last, pair[1].last);
                increase += if cur >= prev { cur - prev } else { cur };
            }
            if function == Function::Increase {
                return Some(increase);
            }
            let secs = (inside[inside.len() - 1].t - inside[0].t) as f64 / 1000.0;
            Some(increase / secs)
        }
        Function::AvgOverTime => {
            let count: f64 = inside.iter().map(|b| b.count).sum();
            (count > 0.0).then(|| inside.iter().map(|b| b.sum).sum::<f64>() / count)
        }
        Function::MaxOverTime => inside.iter().map(|b| b.max).reduce(f64::max),
        Function::MinOverTime => inside.iter().map(|b| b.min).reduce(f64::min),
    }
}

fn group_labels(labels: &Labels, by: &[String]) -> Labels {
    by.iter()
        .filter_map(|l| labels.get(l).map(|v| (l.clone(), v.clone())))
        .collect()
}

fn aggregate(aggregation: Aggregation, series: Grouped, by: &[String], steps: usize) -> Grouped {
    let mut groups: BTreeMap<Labels, Vec<Vec<f64>>> = BTreeMap::new();
    for (labels, values) in series {
        let group = groups
            .entry(group_labels(&labels, by))
            .or_insert_with(|| vec![Vec::new(); steps]);
        for (slot, v) in group.iter_mut().zip(values) {
            if let Some(v) = v.filter(|v| !v.is_nan()) {
                slot.push(v);
            }
        }
    }
    groups
        .into_iter()
        .map(|(labels, slots)| {
            let values = slots
                .into_iter()
                .map(|vs| {
                    if vs.is_empty() {
                        return None;
                    }
                    Some(match aggregation {
                        Aggregation::Sum => vs.iter().sum(),
                        Aggregation::Avg => vs.iter().sum::<f64>() / vs.len() as f64,
                        Aggregation::Max => vs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                        Aggregation::Min => vs.iter().copied().fold(f64::INFINITY, f64::min),
                        Aggregation::Count => vs.len() as f64,
                    })
                })
                .collect();
            (labels, values)
        })
        .collect()
}

/// `histogram_quantile`: bucket series (`le`) summed by `by` and `le`, then the quantile found by
/// linear interpolation inside the bucket that holds its rank.
fn histogram_quantile(
    q: f64,
    series: Grouped,
    by: &[String],
    steps: usize,
) -> Result<Grouped, QueryError> {
    if series.iter().any(|(l, _)| !l.contains_key("le")) {
        return Err(QueryError::Invalid(
            "not_a_histogram",
            "a quantile needs histogram bucket series (an `le` label), e.g. name=…_bucket".into(),
        ));
    }
    let mut with_le: Vec<String> = by.iter().filter(|l| *l != "le").cloned().collect();
    with_le.push("le".into());
    let summed = aggregate(Aggregation::Sum, series, &with_le, steps);
    let mut groups: BTreeMap<Labels, Vec<(f64, Steps)>> = BTreeMap::new();
    for (mut labels, values) in summed {
        let le = labels.remove("le").unwrap_or_default();
        let bound = match le.as_str() {
            "+Inf" | "Inf" => f64::INFINITY,
            v => match v.parse::<f64>() {
                Ok(b) => b,
                Err(_) => continue,
            },
        };
        groups.entry(labels).or_default().push((bound, values));
    }
    Ok(groups
        .into_iter()
        .map(|(labels, mut buckets)| {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            let values = (0..steps)
                .map(|i| {
                    let counts: Vec<(f64, f64)> = buckets
                        .iter()
                        .filter_map(|(bound, vs)| vs[i].map(|c| (*bound, c)))
                        .collect();
                    quantile_of(q, &counts)
                })
                .collect();
            (labels, values)
        })
        .collect())
}

/// The quantile of cumulative `(upper bound, count)` buckets, sorted by bound.
fn quantile_of(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let &(last_bound, total) = buckets.last()?;
    if !last_bound.is_infinite() || total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for (i, &(bound, count)) in buckets.iter().enumerate() {
        if count >= rank {
            if bound.is_infinite() {
                // Above the highest finite bound: that bound is the best answer there is.
                return Some(if i == 0 { f64::NAN } else { buckets[i - 1].0 });
            }
            let lower = if i == 0 { 0.0_f64.min(bound) } else { prev.0 };
            let in_bucket = count - prev.1;
            if in_bucket <= 0.0 {
                return Some(bound);
            }
            return Some(lower + (bound - lower) * (rank - prev.1) / in_bucket);
        }
        prev = (bound, count);
    }
    None
}

/// The query a metric name and matchers make (the name first, as `__name__`).
pub fn matchers_for(name: Option<&str>, rest: Vec<Matcher>) -> Vec<Matcher> {
    name.map(|n| Matcher::Equal(NAME.into(), n.into()))
        .into_iter()
        .chain(rest)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(t: i64, v: f64) -> Bucket {
        Bucket {
            t,
            min: v,
            max: v,
            sum: v,
            count: 1.0,
            last: v,
        }
    }

    #[test]
    fn rate_counts_a_reset_as_a_restart_from_zero() {
        let buckets = [b(0, 10.0), b(10_000, 20.0), b(20_000, 5.0), b(30_000, 15.0)];
        let rate = at_step(&buckets, 30_000, 60_000, Function::Rate, 0).unwrap();
        assert!((rate - 25.0 / 30.0).abs() < 1e-9, "{rate}");
        assert_eq!(
            at_step(&buckets, 30_000, 60_000, Function::Increase, 0),
            Some(25.0)
        );
        assert_eq!(
            at_step(&buckets, 25_000, 60_000, Function::Value, 0),
            Some(5.0)
        );
        assert_eq!(at_step(&buckets, 0, 60_000, Function::Rate, 0), None);
    }

    #[test]
    fn quantiles_interpolate_inside_their_bucket() {
        let buckets = [
            (0.1, 50.0),
            (0.5, 90.0),
            (1.0, 100.0),
            (f64::INFINITY, 100.0),
        ];
        assert!((quantile_of(0.5, &buckets).unwrap() - 0.1).abs() < 1e-9);
        assert!((quantile_of(0.7, &buckets).unwrap() - 0.3).abs() < 1e-9);
        assert!((quantile_of(0.95, &buckets).unwrap() - 0.75).abs() < 1e-9);
        let above = [(1.0, 1.0), (f64::INFINITY, 10.0)];
        assert_eq!(quantile_of(0.99, &above), Some(1.0));
        assert_eq!(quantile_of(0.5, &[(1.0, 0.0), (f64::INFINITY, 0.0)]), None);
    }
}
