//! Binary operators (Prometheus's `VectorBinop`, `VectorAnd`, `VectorOr`,
//! `VectorUnless`, `VectorscalarBinop` and `scalarBinop`).

use std::collections::{HashMap, HashSet};

use super::ast::{BinOp, Card, Matching};
use super::labels::{self, Builder, Lbls};
use super::{ESample, Vector};
use crate::types::{Error, Labels};

fn btos(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// Go's `math.Mod`: the remainder of `x / y` with the sign of `x`.
fn go_mod(x: f64, y: f64) -> f64 {
    x % y
}

/// The arithmetic part of an operator on two numbers.
fn arith(op: BinOp, l: f64, r: f64) -> Option<f64> {
    Some(match op {
        BinOp::Add => l + r,
        BinOp::Sub => l - r,
        BinOp::Mul => l * r,
        BinOp::Div => l / r,
        BinOp::Pow => l.powf(r),
        BinOp::Mod => go_mod(l, r),
        BinOp::Atan2 => l.atan2(r),
        _ => return None,
    })
}

fn compare(op: BinOp, l: f64, r: f64) -> bool {
    match op {
        BinOp::Eql => l == r,
        BinOp::Neq => l != r,
        BinOp::Gtr => l > r,
        BinOp::Lss => l < r,
        BinOp::Gte => l >= r,
        BinOp::Lte => l <= r,
        _ => false,
    }
}

/// An operator between two scalars (comparisons give 0 or 1).
pub(crate) fn scalar_binop(op: BinOp, l: f64, r: f64) -> f64 {
    match arith(op, l, r) {
        Some(v) => v,
        None => btos(compare(op, l, r)),
    }
}

/// An operator between two vector elements: the value and whether to keep
/// the element (comparisons keep the left value when true).
fn vector_elem_binop(op: BinOp, l: f64, r: f64) -> (f64, bool) {
    match arith(op, l, r) {
        Some(v) => (v, true),
        None => (l, compare(op, l, r)),
    }
}

/// `lhs and rhs`.
pub(crate) fn vector_and(lhs: &Vector, rhs: &Vector, lsig: &[&[u8]], rsig: &[&[u8]]) -> Vector {
    if lhs.is_empty() || rhs.is_empty() {
        return Vec::new();
    }
    let right: HashSet<&[u8]> = rsig.iter().copied().collect();
    lhs.iter()
        .zip(lsig)
        .filter(|(_, sig)| right.contains(*sig))
        .map(|(s, _)| s.clone())
        .collect()
}

/// `lhs or rhs`.
pub(crate) fn vector_or(lhs: &Vector, rhs: &Vector, lsig: &[&[u8]], rsig: &[&[u8]]) -> Vector {
    if lhs.is_empty() {
        return rhs.clone();
    }
    if rhs.is_empty() {
        return lhs.clone();
    }
    let left: HashSet<&[u8]> = lsig.iter().copied().collect();
    let mut out = lhs.clone();
    out.extend(
        rhs.iter()
            .zip(rsig)
            .filter(|(_, sig)| !left.contains(*sig))
            .map(|(s, _)| s.clone()),
    );
    out
}

/// `lhs unless rhs`.
pub(crate) fn vector_unless(lhs: &Vector, rhs: &Vector, lsig: &[&[u8]], rsig: &[&[u8]]) -> Vector {
    if lhs.is_empty() || rhs.is_empty() {
        return lhs.clone();
    }
    let right: HashSet<&[u8]> = rsig.iter().copied().collect();
    lhs.iter()
        .zip(lsig)
        .filter(|(_, sig)| !right.contains(*sig))
        .map(|(s, _)| s.clone())
        .collect()
}

/// The labels a matched pair of elements gives (Prometheus's
/// `resultMetric`).
fn result_metric(lhs: &Labels, rhs: &Labels, op: BinOp, m: &Matching) -> Lbls {
    let mut b = Builder::new(lhs);
    if op.drops_metric_name() {
        b.del(&[labels::METRIC_NAME]);
    }
    if m.card == Card::OneToOne {
        if m.on {
            b.keep(&m.labels);
        } else {
            b.del(&m.labels);
        }
    }
    for name in &m.include {
        match rhs.get(name) {
            Some(v) if !v.is_empty() => {
                b.set(name, v);
            }
            _ => {
                b.del(&[name]);
            }
        }
    }
    b.labels()
}

/// An arithmetic or comparison operator between two vectors with
/// one-to-one, many-to-one or one-to-many matching.
pub(crate) fn vector_binop(
    op: BinOp,
    lhs: &Vector,
    rhs: &Vector,
    m: &Matching,
    return_bool: bool,
    lsig: &[&[u8]],
    rsig: &[&[u8]],
) -> Result<Vector, Error> {
    if lhs.is_empty() || rhs.is_empty() {
        return Ok(Vec::new());
    }
    // For one-to-many matching, swap sides (and swap back for the value).
    let swapped = m.card == Card::OneToMany;
    let (lhs, rhs, lsig, rsig) = if swapped {
        (rhs, lhs, rsig, lsig)
    } else {
        (lhs, rhs, lsig, rsig)
    };

    let mut right: HashMap<&[u8], &ESample> = HashMap::with_capacity(rhs.len());
    for (rs, sig) in rhs.iter().zip(rsig) {
        if let Some(dup) = right.get(sig) {
            let one_side = if swapped { "left" } else { "right" };
            let matched = Builder::new(&rs.labels)
                .keep_or_drop(m.on, &m.labels)
                .labels();
            return Err(Error::Execution(format!(
                "found duplicate series for the match group {} on the {} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                labels::to_string(&matched),
                one_side,
                labels::to_string(&rs.labels),
                labels::to_string(&dup.labels),
            )));
        }
        right.insert(sig, rs);
    }

    let mut matched: HashMap<&[u8], HashSet<Lbls>> = HashMap::new();
    let mut out = Vec::new();
    for (ls, sig) in lhs.iter().zip(lsig) {
        let Some(rs) = right.get(sig) else { continue };
        let (vl, vr) = if swapped { (rs.v, ls.v) } else { (ls.v, rs.v) };
        let (mut value, keep) = vector_elem_binop(op, vl, vr);
        if return_bool {
            value = btos(keep);
        } else if !keep {
            continue;
        }
        let mut metric = result_metric(&ls.labels, &rs.labels, op, m);
        if return_bool {
            metric = labels::drop_metric_name(&metric);
        }
        if m.card == Card::OneToOne {
            if matched.contains_key(sig) {
                return Err(Error::Execution(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
                        .into(),
                ));
            }
            matched.insert(sig, HashSet::new());
        } else {
            let set = matched.entry(sig).or_default();
            if !set.insert(metric.clone()) {
                return Err(Error::Execution(
                    "multiple matches for labels: grouping labels must ensure unique matches"
                        .into(),
                ));
            }
        }
        out.push(ESample {
            labels: metric,
            t: ls.t,
            v: value,
        });
    }
    Ok(out)
}

impl Builder {
    /// Keeps the `names` (`on`) or drops them and the metric name
    /// (`ignoring`): the labels a match group is identified by.
    fn keep_or_drop(&mut self, on: bool, names: &[String]) -> &mut Self {
        if on {
            self.keep(names)
        } else {
            self.del(names).del(&[labels::METRIC_NAME])
        }
    }
}

/// An operator between a vector and a scalar; `swap` when the scalar is
/// on the left.
pub(crate) fn vector_scalar_binop(
    op: BinOp,
    vec: &Vector,
    scalar: f64,
    swap: bool,
    return_bool: bool,
) -> Vector {
    let mut out = Vec::with_capacity(vec.len());
    for s in vec {
        let (lv, rv) = if swap { (scalar, s.v) } else { (s.v, scalar) };
        let (mut value, mut keep) = vector_elem_binop(op, lv, rv);
        // A comparison with the scalar on the left keeps the vector value.
        if op.is_comparison() && swap {
            value = rv;
        }
        if return_bool {
            value = btos(keep);
            keep = true;
        }
        if keep {
            let labels = if op.drops_metric_name() || return_bool {
                labels::drop_metric_name(&s.labels)
            } else {
                s.labels.clone()
            };
            out.push(ESample {
                labels,
                t: s.t,
                v: value,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_ops_follow_go_float_semantics() {
        assert_eq!(scalar_binop(BinOp::Mod, -7.0, 3.0), -1.0);
        assert_eq!(scalar_binop(BinOp::Mod, 7.0, -3.0), 1.0);
        assert!(scalar_binop(BinOp::Mod, 1.0, 0.0).is_nan());
        assert_eq!(scalar_binop(BinOp::Div, 1.0, 0.0), f64::INFINITY);
        assert_eq!(scalar_binop(BinOp::Div, -1.0, 0.0), f64::NEG_INFINITY);
        assert!(scalar_binop(BinOp::Div, 0.0, 0.0).is_nan());
        assert_eq!(scalar_binop(BinOp::Pow, 2.0, 10.0), 1024.0);
        assert_eq!(scalar_binop(BinOp::Pow, 1.0, f64::NAN), 1.0);
        assert_eq!(scalar_binop(BinOp::Gtr, 2.0, 1.0), 1.0);
        assert_eq!(scalar_binop(BinOp::Eql, f64::NAN, f64::NAN), 0.0);
        assert_eq!(scalar_binop(BinOp::Neq, f64::NAN, f64::NAN), 1.0);
        assert!((scalar_binop(BinOp::Atan2, 1.0, 1.0) - std::f64::consts::FRAC_PI_4).abs() < 1e-15);
    }
}
