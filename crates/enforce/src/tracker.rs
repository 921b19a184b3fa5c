//! Which input offsets may be committed: a record's offset is committable only once every
//! receiver has delivered it or it has been dead-lettered, and every record before it too.

use std::collections::{BTreeMap, HashMap};

/// Pending deliveries per partition.
#[derive(Debug, Default)]
pub struct Tracker {
    partitions: HashMap<i32, Partition>,
}

#[derive(Debug, Default)]
struct Partition {
    /// Offset -> receivers that still owe an outcome.
    pending: BTreeMap<i64, usize>,
    /// One past the highest offset dispatched.
    next: i64,
    /// The last offset committed (one past the last finished record).
    committed: i64,
}

impl Tracker {
    /// Records that `offset` was handed to `owed` receivers (0: finished already).
    pub fn dispatch(&mut self, partition: i32, offset: i64, owed: usize) {
        let p = self.partitions.entry(partition).or_default();
        if owed > 0 {
            *p.pending.entry(offset).or_default() += owed;
        }
        p.next = p.next.max(offset + 1);
    }

    /// One receiver finished `offset` (delivered or dead-lettered).
    pub fn finish(&mut self, partition: i32, offset: i64) {
        if let Some(p) = self.partitions.get_mut(&partition)
            && let Some(n) = p.pending.get_mut(&offset)
        {
            *n -= 1;
            if *n == 0 {
                p.pending.remove(&offset);
            }
        }
    }

    /// The offset to commit for `partition`: the first unfinished record, or one past the
    /// last dispatched when all are finished.
    pub fn committable(&self, partition: i32) -> Option<i64> {
        let p = self.partitions.get(&partition)?;
        Some(p.pending.keys().next().copied().unwrap_or(p.next))
    }

    /// Partitions whose committable offset moved since the last [`Tracker::committed`].
    pub fn advanced(&self) -> Vec<(i32, i64)> {
        let mut v: Vec<(i32, i64)> = self
            .partitions
            .iter()
            .filter_map(|(&part, p)| {
                let c = p.pending.keys().next().copied().unwrap_or(p.next);
                (c > p.committed).then_some((part, c))
            })
            .collect();
        v.sort_unstable();
        v
    }

    /// Notes a successful commit.
    pub fn committed(&mut self, partition: i32, offset: i64) {
        if let Some(p) = self.partitions.get_mut(&partition) {
            p.committed = p.committed.max(offset);
        }
    }

    /// Outcomes still owed, all partitions.
    pub fn outstanding(&self) -> usize {
        self.partitions
            .values()
            .flat_map(|p| p.pending.values())
            .sum()
    }

    /// Forgets a partition this instance no longer owns.
    pub fn forget(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_waits_for_every_receiver_and_every_earlier_record() {
        let mut t = Tracker::default();
        t.dispatch(0, 10, 2);
        t.dispatch(0, 11, 2);
        t.dispatch(0, 12, 0); // dead-lettered at once: owes nothing
        assert_eq!(t.committable(0), Some(10));
        t.finish(0, 11);
        t.finish(0, 11);
        // 11 is done but 10 is not: still 10.
        assert_eq!(t.committable(0), Some(10));
        t.finish(0, 10);
        assert_eq!(t.committable(0), Some(10), "one receiver still owes 10");
        t.finish(0, 10);
        assert_eq!(t.committable(0), Some(13));
        assert_eq!(t.advanced(), vec![(0, 13)]);
        t.committed(0, 13);
        assert!(t.advanced().is_empty());
        assert_eq!(t.outstanding(), 0);
        assert_eq!(t.committable(5), None);
    }

    #[test]
    fn partitions_are_independent_and_forgettable() {
        let mut t = Tracker::default();
        t.dispatch(0, 0, 1);
        t.dispatch(1, 7, 1);
        t.finish(1, 7);
        assert_eq!(t.advanced(), vec![(1, 8)]);
        assert_eq!(t.outstanding(), 1);
        t.forget(0);
        assert_eq!(t.outstanding(), 0);
        // A stray outcome for a forgotten partition is ignored.
        t.finish(0, 0);
        assert_eq!(t.committable(0), None);
    }
}
