//! Aggregation operators (Prometheus 2.42's `aggregation`), including the
//! exact heap behaviour of `topk`/`bottomk` (which series win ties).

use std::borrow::Cow;
use std::collections::HashMap;

use super::ast::AggOp;
use super::labels::{self, Builder, Lbls};
use super::{ESample, Vector};
use crate::types::Error;

/// The parameter of an aggregation.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Param<'a> {
    /// `topk`, `bottomk`, `quantile` (and 0 when there is none).
    Number(f64),
    /// `count_values`.
    Label(&'a str),
}

/// One element of a `topk`/`bottomk` heap.
#[derive(Debug, Clone)]
struct HeapItem {
    labels: Lbls,
    v: f64,
}

/// Go's `container/heap` over a slice with a `less` function.
struct GoHeap {
    items: Vec<HeapItem>,
    /// `true`: `vectorByValueHeap` (min-heap, for topk); `false`:
    /// `vectorByReverseValueHeap` (max-heap, for bottomk).
    by_value: bool,
}

impl GoHeap {
    fn less(&self, i: usize, j: usize) -> bool {
        let (a, b) = (self.items[i].v, self.items[j].v);
        if a.is_nan() {
            return true;
        }
        if self.by_value { a < b } else { a > b }
    }

    fn up(&mut self, mut j: usize) {
        while j > 0 {
            let i = (j - 1) / 2;
            if !self.less(j, i) {
                break;
            }
            self.items.swap(i, j);
            j = i;
        }
    }

    fn down(&mut self, i0: usize, n: usize) {
        let mut i = i0;
        loop {
            let j1 = 2 * i + 1;
            if j1 >= n {
                break;
            }
            let mut j = j1;
            let j2 = j1 + 1;
            if j2 < n && self.less(j2, j1) {
                j = j2;
            }
            if !self.less(j, i) {
                break;
            }
            self.items.swap(i, j);
            i = j;
        }
    }

    fn push(&mut self, item: HeapItem) {
        self.items.push(item);
        let n = self.items.len();
        self.up(n - 1);
    }

    fn pop(&mut self) {
        let n = self.items.len() - 1;
        self.items.swap(0, n);
        self.down(0, n);
        self.items.pop();
    }
}

struct Group {
    labels: Lbls,
    value: f64,
    mean: f64,
    count: usize,
    heap: Option<GoHeap>,
    values: Vec<f64>,
}

