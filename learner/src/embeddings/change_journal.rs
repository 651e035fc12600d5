//! Which rows of the item matrix changed, by update number: lets a follower (the intent
//! index) catch up with the rows that moved instead of comparing every row. Bounded: once it
//! no longer reaches back far enough, the follower is told to compare everything.
//!
//! Not learner state: it is neither serialised nor compared, and a restored or cloned model
//! starts with an empty journal that answers "unknown" for anything before its first entry.

use std::collections::VecDeque;

/// Entries kept: far more than a follower polling every 100 ms needs at full ingest speed.
const CAPACITY: usize = 1 << 18;

#[derive(Debug, Clone, Default)]
pub struct ChangeJournal {
    /// (update number, row), oldest first.
    entries: VecDeque<(u64, u32)>,
    /// Every change after this update number is in `entries`; None: nothing is known yet.
    complete_after: Option<u64>,
}

impl ChangeJournal {
    /// Row `row` changed in update `update` (update numbers never decrease).
    pub fn record(&mut self, update: u64, row: u32) {
        if self.complete_after.is_none() {
            self.complete_after = Some(update.saturating_sub(1));
        }
        if self.entries.len() == CAPACITY
            && let Some((dropped, _)) = self.entries.pop_front()
        {
            self.complete_after = Some(dropped);
        }
        self.entries.push_back((update, row));
    }

    /// Distinct rows changed by updates after `after`, or None when the journal does not reach
    /// back that far.
    pub fn changed_since(&self, after: u64) -> Option<Vec<u32>> {
        if self.complete_after? > after {
            return None;
        }
        let start = self.entries.partition_point(|&(update, _)| update <= after);
        let mut rows: Vec<u32> = self.entries.range(start..).map(|&(_, row)| row).collect();
        rows.sort_unstable();
        rows.dedup();
        Some(rows)
    }
}

/// Journals are bookkeeping beside the model, so two models are equal whatever theirs hold.
impl PartialEq for ChangeJournal {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_only_what_it_saw() {
        let mut journal = ChangeJournal::default();
        assert_eq!(journal.changed_since(0), None);
        journal.record(5, 7);
        journal.record(5, 2);
        journal.record(6, 7);
        assert_eq!(journal.changed_since(4), Some(vec![2, 7]));
        assert_eq!(journal.changed_since(5), Some(vec![7]));
        assert_eq!(journal.changed_since(6), Some(vec![]));
        assert_eq!(
            journal.changed_since(3),
            None,
            "update 4 happened before it started"
        );
    }

    #[test]
    fn forgets_the_oldest_past_its_capacity() {
        let mut journal = ChangeJournal::default();
        for update in 1..=(CAPACITY as u64 + 10) {
            journal.record(update, (update % 100) as u32);
        }
        assert_eq!(journal.changed_since(5), None);
        assert_eq!(journal.changed_since(10).map(|r| r.len()), Some(100));
        let newest = CAPACITY as u64 + 10;
        assert_eq!(
            journal.changed_since(newest - 1),
            Some(vec![(newest % 100) as u32])
        );
    }
}
