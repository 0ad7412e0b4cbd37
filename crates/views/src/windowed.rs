//! Samples in fixed, epoch-aligned buckets: one ring per rolling window and one per
//! calendar day, per group. Buckets that no window can cover again are dropped as
//! the view clock advances, so memory stays bounded.

use std::collections::{BTreeMap, VecDeque};

use opsflow_definitions::{Buckets, Window};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::sketch::Sketch;
use crate::time::{bucket_start, day_of};

/// Calendar days kept per group.
pub const DAYS_KEPT: i64 = 31;

/// What one bucket accumulates.
pub trait Cell: Default + Clone + Serialize + DeserializeOwned {
    type Sample: Copy;
    fn add(&mut self, sample: Self::Sample);
    fn merge(&mut self, other: &Self);
    /// Samples in the cell (a cell with none reports no headline or status).
    fn samples(&self) -> u64;
}

impl Cell for Sketch {
    type Sample = f64;
    fn add(&mut self, sample: f64) {
        Sketch::add(self, sample);
    }
    fn merge(&mut self, other: &Self) {
        Sketch::merge(self, other);
    }
    fn samples(&self) -> u64 {
        self.count()
    }
}

/// Ratio: samples are `good` flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RatioCell {
    pub good: u64,
    pub total: u64,
}

impl Cell for RatioCell {
    type Sample = bool;
    fn add(&mut self, good: bool) {
        self.total += 1;
        self.good += u64::from(good);
    }
    fn merge(&mut self, other: &Self) {
        self.good += other.good;
        self.total += other.total;
    }
    fn samples(&self) -> u64 {
        self.total
    }
}

/// Count and sum: samples are values (1.0 for a count).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SumCell {
    pub sum: f64,
    pub count: u64,
}

impl Cell for SumCell {
    type Sample = f64;
    fn add(&mut self, value: f64) {
        self.sum += value;
        self.count += 1;
    }
    fn merge(&mut self, other: &Self) {
        self.sum += other.sum;
        self.count += other.count;
    }
    fn samples(&self) -> u64 {
        self.count
    }
}

/// Buckets sorted by start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(bound = "C: Cell")]
struct Ring<C: Cell>(VecDeque<(i64, C)>);

impl<C: Cell> Ring<C> {
    /// Adds to the bucket starting at `start`, then drops buckets starting at or
    /// before `oldest_excluded`.
    fn add(&mut self, start: i64, sample: C::Sample, oldest_excluded: i64) {
        match self.0.back_mut() {
            Some((last, cell)) if *last == start => cell.add(sample),
            Some((last, _)) if *last > start => match self.0.binary_search_by_key(&start, |(s, _)| *s) {
                Ok(at) => self.0[at].1.add(sample),
                Err(at) => {
                    let mut cell = C::default();
                    cell.add(sample);
                    self.0.insert(at, (start, cell));
                }
            },
            _ => {
                let mut cell = C::default();
                cell.add(sample);
                self.0.push_back((start, cell));
            }
        }
        while self.0.front().is_some_and(|(s, _)| *s <= oldest_excluded) {
            self.0.pop_front();
        }
    }

    fn merge_after(&self, oldest_excluded: i64, into: &mut C) {
        for (_, cell) in self.0.iter().filter(|(s, _)| *s > oldest_excluded) {
            into.merge(cell);
        }
    }
}

/// One group's buckets: a ring per window (definition order) and the calendar days.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(bound = "C: Cell")]
pub struct Series<C: Cell> {
    windows: Vec<Ring<C>>,
    days: Ring<C>,
}

impl<C: Cell> Series<C> {
    fn add(&mut self, sample: C::Sample, time: i64, clock: i64, windows: &[Window], buckets: Buckets) {
        if self.windows.len() != windows.len() {
            self.windows.resize_with(windows.len(), Ring::default);
        }
        for (ring, window) in self.windows.iter_mut().zip(windows) {
            let oldest_excluded = clock - window.length_nanos;
            let start = bucket_start(time, window.bucket_nanos);
            if start > oldest_excluded {
                ring.add(start, sample, oldest_excluded);
            }
        }
        if buckets == Buckets::Day {
            let oldest_excluded = day_of(clock) - DAYS_KEPT;
            let day = day_of(time);
            if day > oldest_excluded {
                self.days.add(day, sample, oldest_excluded);
            }
        }
    }
}

/// A windowed KPI's samples per group (`""` when there is no `group_by`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(bound = "C: Cell")]
pub struct Windowed<C: Cell> {
    groups: BTreeMap<String, Series<C>>,
}

/// A merged cell for one window (or day) of one group.
pub struct Slice<C> {
    pub window: String,
    pub group: String,
    pub cell: C,
}

impl<C: Cell> Windowed<C> {
    pub fn add(
        &mut self,
        group: String,
        sample: C::Sample,
        time: i64,
        clock: i64,
        windows: &[Window],
        buckets: Buckets,
    ) {
        let series = match self.groups.get_mut(group.as_str()) {
            Some(series) => series,
            None => self.groups.entry(group).or_default(),
        };
        series.add(sample, time, clock, windows, buckets);
    }

