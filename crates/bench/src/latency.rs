//! Latency samples in microseconds, exact percentiles from a sorted vector.

use std::time::Duration;

/// Recorded latencies of one or more workers.
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    micros: Vec<u32>,
    sorted: bool,
}

impl Latencies {
    pub fn record(&mut self, latency: Duration) {
        self.micros.push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX));
        self.sorted = false;
    }

    pub fn merge(&mut self, other: Latencies) {
        self.micros.extend(other.micros);
        self.sorted = false;
    }

    pub fn len(&self) -> usize {
        self.micros.len()
    }

    /// The `q` quantile (0 < q <= 1) in microseconds, by the nearest-rank method.
    pub fn quantile(&mut self, q: f64) -> Option<u32> {
        if self.micros.is_empty() {
            return None;
        }
        if !self.sorted {
            self.micros.sort_unstable();
            self.sorted = true;
        }
        let rank = (q * self.micros.len() as f64).ceil() as usize;
        self.micros.get(rank.clamp(1, self.micros.len()) - 1).copied()
    }

    /// The `q` quantile in milliseconds.
    pub fn quantile_ms(&mut self, q: f64) -> Option<f64> {
        self.quantile(q).map(|us| f64::from(us) / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut latencies = Latencies::default();
        for us in (1..=100).rev() {
            latencies.record(Duration::from_micros(us));
        }
        assert_eq!(latencies.quantile(0.5), Some(50));
        assert_eq!(latencies.quantile(0.99), Some(99));
        assert_eq!(latencies.quantile(1.0), Some(100));
        assert_eq!(Latencies::default().quantile(0.5), None);
    }
}
