//! Reads Vowpal Wabbit's text format (`label |ns name[:value] … |ns …`) into streamrec's
//! examples, so both learners see the same examples and the same features.

use streamrec_learner::{Example, FeatureSpace, FtrlConfig, Namespace};

/// The FTRL set up like the VW runs it is compared with: 2^24 weights, `-q ui` crosses, no
/// L1/L2, learning rate `alpha`.
pub fn vw_comparable_config(alpha: f64) -> FtrlConfig {
    FtrlConfig {
        alpha,
        beta: 1.0,
        l1: 0.0,
        l2: 0.0,
        space: FeatureSpace::new(24, vec![('u', 'i')]),
    }
}

/// One line: label in {0, 1} and the example. `None` for a line that is not an example.
pub fn parse_line(line: &str) -> Option<(f64, Example)> {
    let mut sections = line.split('|');
    let label = match sections.next()?.split_whitespace().next()? {
        "1" => 1.0,
        "-1" | "0" => 0.0,
        _ => return None,
    };
    let mut namespaces = Vec::new();
    for section in sections {
        let mut tokens = section.split_whitespace();
        let id = tokens.next()?.chars().next()?;
        let mut ns = Namespace::new(id);
        for token in tokens {
            match token.split_once(':') {
                Some((name, value)) => ns.push(name, value.parse().ok()?),
                None => ns.push(token, 1.0),
            }
        }
        namespaces.push(ns);
    }
    Some((label, Example::new(namespaces)))
}

#[allow(dead_code, reason = "used by one of the two bench binaries")]
pub fn read(path: &std::path::Path, limit: usize) -> std::io::Result<Vec<(f64, Example)>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text.lines().take(limit).filter_map(parse_line).collect())
}
