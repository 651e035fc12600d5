//! Reads an Open Bandit Dataset run in the flat CSV form `scripts/fetch-obd` writes: `<name>.csv`
//! (one impression per row) and `items_<name>.csv` beside it.

use std::path::{Path, PathBuf};

use streamrec_learner::obd::{ObdItem, ObdLog, ObdRow, USER_FEATURES};

#[derive(Debug, thiserror::Error)]
pub enum ObdError {
    #[error("cannot read {path}: {source}")]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
    #[error("{path}, row {row}: {message}")]
    Row {
        path: PathBuf,
        row: usize,
        message: String,
    },
    #[error("{0} has no rows")]
    Empty(PathBuf),
}

/// `dir/name.csv` → `dir/items_name.csv`.
pub fn items_path(log: &Path) -> PathBuf {
    let name = log
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    log.with_file_name(format!("items_{name}"))
}

pub fn load(log_path: &Path) -> Result<ObdLog, ObdError> {
    let items = load_items(&items_path(log_path))?;
    let csv_err = |source| ObdError::Csv {
        path: log_path.to_owned(),
        source,
    };
    let mut reader = csv::Reader::from_path(log_path).map_err(csv_err)?;
    let headers = reader.headers().map_err(csv_err)?.clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| ObdError::Row {
                path: log_path.to_owned(),
                row: 0,
                message: format!("missing column {name}"),
            })
    };
    let item_col = column("item_id")?;
    let position_col = column("position0")?;
    let click_col = column("click")?;
    let propensity_col = column("propensity_score")?;
    let user_cols: Vec<usize> = (0..USER_FEATURES)
        .map(|f| column(&format!("user_feature_{f}")))
        .collect::<Result<_, _>>()?;
    let affinity_cols: Vec<usize> = (0..items.len())
        .map(|a| column(&format!("affinity_{a}")))
        .collect::<Result<_, _>>()?;

    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(csv_err)?;
        let bad = |message: String| ObdError::Row {
            path: log_path.to_owned(),
            row: i + 1,
            message,
        };
        let field = |c: usize| record.get(c).unwrap_or_default();
        let number = |c: usize| -> Result<f64, ObdError> {
            field(c)
                .parse::<f64>()
                .map_err(|e| bad(format!("{}: {e}", &headers[c])))
        };
        let index = |c: usize| -> Result<usize, ObdError> {
            field(c)
                .parse::<usize>()
                .map_err(|e| bad(format!("{}: {e}", &headers[c])))
        };
        let item = index(item_col)?;
        if item >= items.len() {
            return Err(bad(format!("item {item} is not in the items file")));
        }
        let propensity = number(propensity_col)?;
        if !(propensity > 0.0 && propensity <= 1.0) {
            return Err(bad(format!("propensity {propensity} is not in (0, 1]")));
        }
        rows.push(ObdRow {
            item,
            position: index(position_col)?,
            click: number(click_col)? > 0.0,
            propensity,
            user: std::array::from_fn(|f| field(user_cols[f]).to_owned()),
            affinity: affinity_cols
                .iter()
                .map(|&c| number(c))
                .collect::<Result<_, _>>()?,
        });
    }
    if rows.is_empty() {
        return Err(ObdError::Empty(log_path.to_owned()));
    }
    let positions = rows.iter().map(|r| r.position + 1).max().unwrap_or(1);
    Ok(ObdLog {
        rows,
        items,
        positions,
    })
}

fn load_items(path: &Path) -> Result<Vec<ObdItem>, ObdError> {
    let csv_err = |source| ObdError::Csv {
        path: path.to_owned(),
        source,
    };
    let mut reader = csv::Reader::from_path(path).map_err(csv_err)?;
    let mut items: Vec<(usize, ObdItem)> = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(csv_err)?;
        let bad = |message: String| ObdError::Row {
            path: path.to_owned(),
            row: i + 1,
            message,
        };
        let id: usize = record
            .get(0)
            .unwrap_or_default()
            .parse()
            .map_err(|e| bad(format!("item_id: {e}")))?;
        let numeric: f64 = record
            .get(1)
            .unwrap_or_default()
            .parse()
            .map_err(|e| bad(format!("item_feature_0: {e}")))?;
        let categorical = record.iter().skip(2).map(str::to_owned).collect();
        items.push((
            id,
            ObdItem {
                numeric,
                categorical,
            },
        ));
    }
    items.sort_by_key(|(id, _)| *id);
    if items.iter().enumerate().any(|(i, (id, _))| i != *id) {
        return Err(ObdError::Row {
            path: path.to_owned(),
            row: 0,
            message: "item ids must be 0..n".to_owned(),
        });
    }
    Ok(items.into_iter().map(|(_, item)| item).collect())
}
