//! A mergeable quantile sketch with bounded relative error.
//!
//! Values (durations in ns) fall into logarithmic buckets: bucket `i` holds
//! values in `(γ^(i-1), γ^i]` with `γ = (1 + α) / (1 − α)` and `α` =
//! [`RELATIVE_ACCURACY`] (1%), and answers with `2γ^i / (γ + 1)`, which is
//! within `α` of every value in the bucket. Zero and negative values are
//! counted apart and answer 0. Sketches merge by adding counts, so a sketch of
//! a day is exactly the merge of its minutes' sketches.
//!
//! [`Sketch::quantile`] interpolates linearly between the values at ranks
//! `⌊q·(n−1)⌋` and `⌈q·(n−1)⌉`, like `percentile_cont`; since each of the
//! two is within 1% of the true value at its rank, so is the result.

/// Relative accuracy of every quantile (1%).
pub const RELATIVE_ACCURACY: f64 = 0.01;

fn gamma() -> f64 {
    (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)
}

fn index(v: f64) -> i32 {
    (v.ln() / gamma().ln()).ceil() as i32
}

fn value(i: i32) -> f64 {
    let g = gamma();
    2.0 * g.powi(i) / (g + 1.0)
}

/// Counts per logarithmic bucket (dense between the lowest and highest
/// bucket seen).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sketch {
    zero: u64,
    offset: i32,
    counts: Vec<u64>,
}

impl Sketch {
    /// An empty sketch.
    pub fn new() -> Sketch {
        Sketch::default()
    }

    /// Number of values added.
    pub fn count(&self) -> u64 {
        self.zero + self.counts.iter().sum::<u64>()
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.counts.capacity() * std::mem::size_of::<u64>()
    }

    /// Adds one value.
    pub fn add(&mut self, v: f64) {
        self.add_n(v, 1);
    }

    fn add_n(&mut self, v: f64, n: u64) {
        if v <= 0.0 || v.is_nan() {
            self.zero += n;
            return;
        }
        self.add_index(index(v), n);
    }

    fn add_index(&mut self, i: i32, n: u64) {
        if self.counts.is_empty() {
            self.offset = i;
            self.counts.push(n);
            return;
        }
        if i < self.offset {
            let grow = (self.offset - i) as usize;
            let mut counts = vec![0; grow + self.counts.len()];
            counts[grow..].copy_from_slice(&self.counts);
            self.counts = counts;
            self.offset = i;
        }
        let at = (i - self.offset) as usize;
        if at >= self.counts.len() {
            self.counts.resize(at + 1, 0);
        }
        self.counts[at] += n;
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Sketch) {
        self.zero += other.zero;
        for (k, &n) in other.counts.iter().enumerate() {
            if n > 0 {
                self.add_index(other.offset + k as i32, n);
            }
        }
    }

    /// The value at rank `r` (0-based, `r < count`).
    fn at_rank(&self, r: u64) -> f64 {
        if r < self.zero {
            return 0.0;
        }
        let mut seen = self.zero;
        for (k, &n) in self.counts.iter().enumerate() {
            seen += n;
            if r < seen {
                return value(self.offset + k as i32);
            }
        }
        // r >= count: the largest bucket.
        value(self.offset + self.counts.len() as i32 - 1)
    }

    /// The `q` quantile (0 ≤ q ≤ 1), or `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
        let lo = pos.floor();
        let a = self.at_rank(lo as u64);
        if pos == lo {
            return Some(a);
        }
        let b = self.at_rank(lo as u64 + 1);
        Some(a + (b - a) * (pos - lo))
    }

    /// A compact encoding: varints of the zero count, the number of non-empty
    /// buckets, then per bucket the index delta (zigzag) and the count.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.counts.len() * 3);
        put_varint(&mut out, self.zero);
        let nonzero = self.counts.iter().filter(|&&n| n > 0).count();
        put_varint(&mut out, nonzero as u64);
        let mut prev = 0i64;
        for (k, &n) in self.counts.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let i = (self.offset + k as i32) as i64;
            let d = i - prev;
            put_varint(&mut out, ((d << 1) ^ (d >> 63)) as u64);
            put_varint(&mut out, n);
            prev = i;
        }
        out
    }

    /// Decodes [`Sketch::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Result<Sketch, String> {
        let mut s = Sketch::new();
        s.merge_encoded(bytes)?;
        Ok(s)
    }

    /// Adds an encoded sketch without building it first.
    pub fn merge_encoded(&mut self, mut bytes: &[u8]) -> Result<(), String> {
        self.zero += get_varint(&mut bytes)?;
        let n = get_varint(&mut bytes)?;
        let mut prev = 0i64;
        for _ in 0..n {
            let z = get_varint(&mut bytes)?;
            let d = ((z >> 1) as i64) ^ -((z & 1) as i64);
            let i = prev + d;
            let count = get_varint(&mut bytes)?;
            let i32_index =
                i32::try_from(i).map_err(|_| format!("sketch bucket {i} out of range"))?;
            if !(-4096..=4096).contains(&i32_index) {
                return Err(format!("sketch bucket {i} out of range"));
            }
            self.add_index(i32_index, count);
            prev = i;
        }
        if !bytes.is_empty() {
            return Err(format!("{} trailing bytes after a sketch", bytes.len()));
        }
        Ok(())
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(bytes: &mut &[u8]) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes
            .split_first()
            .ok_or_else(|| "sketch ends in the middle of a number".to_string())?;
        *bytes = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("sketch number longer than 64 bits".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(sorted: &[f64], q: f64) -> f64 {
        let pos = q * (sorted.len() - 1) as f64;
        let lo = pos.floor() as usize;
        let hi = pos.ceil() as usize;
        sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
    }

    #[test]
    fn quantiles_within_one_percent_of_exact() {
        let mut rng = store::synth::Rng::new(7);
        for n in [1usize, 2, 3, 10, 1000, 50_000] {
            let mut values: Vec<f64> = (0..n)
                .map(|_| {
                    // Spread over six orders of magnitude, heavy tail.
                    let e = rng.below(6_000) as f64 / 1000.0;
                    10f64.powf(3.0 + e) + rng.below(1000) as f64
                })
                .collect();
            let mut s = Sketch::new();
            for &v in &values {
                s.add(v);
            }
            values.sort_by(f64::total_cmp);
            for q in [0.0, 0.01, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
                let want = exact(&values, q);
                let got = s.quantile(q).unwrap();
                assert!(
                    (got - want).abs() <= RELATIVE_ACCURACY * want,
                    "n={n} q={q}: sketch {got}, exact {want}"
                );
            }
        }
    }

    #[test]
    fn merge_equals_one_sketch_and_encoding_round_trips() {
        let mut whole = Sketch::new();
        let mut parts = vec![Sketch::new(), Sketch::new(), Sketch::new()];
        for k in 0..3000u64 {
            let v = ((k * 7919) % 100_000) as f64 * 1000.0;
            whole.add(v);
            parts[(k % 3) as usize].add(v);
        }
        let mut merged = Sketch::new();
        for p in &parts {
            merged.merge_encoded(&p.encode()).unwrap();
        }
        assert_eq!(merged.count(), 3000);
        for q in [0.0, 0.5, 0.99, 1.0] {
            assert_eq!(merged.quantile(q), whole.quantile(q));
        }
        assert_eq!(
            Sketch::decode(&whole.encode()).unwrap().encode(),
            whole.encode()
        );
        assert_eq!(Sketch::new().quantile(0.5), None);
        assert!(Sketch::decode(&[0x80]).is_err());
        assert!(Sketch::decode(&[0, 1, 2]).is_err());
    }
}
