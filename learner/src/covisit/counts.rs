//! The counting half of co-visitation: the co-occurrence and successor counts, and the
//! lists they re-rank until the learner reads them. A learner that publishes its lists by
//! epoch hands an epoch's meetings over here and counts them beside the next epoch's
//! events; nothing else reads the counts in the meantime.

use std::collections::BTreeMap;

use super::{CovisitConfig, Meetings, NO_ITEM, Ranked, Row, cut};
use crate::best_first::{Scratch, top_n};

#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Counts {
    pub config: CovisitConfig,
    /// Users that met each item.
    pub users_of: Vec<u32>,
    pub co: Vec<Row>,
    pub next: Vec<Row>,
    pub next_total: Vec<u32>,
    /// Counts each row took since its last re-rank.
    pub co_stale: Vec<u32>,
    pub next_stale: Vec<u32>,
    /// Lists re-ranked and not read yet, by row.
    pub staged_neighbours: BTreeMap<u32, Ranked>,
    pub staged_transitions: BTreeMap<u32, Ranked>,
    /// Meetings handed over and not counted yet, among this many items: whoever takes the
    /// lock first counts them, so the counts are the same whichever thread it is.
    pub pending: Option<(usize, Meetings)>,
    /// The last meetings counted, emptied: the next epoch's buffer, so it does not grow
    /// (and copy itself) afresh every epoch.
    pub spent: Meetings,
    pub scratch: Scratch,
}

impl Counts {
    /// Counts what was handed over, if anything.
    pub fn settle(&mut self) {
        if let Some((items, mut meetings)) = self.pending.take() {
            self.grow(items);
            self.count(&meetings);
            meetings.clear();
            self.spent = meetings;
        }
    }

    /// Rows for `items` items.
    pub fn grow(&mut self, items: usize) {
        if self.users_of.len() >= items {
            return;
        }
        self.users_of.resize(items, 0);
        self.co.resize_with(items, Row::default);
        self.next.resize_with(items, Row::default);
        self.next_total.resize(items, 0);
        self.co_stale.resize(items, 0);
        self.next_stale.resize(items, 0);
    }

    /// Counts `meetings`, in their order, as [`Self::observe`] would one by one.
    pub fn count(&mut self, meetings: &Meetings) {
        let m = meetings;
        for k in 0..m.len() {
            let (Some(&item), Some(&last), Some(&first), Some(&lo), Some(&hi)) = (
                m.items.get(k),
                m.lasts.get(k),
                m.firsts.get(k),
                m.window_offsets.get(k),
                m.window_offsets.get(k + 1),
            ) else {
                return;
            };
            let window = m.windows.get(lo as usize..hi as usize).unwrap_or_default();
            let last = Some(last).filter(|&l| l != NO_ITEM);
            self.observe(item, last, first.then(|| window.iter().copied()));
        }
    }

    /// See [`super::Covisitation::observe`]; re-ranked lists are staged.
    pub fn observe(
        &mut self,
        item: u32,
        last: Option<u32>,
        previous: Option<impl IntoIterator<Item = u32>>,
    ) {
        let n = self.users_of.len();
        let i = item as usize;
        if i >= n {
            return;
        }
        if let Some(last) = last
            && last != item
            && (last as usize) < n
        {
            let l = last as usize;
            *self.next[l].entry(item).or_default() += 1;
            self.next_total[l] += 1;
            self.next_stale[l] += 1;
            if self.over_capacity(&self.next[l]) {
                let evicted = cut(&mut self.next[l], self.config.row_capacity, |_, c| c as f32);
                self.next_total[l] -= evicted;
            }
            if self.due(self.next_stale[l], self.next[l].len()) {
                self.rerank_transitions(last);
            }
        }
        let Some(previous) = previous else {
            return;
        };
        self.users_of[i] += 1;
        for j in previous.into_iter().take(self.config.user_window) {
            if j == item || j as usize >= n {
                continue;
            }
            *self.co[i].entry(j).or_default() += 1;
            *self.co[j as usize].entry(item).or_default() += 1;
            self.co_stale[i] += 1;
            self.co_stale[j as usize] += 1;
            if self.over_capacity(&self.co[j as usize]) {
                self.cut_co(j);
            }
            if self.due(self.co_stale[j as usize], self.co[j as usize].len()) {
                self.rerank_neighbours(j);
            }
        }
        if self.over_capacity(&self.co[i]) {
            self.cut_co(item);
        }
        if self.due(self.co_stale[i], self.co[i].len()) {
            self.rerank_neighbours(item);
        }
    }

    fn over_capacity(&self, row: &Row) -> bool {
        let capacity = self.config.row_capacity;
        capacity > 0 && row.len() >= capacity.saturating_mul(2)
    }

    /// Cuts an item's co-occurrence row to its strongest by cosine (the item's own count is
    /// common to every entry, so `count / sqrt(users of the other)` orders them alike).
    fn cut_co(&mut self, item: u32) {
        let users_of = &self.users_of;
        cut(
            &mut self.co[item as usize],
            self.config.row_capacity,
            |j, c| c as f32 / (users_of[j as usize].max(1) as f32).sqrt(),
        );
    }

    /// Whether a row of `len` entries that took `stale` new counts is due for a re-rank:
    /// `stale >= max(len / refresh, 1)`, without the division (it ran for every count).
    pub(super) fn due(&self, stale: u32, len: usize) -> bool {
        let refresh = u64::from(self.config.refresh.max(1));
        stale >= 1 && (len as u64) < (u64::from(stale) + 1) * refresh
    }

    pub fn rerank_neighbours(&mut self, item: u32) {
        let i = item as usize;
        let ni = self.users_of[i].max(1) as f32;
        let users_of = &self.users_of;
        let entries = self.co[i].iter().map(|(&j, &c)| {
            let nj = users_of[j as usize].max(1) as f32;
            (j, c as f32 / (ni * nj).sqrt())
        });
        let list = top_n(entries, self.config.neighbours, &mut self.scratch);
        self.co_stale[i] = 0;
        self.staged_neighbours.insert(item, list);
    }

    pub fn rerank_transitions(&mut self, item: u32) {
        let i = item as usize;
        let total = self.next_total[i].max(1) as f32;
        let entries = self.next[i].iter().map(|(&j, &c)| (j, c as f32 / total));
        let list = top_n(entries, self.config.transitions, &mut self.scratch);
        self.next_stale[i] = 0;
        self.staged_transitions.insert(item, list);
    }

    /// See [`super::Covisitation::cosine`].
    pub fn cosine(&self, a: u32, b: u32) -> f32 {
        let (Some(row), Some(&na), Some(&nb)) = (
            self.co.get(a as usize),
            self.users_of.get(a as usize),
            self.users_of.get(b as usize),
        ) else {
            return 0.0;
        };
        match row.get(&b) {
            Some(&c) if na > 0 && nb > 0 => c as f32 / ((na as f32) * (nb as f32)).sqrt(),
            _ => 0.0,
        }
    }
}
