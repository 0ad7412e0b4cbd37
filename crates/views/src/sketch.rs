//! A small DDSketch: quantiles with 1% relative accuracy in bounded memory.
//!
//! A positive value `x` falls in bin `i = ceil(ln x / ln γ)` with `γ = (1 + α) / (1 - α)`,
//! so bin `i` covers `(γ^(i-1), γ^i]` and its representative `2γ^i / (γ + 1)` is within
//! `α` of every value in it. Negative values use a mirrored set of bins; values whose
//! magnitude is below [`MIN_INDEXABLE`] count as zero. Bins are kept sparse and sorted,
//! so two sketches merge by adding counts and encoding is deterministic.

use serde::{Deserialize, Serialize};

/// Relative accuracy α.
pub const RELATIVE_ACCURACY: f64 = 0.01;
/// `ln γ` for α = 0.01: `ln(1.01 / 0.99)` (checked against the computed value in tests).
const LN_GAMMA: f64 = 0.020000666706669435;
/// Magnitudes below this (one nanosecond, in seconds) count as zero.
pub const MIN_INDEXABLE: f64 = 1e-9;

/// Sorted, sparse `(bin, count)` pairs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Bins(Vec<(i32, u64)>);

impl Bins {
    fn add(&mut self, index: i32, count: u64) {
        // Samples mostly land in the newest or a recent bin; a binary search is cheap.
        match self.0.binary_search_by_key(&index, |&(i, _)| i) {
            Ok(at) => self.0[at].1 += count,
            Err(at) => self.0.insert(at, (index, count)),
        }
    }

    fn merge(&mut self, other: &Bins) {
        if self.0.is_empty() {
            self.0.clone_from(&other.0);
            return;
        }
        let mut merged = Vec::with_capacity(self.0.len() + other.0.len());
        let (mut a, mut b) = (self.0.iter().peekable(), other.0.iter().peekable());
        loop {
            match (a.peek(), b.peek()) {
                (Some(&&(ia, ca)), Some(&&(ib, cb))) => {
                    if ia == ib {
                        merged.push((ia, ca + cb));
                        a.next();
                        b.next();
                    } else if ia < ib {
                        merged.push((ia, ca));
                        a.next();
                    } else {
                        merged.push((ib, cb));
                        b.next();
                    }
                }
                (Some(&&x), None) => {
                    merged.push(x);
                    a.next();
                }
                (None, Some(&&x)) => {
                    merged.push(x);
                    b.next();
                }
                (None, None) => break,
            }
        }
        self.0 = merged;
    }
}

/// A mergeable quantile sketch. Also keeps the exact count, sum, min and max.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sketch {
    positive: Bins,
    negative: Bins,
    zero: u64,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

fn index_of(magnitude: f64) -> i32 {
    (magnitude.ln() / LN_GAMMA).ceil() as i32
}

fn value_of(index: i32) -> f64 {
    let gamma = (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY);
    2.0 * (LN_GAMMA * index as f64).exp() / (gamma + 1.0)
}

