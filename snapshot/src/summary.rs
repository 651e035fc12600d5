//! What a data scientist asks of a snapshot: per-learner summaries, and what moved between
//! two snapshots.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};
use streamrec_learner::bandit::Policy;
use streamrec_learner::online::{OnlineModels, arm_key};

const TOP: usize = 10;

/// Item ids the snapshot knows, by bandit arm key (keys are hashes of item ids).
fn arm_names(models: &OnlineModels) -> HashMap<u64, String> {
    models
        .embeddings
        .ids()
        .iter()
        .map(|id| (arm_key(id), id.clone()))
        .collect()
}

fn theta_norm(arm: &streamrec_learner::bandit::RidgeArm) -> Vec<f64> {
    arm.theta().iter().copied().collect()
}

/// Summary statistics of one learner; `item` asks the embeddings for its nearest items.
pub fn summarize(models: &OnlineModels, learner: &str, item: Option<&str>) -> Option<Value> {
    Some(match learner {
        "popularity" => {
            let view = models.popularity.view(TOP);
            json!({
                "items": models.popularity.item_count(),
                "events_applied": models.popularity.events_applied(),
                "as_of": view.as_of,
                "top": view.ranked.iter().map(|(id, s)| json!({"item_id": &**id, "score": s})).collect::<Vec<_>>(),
            })
        }
        "embeddings" => {
            let e = &models.embeddings;
            let dim = e.dim().max(1);
            let norms: Vec<f32> = e
                .matrix()
                .chunks(dim)
                .map(|v| v.iter().map(|x| x * x).sum::<f32>().sqrt())
                .collect();
            let mean_norm = norms.iter().sum::<f32>() / norms.len().max(1) as f32;
            let mut summary = json!({
                "items": e.len(),
                "dim": e.dim(),
                "updates": e.updates(),
                "mean_vector_norm": mean_norm,
            });
            if let Some(item) = item {
                summary["item"] = json!(item);
                summary["nearest"] = json!(
                    e.most_similar(item, TOP)
                        .into_iter()
                        .map(|(id, cos)| json!({"item_id": id, "cosine": cos}))
                        .collect::<Vec<_>>()
                );
            }
            summary
        }
        "bandit" => {
            let names = arm_names(models);
            let mut arms: Vec<(&u64, &streamrec_learner::bandit::RidgeArm)> =
                models.bandit.model().arms().collect();
            arms.sort_by(|a, b| b.1.pulls.cmp(&a.1.pulls).then(a.0.cmp(b.0)));
            json!({
                "policy": models.bandit.name(),
                "arms": arms.len(),
                "most_pulled": arms.iter().take(TOP).map(|(k, a)| json!({
                    "item_id": names.get(k),
                    "arm_key": k,
                    "pulls": a.pulls,
                    "reward_sum": a.reward_sum,
                    "theta": theta_norm(a),
                })).collect::<Vec<_>>(),
            })
        }
        "catalog" => {
            let c = &models.catalog;
            let mut summary = json!({
                "items": c.len(),
                "unavailable": c.iter().filter(|i| !i.available).count(),
                "last_seq": c.last_seq(),
            });
            if let Some(entry) = item.and_then(|item| c.get(item)) {
                summary["item"] = json!(&**entry);
            }
            summary
        }
        "stream" => {
            let c = models.counters();
            json!({
                "last_seq": models.last_seq(),
                "pending_decisions": models.pending_decisions(),
                "counters": c,
            })
        }
        "covisitation" => {
            let c = &models.covisit;
            let mut summary = json!({"items": c.len()});
            if let Some(i) = item.and_then(|item| c.index_of(item)) {
                let nearest: Vec<(u32, f32)> = c.neighbours(i).iter().copied().take(TOP).collect();
                summary["item"] = json!(c.id(i));
                summary["nearest"] = json!(
                    nearest
                        .into_iter()
                        .map(|(j, cos)| json!({"item_id": c.id(j), "cosine": cos}))
                        .collect::<Vec<_>>()
                );
            }
            summary
        }
        "reranker" => {
            let r = &models.reranker;
            json!({
                "steps": r.steps,
                "last_loss": r.last_loss,
                "replay_groups": r.len(),
                "features": streamrec_learner::candidates::FEATURE_NAMES,
                "tensors": r.weights.iter().map(|t| json!({
                    "name": t.name,
                    "shape": t.shape,
                    "l2_norm": l2(&t.values),
                })).collect::<Vec<_>>(),
            })
        }
        _ => return None,
    })
}

