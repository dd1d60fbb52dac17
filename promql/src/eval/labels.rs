//! Label-set helpers (Prometheus's `labels.Builder`, signatures and
//! grouping keys).

use std::sync::Arc;

use crate::types::Labels;

/// Shared label set of an evaluation sample or series.
pub(crate) type Lbls = Arc<Labels>;

/// The metric name label.
pub(crate) const METRIC_NAME: &str = "__name__";

/// Byte that separates names and values in signatures (never valid UTF-8).
const SEP: u8 = 0xff;

/// The empty label set.
pub(crate) fn empty() -> Lbls {
    Arc::new(Labels::default())
}

/// `l` without `__name__` (shares `l` when it has none).
pub(crate) fn drop_metric_name(l: &Lbls) -> Lbls {
    if l.get(METRIC_NAME).is_none() {
        return l.clone();
    }
    Arc::new(Labels(
        l.0.iter()
            .filter(|(n, _)| n != METRIC_NAME)
            .cloned()
            .collect(),
    ))
}

/// A mutable label set (Prometheus's `labels.Builder`).
#[derive(Debug, Clone)]
pub(crate) struct Builder(Vec<(String, String)>);

impl Builder {
    pub(crate) fn new(l: &Labels) -> Builder {
        Builder(l.0.clone())
    }

    /// Sets `name` to `value`; an empty value deletes the label.
    pub(crate) fn set(&mut self, name: &str, value: &str) -> &mut Self {
        if value.is_empty() {
            return self.del(&[name]);
        }
        match self.0.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) => self.0[i].1 = value.to_string(),
            Err(i) => self.0.insert(i, (name.to_string(), value.to_string())),
        }
        self
    }

    /// Removes the named labels.
    pub(crate) fn del<S: AsRef<str>>(&mut self, names: &[S]) -> &mut Self {
        self.0
            .retain(|(n, _)| !names.iter().any(|d| d.as_ref() == n));
        self
    }

    /// Keeps only the named labels.
    pub(crate) fn keep<S: AsRef<str>>(&mut self, names: &[S]) -> &mut Self {
        self.0
            .retain(|(n, _)| names.iter().any(|d| d.as_ref() == n));
        self
    }

    pub(crate) fn labels(&self) -> Lbls {
        Arc::new(Labels(self.0.clone()))
    }
}

fn push_pair(out: &mut Vec<u8>, n: &str, v: &str) {
    out.extend_from_slice(n.as_bytes());
    out.push(SEP);
    out.extend_from_slice(v.as_bytes());
    out.push(SEP);
}

/// The vector-matching signature: the labels named in `names` (`on`), or
/// all labels but those and `__name__` (`ignoring`).
pub(crate) fn signature(l: &Labels, on: bool, names: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in &l.0 {
        let listed = names.iter().any(|x| x == n);
        let include = if on {
            listed
        } else {
            !listed && n != METRIC_NAME
        };
        if include {
            push_pair(&mut out, n, v);
        }
    }
    out
}

/// The aggregation grouping key: the `by` labels, or all labels but the
/// `without` ones and `__name__`.
pub(crate) fn grouping_key(l: &Labels, grouping: &[String], without: bool) -> Vec<u8> {
    if !without && grouping.is_empty() {
        return Vec::new();
    }
    signature(l, !without, grouping)
}

/// Whether a label name is valid (`[a-zA-Z_][a-zA-Z0-9_]*`).
pub(crate) fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Prometheus's label-set string form: `{a="b", c="d"}`.
pub(crate) fn to_string(l: &Labels) -> String {
    let inner: Vec<String> = l.0.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}
