//! Shadow mode: a candidate snapshot ranks every live request beside the live model without
//! being served. Per version it reports how often the two lists agree, and what each is worth
//! on the clicks that follow, estimated off-policy from the live decisions.
//!
//! The estimate is inverse propensity weighting per slot: a click on item i in live slot p is
//! worth 1 to the live model and π_shadow(i at p) / π_live(i at p) to the candidate, averaged
//! over decisions. It assumes a click depends on the item and the slot, not on the rest of the
//! list (the position-based model).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;

use serde::Serialize;

use streamrec_pipeline::ServingModels;

/// Decisions remembered for the clicks that may follow.
const PENDING: usize = 100_000;

/// Where the running comparison lives: empty (the common case) costs the request path one
/// atomic load; a run is locked only while it is updated.
pub type ShadowSlot = ArcSwapOption<Mutex<ShadowRun>>;

/// Applies `f` to the running comparison, if there is one.
pub fn with_run<R>(slot: &ShadowSlot, f: impl FnOnce(&mut ShadowRun) -> R) -> Option<R> {
    let run = slot.load_full()?;
    let mut run = run.lock().unwrap_or_else(|p| p.into_inner());
    Some(f(&mut run))
}

/// One slot of a list: item and the propensity it was placed there with.
pub type Slot = (String, f64);

struct Pending {
    live: Vec<Slot>,
    shadow: Vec<Slot>,
    clicked: bool,
}

/// The running comparison for one candidate version.
pub struct ShadowRun {
    version: String,
    models: Arc<ServingModels>,
    pending: BTreeMap<String, Pending>,
    order: VecDeque<String>,
    report: ShadowReport,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ShadowReport {
    pub version: String,
    pub requests: u64,
    /// Mean fraction of the live list's items the candidate also chose.
    pub agreement: f64,
    /// Decisions answered by a click on a shown item.
    pub clicks: u64,
    /// Live model's value: clicked decisions per decision.
    pub live_value: f64,
    /// Candidate's value estimated by per-slot IPS on the same clicks.
    pub shadow_value: f64,
    #[serde(skip)]
    agreement_sum: f64,
    #[serde(skip)]
    shadow_credit: f64,
}

impl ShadowRun {
    pub fn new(version: String, models: Arc<ServingModels>) -> Self {
        Self {
            report: ShadowReport {
                version: version.clone(),
                ..ShadowReport::default()
            },
            version,
            models,
            pending: BTreeMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn models(&self) -> &Arc<ServingModels> {
        &self.models
    }

    /// Records both lists of one live request.
    pub fn record(&mut self, rec_id: &str, live: Vec<Slot>, shadow: Vec<Slot>) {
        let shared = live
            .iter()
            .filter(|(i, _)| shadow.iter().any(|(j, _)| i == j))
            .count();
        self.report.agreement_sum += shared as f64 / live.len().max(1) as f64;
        self.report.requests += 1;
        tracing::debug!(target: "streamrec::shadow", rec_id, version = self.version, ?live, ?shadow, "shadow decision");
        if self.pending.len() >= PENDING
            && let Some(oldest) = self.order.pop_front()
        {
            self.pending.remove(&oldest);
        }
        self.order.push_back(rec_id.to_owned());
        self.pending.insert(
            rec_id.to_owned(),
            Pending {
                live,
                shadow,
                clicked: false,
            },
        );
        self.refresh();
    }

    /// A click on `item_id` answering `rec_id`.
    pub fn observe_click(&mut self, rec_id: &str, item_id: &str) {
        let Some(pending) = self.pending.get_mut(rec_id) else {
            return;
        };
        let Some(slot) = pending.live.iter().position(|(i, _)| i == item_id) else {
            return;
        };
        if pending.clicked {
            return;
        }
        pending.clicked = true;
        self.report.clicks += 1;
        let live_propensity = pending.live[slot].1.max(f64::MIN_POSITIVE);
        let shadow_propensity = match pending.shadow.get(slot) {
            Some((i, p)) if i == item_id => *p,
            _ => 0.0,
        };
        self.report.shadow_credit += shadow_propensity / live_propensity;
        self.refresh();
    }

    fn refresh(&mut self) {
        let n = self.report.requests.max(1) as f64;
        self.report.agreement = self.report.agreement_sum / n;
        self.report.live_value = self.report.clicks as f64 / n;
        self.report.shadow_value = self.report.shadow_credit / n;
    }

    pub fn report(&self) -> ShadowReport {
        self.report.clone()
    }
}