fn top_by<T, K: PartialOrd>(mut v: Vec<T>, key: impl Fn(&T) -> K) -> Vec<T> {
    v.sort_by(|a, b| {
        key(b)
            .partial_cmp(&key(a))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    v.truncate(TOP);
    v
}

/// What moved between `old` and `new`, per learner.
pub fn diff(old: &OnlineModels, new: &OnlineModels) -> Value {
    // Popularity: score changes per item.
    let scores = |m: &OnlineModels| -> BTreeMap<String, f64> {
        m.popularity
            .view(usize::MAX)
            .ranked
            .iter()
            .map(|(id, s)| (id.to_string(), *s))
            .collect()
    };
    let (a, b) = (scores(old), scores(new));
    let mut l1 = 0.0;
    let mut moves = Vec::new();
    for id in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
        let delta = b.get(id).copied().unwrap_or(0.0) - a.get(id).copied().unwrap_or(0.0);
        l1 += delta.abs();
        moves.push((id.clone(), delta));
    }
    let popularity = json!({
        "items_before": a.len(),
        "items_after": b.len(),
        "l1_score_delta": l1,
        "largest_moves": top_by(moves, |(_, d)| d.abs()).into_iter().map(|(id, d)| json!({"item_id": id, "delta": d})).collect::<Vec<_>>(),
    });

    // Embeddings: vector deltas on shared items, and how their neighbourhoods changed.
    let (ea, eb) = (&old.embeddings, &new.embeddings);
    let mut sq = 0.0f64;
    let mut deltas = Vec::new();
    for id in ea.ids() {
        if let (Some(va), Some(vb)) = (ea.vector(id), eb.vector(id)) {
            let d: f32 = va.iter().zip(vb).map(|(x, y)| (x - y) * (x - y)).sum();
            sq += f64::from(d);
            deltas.push((id.clone(), d.sqrt()));
        }
    }
    let changed = top_by(deltas, |(_, d)| *d);
    let neighbours = |e: &streamrec_learner::embeddings::ItemEmbeddings, id: &str| -> Vec<String> {
        e.most_similar(id, TOP)
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    };
    let embeddings = json!({
        "items_before": ea.len(),
        "items_after": eb.len(),
        "shared_items_frobenius_delta": sq.sqrt(),
        "most_moved": changed.iter().map(|(id, d)| {
            let before = neighbours(ea, id);
            let after = neighbours(eb, id);
            let kept = after.iter().filter(|n| before.contains(n)).count();
            json!({"item_id": id, "vector_delta_norm": d, "neighbours_kept_of_10": kept, "neighbours_after": after})
        }).collect::<Vec<_>>(),
    });

    // Bandit: arms whose estimates shifted.
    let names = arm_names(new);
    let arms_a: HashMap<u64, Vec<f64>> = old
        .bandit
        .model()
        .arms()
        .map(|(k, a)| (*k, theta_norm(a)))
        .collect();
    let shifts: Vec<(u64, f64, u64)> = new
        .bandit
        .model()
        .arms()
        .map(|(k, arm)| {
            let t = theta_norm(arm);
            let before = arms_a.get(k).cloned().unwrap_or_else(|| vec![0.0; t.len()]);
            let shift = t
                .iter()
                .zip(&before)
                .map(|(x, y)| (x - y) * (x - y))
                .sum::<f64>()
                .sqrt();
            let pulls_before = old.bandit.model().arm(*k).map_or(0, |a| a.pulls);
            (*k, shift, arm.pulls - pulls_before.min(arm.pulls))
        })
        .collect();
    let bandit = json!({
        "arms_before": arms_a.len(),
        "arms_after": new.bandit.model().arms().count(),
        "largest_shifts": top_by(shifts, |(_, s, _)| *s).into_iter().map(|(k, s, p)| json!({
            "item_id": names.get(&k), "arm_key": k, "theta_shift": s, "new_pulls": p,
        })).collect::<Vec<_>>(),
    });

    // Re-ranker: how far each weight tensor moved.
    let reranker = json!({
        "steps_before": old.reranker.steps,
        "steps_after": new.reranker.steps,
        "tensors": new.reranker.weights.iter().map(|t| {
            let before = old.reranker.weights.iter().find(|o| o.name == t.name);
            let delta = before
                .filter(|o| o.values.len() == t.values.len())
                .map(|o| {
                    let d: Vec<f32> = o.values.iter().zip(&t.values).map(|(a, b)| b - a).collect();
                    l2(&d)
                });
            json!({"name": t.name, "l2_delta": delta})
        }).collect::<Vec<_>>(),
    });
    json!({
        "stream": {"last_seq_before": old.last_seq(), "last_seq_after": new.last_seq()},
        "reranker": reranker,
        "popularity": popularity,
        "embeddings": embeddings,
        "bandit": bandit,
    })
}

fn l2(values: &[f32]) -> f64 {
    values
        .iter()
        .map(|v| f64::from(*v) * f64::from(*v))
        .sum::<f64>()
        .sqrt()
}