    /// Every window, then every kept day, for everything (`""`) and then each group
    /// when `grouped`. Windows are always reported for `""`; days only when they have
    /// samples.
    pub fn slices(&self, clock: i64, windows: &[Window], buckets: Buckets, grouped: bool) -> Vec<Slice<C>> {
        let mut out = Vec::new();
        let mut groups: Vec<(&str, Option<&Series<C>>)> = Vec::new();
        if grouped {
            groups.push(("", None));
            groups.extend(self.groups.iter().map(|(g, s)| (g.as_str(), Some(s))));
        } else {
            groups.push(("", self.groups.get("")));
        }
        let oldest_day = day_of(clock) - DAYS_KEPT;
        for (group, series) in groups {
            let members: Vec<&Series<C>> = match series {
                Some(s) => vec![s],
                None if grouped => self.groups.values().collect(),
                None => Vec::new(),
            };
            for (i, window) in windows.iter().enumerate() {
                let mut cell = C::default();
                for s in &members {
                    if let Some(ring) = s.windows.get(i) {
                        ring.merge_after(clock - window.length_nanos, &mut cell);
                    }
                }
                out.push(Slice {
                    window: window.label.clone(),
                    group: group.to_string(),
                    cell,
                });
            }
            if buckets == Buckets::Day {
                let mut days: BTreeMap<i64, C> = BTreeMap::new();
                for s in &members {
                    for (day, cell) in s.days.0.iter().filter(|(d, _)| *d > oldest_day) {
                        days.entry(*day).or_default().merge(cell);
                    }
                }
                for (day, cell) in days {
                    out.push(Slice {
                        window: format!("day:{}", crate::time::day_label(day)),
                        group: group.to_string(),
                        cell,
                    });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::NANOS_PER_SECOND;

    const MIN: i64 = 60 * NANOS_PER_SECOND;
    const HOUR: i64 = 60 * MIN;

    fn windows() -> Vec<Window> {
        vec![
            Window {
                label: "1h".into(),
                length_nanos: HOUR,
                bucket_nanos: MIN,
            },
            Window {
                label: "24h".into(),
                length_nanos: 24 * HOUR,
                bucket_nanos: 15 * MIN,
            },
        ]
    }

    #[test]
    fn windows_cover_buckets_starting_after_clock_minus_length() {
        let w = windows();
        let mut s: Windowed<SumCell> = Windowed::default();
        let t0 = 1000 * HOUR; // an hour boundary
        s.add(
            String::new(),
            1.0,
            t0 + 30 * NANOS_PER_SECOND,
            t0 + 30 * NANOS_PER_SECOND,
            &w,
            Buckets::Day,
        );
        s.add(String::new(), 2.0, t0 + HOUR, t0 + HOUR, &w, Buckets::Day);
        // Clock t0+1h: the 1h window covers buckets starting after t0, so not the first.
        let slices = s.slices(t0 + HOUR, &w, Buckets::Day, false);
        assert_eq!(slices[0].window, "1h");
        assert_eq!(slices[0].cell.sum, 2.0);
        assert_eq!(slices[1].cell.sum, 3.0);
        assert_eq!(slices.len(), 3);
        assert!(slices[2].window.starts_with("day:"));
        assert_eq!(slices[2].cell.sum, 3.0);
    }

    #[test]
    fn old_buckets_are_dropped_and_late_samples_sorted_in() {
        let w = windows();
        let mut s: Windowed<SumCell> = Windowed::default();
        for i in 0..200 {
            let t = i * MIN;
            s.add(String::new(), 1.0, t, t, &w, Buckets::None);
        }
        let ring = &s.groups[""].windows[0].0;
        assert_eq!(ring.len(), 60);
        // A late sample five minutes back lands in its own bucket.
        s.add(String::new(), 10.0, 195 * MIN + 1, 199 * MIN, &w, Buckets::None);
        let slices = s.slices(199 * MIN, &w, Buckets::None, false);
        assert_eq!(slices[0].cell.sum, 70.0);
        // Too old for the 1h window: only the 24h window takes it.
        s.add(String::new(), 100.0, 100 * MIN, 199 * MIN, &w, Buckets::None);
        let slices = s.slices(199 * MIN, &w, Buckets::None, false);
        assert_eq!(slices[0].cell.sum, 70.0);
        assert_eq!(slices[1].cell.sum, 200.0 + 10.0 + 100.0);
    }

    #[test]
    fn groups_and_everything() {
        let w = windows();
        let mut s: Windowed<RatioCell> = Windowed::default();
        s.add("carrier=a".into(), true, 0, 0, &w, Buckets::None);
        s.add("carrier=b".into(), false, 0, 0, &w, Buckets::None);
        let slices = s.slices(0, &w, Buckets::None, true);
        let got: Vec<(String, String, u64, u64)> = slices
            .into_iter()
            .map(|s| (s.window, s.group, s.cell.good, s.cell.total))
            .collect();
        assert_eq!(
            got,
            vec![
                ("1h".into(), "".into(), 1, 2),
                ("24h".into(), "".into(), 1, 2),
                ("1h".into(), "carrier=a".into(), 1, 1),
                ("24h".into(), "carrier=a".into(), 1, 1),
                ("1h".into(), "carrier=b".into(), 0, 1),
                ("24h".into(), "carrier=b".into(), 0, 1),
            ]
        );
    }
}