/// Prometheus's `convertibleToInt64`.
fn convertible_to_i64(v: f64) -> bool {
    (-9_223_372_036_854_775_808.0..=9_223_372_036_854_775_807.0).contains(&v)
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`.
pub(crate) fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        format!("{v}")
    }
}

/// Go's `quantile` helper (linear interpolation between closest ranks).
pub(crate) fn quantile(q: f64, mut values: Vec<f64>) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    // NaNs sort first, as with Go's vectorByValueHeap.
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (n - 1.0).min(lower + 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// Aggregates one step's vector. `keys` are the precomputed grouping keys
/// of the elements of `vec`.
pub(crate) fn aggregate(
    op: AggOp,
    grouping: &[String],
    without: bool,
    param: Param<'_>,
    vec: &Vector,
    keys: &[&[u8]],
) -> Result<Vector, Error> {
    let mut k: i64 = 0;
    let mut q = 0.0;
    let mut value_label = "";
    let mut grouping: Vec<String> = grouping.to_vec();
    let mut recompute_key = false;
    match (op, param) {
        (AggOp::Topk | AggOp::Bottomk, Param::Number(f)) => {
            if !convertible_to_i64(f) {
                return Err(Error::Execution(format!(
                    "Scalar value {} overflows int64",
                    format_float(f)
                )));
            }
            k = f as i64;
            if k < 1 {
                return Ok(Vec::new());
            }
        }
        (AggOp::Quantile, Param::Number(f)) => q = f,
        (AggOp::CountValues, Param::Label(l)) => {
            if !labels::is_valid_label_name(l) {
                return Err(Error::Execution(format!("invalid label name {l:?}")));
            }
            value_label = l;
            if !without {
                grouping.push(l.to_string());
                grouping.sort();
                recompute_key = true;
            }
        }
        _ => {}
    }

    let mut groups: Vec<Group> = Vec::new();
    // Keys are borrowed from the precomputed ones unless recomputed.
    let mut index: HashMap<Cow<'_, [u8]>, usize, foldhash::fast::RandomState> = HashMap::default();
    let mut counted: Lbls;
    for (si, s) in vec.iter().enumerate() {
        let mut metric = &s.labels;
        if op == AggOp::CountValues {
            counted = Builder::new(metric)
                .set(value_label, &format_float(s.v))
                .labels();
            metric = &counted;
            recompute_key = true;
        }
        let key: Cow<'_, [u8]> = if recompute_key {
            Cow::Owned(labels::grouping_key(metric, &grouping, without))
        } else {
            Cow::Borrowed(keys.get(si).copied().unwrap_or_default())
        };
        let Some(&gi) = index.get(key.as_ref()) else {
            let m = if without {
                let mut b = Builder::new(metric);
                b.del(&grouping).del(&[labels::METRIC_NAME]);
                b.labels()
            } else if !grouping.is_empty() {
                Builder::new(metric).keep(&grouping).labels()
            } else {
                labels::empty()
            };
            let mut g = Group {
                labels: m,
                value: s.v,
                mean: s.v,
                count: 1,
                heap: None,
                values: Vec::new(),
            };
            match op {
                AggOp::Stdvar | AggOp::Stddev => g.value = 0.0,
                AggOp::Topk | AggOp::Bottomk => {
                    g.heap = Some(GoHeap {
                        items: vec![HeapItem {
                            labels: s.labels.clone(),
                            v: s.v,
                        }],
                        by_value: op == AggOp::Topk,
                    })
                }
                AggOp::Quantile => g.values.push(s.v),
                AggOp::Group => g.value = 1.0,
                _ => {}
            }
            index.insert(key, groups.len());
            groups.push(g);
            continue;
        };
        let g = &mut groups[gi];
        match op {
            AggOp::Sum => g.value += s.v,
            AggOp::Avg => {
                g.count += 1;
                let n = g.count as f64;
                if g.mean.is_infinite() {
                    if s.v.is_infinite() && (g.mean > 0.0) == (s.v > 0.0) {
                        continue;
                    }
                    if !s.v.is_infinite() && !s.v.is_nan() {
                        continue;
                    }
                }
                g.mean += s.v / n - g.mean / n;
            }
            AggOp::Group => {}
            AggOp::Max => {
                if g.value < s.v || g.value.is_nan() {
                    g.value = s.v;
                }
            }
            AggOp::Min => {
                if g.value > s.v || g.value.is_nan() {
                    g.value = s.v;
                }
            }
            AggOp::Count | AggOp::CountValues => g.count += 1,
            AggOp::Stdvar | AggOp::Stddev => {
                g.count += 1;
                let delta = s.v - g.mean;
                g.mean += delta / g.count as f64;
                g.value += delta * (s.v - g.mean);
            }
            AggOp::Topk | AggOp::Bottomk => {
                let Some(h) = g.heap.as_mut() else { continue };
                let top = h.items[0].v;
                let better = if op == AggOp::Topk {
                    top < s.v
                } else {
                    top > s.v
                };
                if (h.items.len() as i64) < k || better || top.is_nan() {
                    let item = HeapItem {
                        labels: s.labels.clone(),
                        v: s.v,
                    };
                    if h.items.len() as i64 == k {
                        if k == 1 {
                            h.items[0] = item;
                            continue;
                        }
                        h.pop();
                    }
                    h.push(item);
                }
            }
            AggOp::Quantile => g.values.push(s.v),
        }
    }

    let mut out = Vec::with_capacity(groups.len());
    for g in groups {
        let value = match op {
            AggOp::Avg => g.mean,
            AggOp::Count | AggOp::CountValues => g.count as f64,
            AggOp::Stdvar => g.value / g.count as f64,
            AggOp::Stddev => (g.value / g.count as f64).sqrt(),
            AggOp::Topk | AggOp::Bottomk => {
                if let Some(h) = g.heap {
                    let mut items = h.items;
                    // Highest first for topk, lowest first for bottomk.
                    items.sort_by(|a, b| {
                        let ord = a.v.partial_cmp(&b.v).unwrap_or(std::cmp::Ordering::Equal);
                        if op == AggOp::Topk {
                            ord.reverse()
                        } else {
                            ord
                        }
                    });
                    out.extend(items.into_iter().map(|i| ESample {
                        labels: i.labels,
                        t: 0,
                        v: i.v,
                    }));
                }
                continue;
            }
            AggOp::Quantile => quantile(q, g.values),
            _ => g.value,
        };
        out.push(ESample {
            labels: g.labels,
            t: 0,
            v: value,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_interpolates() {
        assert_eq!(quantile(0.5, vec![1.0, 2.0, 3.0, 4.0]), 2.5);
        assert_eq!(quantile(0.0, vec![3.0, 1.0]), 1.0);
        assert_eq!(quantile(1.0, vec![3.0, 1.0]), 3.0);
        assert_eq!(quantile(-0.1, vec![1.0]), f64::NEG_INFINITY);
        assert_eq!(quantile(1.1, vec![1.0]), f64::INFINITY);
        assert!(quantile(f64::NAN, vec![1.0]).is_nan());
        assert!(quantile(0.5, vec![]).is_nan());
        assert!((quantile(0.9, vec![1.0, 2.0, 3.0, 4.0, 5.0]) - 4.6).abs() < 1e-12);
    }

    #[test]
    fn format_float_matches_go() {
        assert_eq!(format_float(1.0), "1");
        assert_eq!(format_float(0.1), "0.1");
        assert_eq!(format_float(1e21), "1000000000000000000000");
        assert_eq!(format_float(1.5e-7), "0.00000015");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_float(f64::NAN), "NaN");
        assert_eq!(format_float(-2.5), "-2.5");
    }
}
