//! Off-policy estimates on the Open Bandit Dataset sample agree with the reference
//! implementation: the IPW and SNIPW estimates of the uniform policy from the Bernoulli-TS log
//! equal Open Bandit Pipeline 0.5.7's (`../shared/baselines/README.md`) to 1e-6.

use std::path::PathBuf;

use streamrec_learner::obd::{ObdLog, PolicyName, PolicyParams, evaluate};

/// Open Bandit Pipeline 0.5.7, `InverseProbabilityWeighting` and
/// `SelfNormalizedInverseProbabilityWeighting` of the uniform policy on the BTS log.
const OBP_IPW: f64 = 0.002_359_639_5;
const OBP_SNIPW: f64 = 0.002_333_713_9;

/// A log of the sample in `data/obd/`, which `scripts/fetch-obd` writes (never committed).
fn obd_log(name: &str) -> ObdLog {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("data/obd")
        .join(name);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/fetch-obd to fetch the Open Bandit Dataset sample",
        path.display()
    );
    streamrec_api::obd_csv::load(&path)
        .unwrap_or_else(|e| panic!("{} is readable: {e}", path.display()))
}

#[test]
fn uniform_policy_from_the_bts_log_matches_open_bandit_pipeline() {
    let log = obd_log("bts_all.csv");
    assert_eq!(log.rows.len(), 10_000);
    assert_eq!(log.rows.iter().filter(|r| r.click).count(), 42);
    let report = evaluate(&log, PolicyName::Uniform, &PolicyParams::default(), 12345);
    assert!(
        (report.ipw.estimate - OBP_IPW).abs() < 1e-6,
        "{}",
        report.ipw.estimate
    );
    assert!(
        (report.snipw.estimate - OBP_SNIPW).abs() < 1e-6,
        "{}",
        report.snipw.estimate
    );
    assert!(report.ipw.ci95[0] < OBP_IPW && OBP_IPW < report.ipw.ci95[1]);
    assert!(
        report.replay.is_none(),
        "the BTS log is not uniform: no replay"
    );
}

#[test]
fn replay_on_the_uniform_log_matches_about_one_in_eighty() {
    let log = obd_log("random_all.csv");
    let report = evaluate(&log, PolicyName::Uniform, &PolicyParams::default(), 1);
    let replay = report.replay.expect("the uniform log supports replay");
    // 10,000 rows at 1/80 each: about 125 matches (the baselines saw 120-145).
    assert!((90..=160).contains(&replay.matched), "{}", replay.matched);
    // On-policy, every estimator is the plain CTR: 38 clicks in 10,000.
    assert!((report.ipw.estimate - 0.0038).abs() < 1e-12);
}