impl Sketch {
    pub fn add(&mut self, x: f64) {
        if !x.is_finite() {
            return;
        }
        if self.count == 0 {
            self.min = x;
            self.max = x;
        } else {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
        self.count += 1;
        self.sum += x;
        if x >= MIN_INDEXABLE {
            self.positive.add(index_of(x), 1);
        } else if x <= -MIN_INDEXABLE {
            self.negative.add(index_of(-x), 1);
        } else {
            self.zero += 1;
        }
    }

    pub fn merge(&mut self, other: &Sketch) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            self.min = other.min;
            self.max = other.max;
        } else {
            self.min = self.min.min(other.min);
            self.max = self.max.max(other.max);
        }
        self.count += other.count;
        self.sum += other.sum;
        self.zero += other.zero;
        self.positive.merge(&other.positive);
        self.negative.merge(&other.negative);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn sum(&self) -> f64 {
        self.sum
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// The nearest-rank quantile: the `ceil(q * n)`-th smallest sample (at least the
    /// first), within 1% (and clamped to the exact min and max); the first and the
    /// last sample exactly.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        if rank == 1 {
            return Some(self.min);
        }
        if rank >= self.count {
            return Some(self.max);
        }
        let mut seen = 0u64;
        // Ascending values: the most negative first.
        for &(index, count) in self.negative.0.iter().rev() {
            seen += count;
            if seen >= rank {
                return Some(self.clamp(-value_of(index)));
            }
        }
        seen += self.zero;
        if seen >= rank {
            return Some(self.clamp(0.0));
        }
        for &(index, count) in &self.positive.0 {
            seen += count;
            if seen >= rank {
                return Some(self.clamp(value_of(index)));
            }
        }
        Some(self.max)
    }

    fn clamp(&self, x: f64) -> f64 {
        x.clamp(self.min, self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(sorted: &[f64], q: f64) -> f64 {
        let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
        sorted[rank - 1]
    }

    fn check(values: &[f64]) {
        let mut sketch = Sketch::default();
        for &v in values {
            sketch.add(v);
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        for q in [0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0] {
            let want = exact(&sorted, q);
            let got = sketch.quantile(q).unwrap();
            let tolerance = RELATIVE_ACCURACY * want.abs() + 1e-12;
            assert!((got - want).abs() <= tolerance, "q={q}: got {got}, want {want}");
        }
        assert_eq!(sketch.count(), values.len() as u64);
    }

    #[test]
    fn ln_gamma_matches_alpha() {
        let computed = ((1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)).ln();
        assert!((computed - LN_GAMMA).abs() < 1e-15);
    }

    #[test]
    fn quantiles_within_one_percent() {
        // A deterministic spread over eight orders of magnitude.
        let mut x = 12345u64;
        let values: Vec<f64> = (0..20_000)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let u = (x >> 11) as f64 / (1u64 << 53) as f64;
                10f64.powf(u * 8.0 - 2.0)
            })
            .collect();
        check(&values);
    }

    #[test]
    fn small_samples_negatives_and_zeros() {
        check(&[42.0]);
        check(&[1.0, 2.0, 3.0, 4.0]);
        check(&[-5.0, 0.0, 0.0, 3.0, 7.5, -0.5, 1e6]);
        check(&[3600.0; 10]);
    }

    #[test]
    fn merge_equals_adding_everything() {
        let (mut a, mut b, mut all) = (Sketch::default(), Sketch::default(), Sketch::default());
        for i in 0..1000 {
            let v = (i as f64) * 1.7 - 100.0;
            if i % 3 == 0 { &mut a } else { &mut b }.add(v);
        }
        for i in 0..1000 {
            let v = (i as f64) * 1.7 - 100.0;
            all.add(v);
        }
        a.merge(&b);
        for q in [0.1, 0.5, 0.9, 0.99] {
            assert_eq!(a.quantile(q), all.quantile(q));
        }
        assert_eq!(a.count(), all.count());
    }

    #[test]
    fn the_first_and_last_samples_are_exact() {
        let values = [0.051, 0.199, 0.25, 0.251, 0.299, 0.599, 1.599, 1.851];
        let mut sketch = Sketch::default();
        for v in values {
            sketch.add(v);
        }
        // ceil(0.9 × 8) = ceil(0.99 × 8) = 8: the largest sample, not its bucket.
        assert_eq!(sketch.quantile(0.9), Some(1.851));
        assert_eq!(sketch.quantile(0.99), Some(1.851));
        assert_eq!(sketch.quantile(0.1), Some(0.051));
        assert_eq!(sketch.quantile(0.0), Some(0.051));
    }

    #[test]
    fn empty_has_no_quantile() {
        assert_eq!(Sketch::default().quantile(0.5), None);
        assert_eq!(Sketch::default().mean(), None);
    }
}
