//! What changed since the read side last looked: the keys a learner touched, so publishing
//! a new read-side version costs what changed, not the catalog's size.
//!
//! A note for the read side, not learner state: equal learners compare equal whatever their
//! journals hold, and snapshots do not store them. Bounded: past `LIMIT` keys it only
//! remembers that everything may have changed (an offline replay that never publishes
//! keeps no growing list).

/// Keys remembered before a journal says "everything".
const LIMIT: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct Journal<K> {
    keys: Vec<K>,
    everything: bool,
}

impl<K> Default for Journal<K> {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            everything: true,
        }
    }
}

impl<K> PartialEq for Journal<K> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<K> Journal<K> {
    pub fn record(&mut self, key: K) {
        if self.everything {
            return;
        }
        if self.keys.len() >= LIMIT {
            self.mark_everything();
        } else {
            self.keys.push(key);
        }
    }

    /// Everything may have changed (a rescale, a restore).
    pub fn mark_everything(&mut self) {
        self.everything = true;
        self.keys = Vec::new();
    }

    /// The keys recorded since the last call (in recording order, with repeats), or `None`
    /// for "everything"; the journal starts afresh.
    pub fn take(&mut self) -> Option<Vec<K>> {
        let everything = std::mem::replace(&mut self.everything, false);
        let keys = std::mem::take(&mut self.keys);
        (!everything).then_some(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_with_everything_then_lists_what_changed() {
        let mut j = Journal::default();
        j.record(1);
        assert_eq!(j.take(), None, "a fresh learner: the reader takes it all");
        j.record(2);
        j.record(3);
        assert_eq!(j.take(), Some(vec![2, 3]));
        assert_eq!(j.take(), Some(vec![]));
        j.mark_everything();
        assert_eq!(j.take(), None);
    }
}
