//! MovieLens-100K as a clickstream: every rating is a `rate` event, and a user's ratings are
//! split into sessions at gaps of more than 30 minutes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::json;
use streamrec_proto::{Event, EventKind, Item};

/// A gap longer than this between two ratings of a user starts a new session.
pub const SESSION_GAP_MS: i64 = 30 * 60 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum MovieLensError {
    #[error("cannot read {path}: {source} (run ./scripts/fetch-ml100k to fetch the data)")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("no ratings in {0}")]
    Empty(PathBuf),
}

/// One rating, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Rating {
    pub user_id: String,
    pub item_id: String,
    pub rating: f64,
    pub ts_ms: i64,
}

fn read(path: &Path) -> Result<String, MovieLensError> {
    std::fs::read_to_string(path).map_err(|source| MovieLensError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Tab-separated rows after the header line, with their 1-based line numbers.
fn rows(text: &str) -> impl Iterator<Item = (usize, Vec<&str>)> {
    text.lines()
        .enumerate()
        .skip(1)
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, l.split('\t').collect()))
}

/// Reads `ml-100k.inter`, sorted by time; ties keep file order.
pub fn load_ratings(dir: &Path) -> Result<Vec<Rating>, MovieLensError> {
    let path = dir.join("ml-100k.inter");
    let text = read(&path)?;
    let bad = |line: usize, message: String| MovieLensError::Parse {
        path: path.clone(),
        line,
        message,
    };
    let mut ratings = Vec::new();
    for (line, cols) in rows(&text) {
        let [user, item, rating, ts] = cols[..] else {
            return Err(bad(
                line,
                format!("expected 4 columns, found {}", cols.len()),
            ));
        };
        let rating: f64 = rating
            .parse()
            .map_err(|e| bad(line, format!("rating {rating:?}: {e}")))?;
        let ts: f64 = ts
            .parse()
            .map_err(|e| bad(line, format!("timestamp {ts:?}: {e}")))?;
        ratings.push(Rating {
            user_id: user.to_owned(),
            item_id: item.to_owned(),
            rating,
            ts_ms: (ts * 1000.0) as i64,
        });
    }
    ratings.sort_by_key(|r| r.ts_ms);
    Ok(ratings)
}

/// Reads `ml-100k.item` as catalog items (title, release year, genres).
pub fn load_items(dir: &Path) -> Result<Vec<Item>, MovieLensError> {
    let path = dir.join("ml-100k.item");
    let text = read(&path)?;
    let mut items = Vec::new();
    for (line, cols) in rows(&text) {
        let Some(item_id) = cols.first().filter(|s| !s.is_empty()) else {
            return Err(MovieLensError::Parse {
                path: path.clone(),
                line,
                message: "missing item id".to_owned(),
            });
        };
        let genres: Vec<&str> = cols.get(3).map_or(Vec::new(), |g| g.split(' ').collect());
        let mut attributes = serde_json::Map::new();
        attributes.insert("genres".to_owned(), json!(genres));
        if let Some(year) = cols.get(2).and_then(|y| y.parse::<u32>().ok()) {
            attributes.insert("release_year".to_owned(), json!(year));
        }
        items.push(Item {
            item_id: (*item_id).to_owned(),
            title: cols.get(1).map(|t| (*t).to_owned()),
            attributes: Some(attributes),
            available: true,
            expires_at: None,
            details: Default::default(),
        });
    }
    Ok(items)
}

/// Turns time-ordered ratings into events, with session ids `u<user>-s<n>`.
/// The ratings of `dir` as events, in time order; an empty log is an error.
pub fn load_events(dir: &Path) -> Result<Vec<Event>, MovieLensError> {
    let events = to_events(&load_ratings(dir)?);
    if events.is_empty() {
        return Err(MovieLensError::Empty(dir.to_owned()));
    }
    Ok(events)
}

pub fn to_events(ratings: &[Rating]) -> Vec<Event> {
    // Per user: (last rating time, sessions started so far).
    let mut users: HashMap<&str, (i64, u32)> = HashMap::new();
    ratings
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let state = users.entry(&r.user_id).or_insert((r.ts_ms, 0));
            if r.ts_ms - state.0 > SESSION_GAP_MS {
                state.1 += 1;
            }
            state.0 = r.ts_ms;
            Event {
                event_id: format!("ml100k-{i}"),
                session_id: format!("u{}-s{}", r.user_id, state.1),
                user_id: Some(r.user_id.clone()),
                kind: EventKind::Rate,
                item_id: r.item_id.clone(),
                ts: r.ts_ms,
                rec_id: None,
                position: None,
                value: Some(r.rating),
                context: None,
                details: Default::default(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rating(user: &str, item: &str, secs: i64) -> Rating {
        Rating {
            user_id: user.into(),
            item_id: item.into(),
            rating: 4.0,
            ts_ms: secs * 1000,
        }
    }

    #[test]
    fn sessions_split_at_thirty_minute_gaps_per_user() {
        let ratings = [
            rating("1", "a", 0),
            rating("2", "b", 10),
            rating("1", "c", 29 * 60),
            rating("1", "d", 29 * 60 + 31 * 60),
            rating("2", "e", 20),
        ];
        let sessions: Vec<String> = to_events(&ratings)
            .into_iter()
            .map(|e| e.session_id)
            .collect();
        assert_eq!(sessions, ["u1-s0", "u2-s0", "u1-s0", "u1-s1", "u2-s0"]);
    }

    #[test]
    fn every_event_is_valid_and_ids_are_unique() {
        let ratings = [rating("1", "a", 900_000_000), rating("1", "a", 900_000_000)];
        let events = to_events(&ratings);
        assert!(events.iter().all(|e| e.validate().is_ok()));
        assert_ne!(events[0].event_id, events[1].event_id);
    }
}
