//! `streamrec evaluate …` and `streamrec simulate …`: offline runs of the learners over real
//! logs, printing JSON.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use streamrec_learner::obd::{self, ClickModel, PolicyName, PolicyParams};

#[derive(Debug, Subcommand)]
pub enum EvaluateCommand {
    /// Off-policy evaluation of a policy over an Open Bandit Dataset log, learning online.
    Obd(ObdArgs),
    /// MovieLens-100K through the whole pipeline: HR@10, NDCG@10, MRR@10 as JSON.
    Ml100k(crate::evaluate_ml100k::Ml100kArgs),
}

#[derive(Debug, Args)]
pub struct ObdArgs {
    /// The log (e.g. data/obd/bts_all.csv, which scripts/fetch-obd writes); items_<name>.csv
    /// must sit beside it.
    #[arg(long)]
    pub log: PathBuf,
    /// uniform, egreedy, linucb, lints or bts.
    #[arg(long)]
    pub policy: PolicyName,
    #[arg(long, default_value_t = 12345)]
    pub seed: u64,
    #[command(flatten)]
    pub params: ParamArgs,
}

/// Policy hyper-parameters (defaults: `PolicyParams::default()`).
#[derive(Debug, Args)]
pub struct ParamArgs {
    #[arg(long, default_value_t = PolicyParams::default().epsilon)]
    pub epsilon: f64,
    #[arg(long, default_value_t = PolicyParams::default().ucb_alpha)]
    pub ucb_alpha: f64,
    #[arg(long, default_value_t = PolicyParams::default().ts_scale)]
    pub ts_scale: f64,
    #[arg(long, default_value_t = PolicyParams::default().lambda)]
    pub lambda: f64,
}

impl From<&ParamArgs> for PolicyParams {
    fn from(a: &ParamArgs) -> Self {
        PolicyParams {
            epsilon: a.epsilon,
            ucb_alpha: a.ucb_alpha,
            ts_scale: a.ts_scale,
            lambda: a.lambda,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum SimulateCommand {
    /// Run policies online against a click model fitted on an OBD log.
    Obd(SimulateObdArgs),
}

#[derive(Debug, Args)]
pub struct SimulateObdArgs {
    /// The log to calibrate on (the uniform-random one: its clicks are unconfounded).
    #[arg(long)]
    pub log: PathBuf,
    #[arg(long, default_value_t = 100_000)]
    pub rounds: usize,
    #[arg(long, default_value_t = 10)]
    pub seeds: u64,
    /// Seeds used are first-seed, first-seed + 1, …
    #[arg(long, default_value_t = 100)]
    pub first_seed: u64,
    /// Policies to run, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "uniform,bts,egreedy,linucb,lints"
    )]
    pub policies: Vec<PolicyName>,
    #[command(flatten)]
    pub params: ParamArgs,
}

pub async fn evaluate(command: EvaluateCommand) -> anyhow::Result<()> {
    match command {
        EvaluateCommand::Ml100k(args) => crate::evaluate_ml100k::run(args).await?,
        EvaluateCommand::Obd(args) => {
            let log = crate::obd_csv::load(&args.log)?;
            let report = obd::evaluate(&log, args.policy, &(&args.params).into(), args.seed);
            println!("{}", serde_json::to_string(&report)?);
        }
    }
    Ok(())
}

pub fn simulate(command: SimulateCommand) -> anyhow::Result<()> {
    match command {
        SimulateCommand::Obd(args) => {
            let log = crate::obd_csv::load(&args.log)?;
            let model = ClickModel::fit(&log);
            let seeds: Vec<u64> = (args.first_seed..args.first_seed + args.seeds).collect();
            let params: PolicyParams = (&args.params).into();
            let runs: Vec<_> = args
                .policies
                .iter()
                .map(|&p| {
                    tracing::info!(policy = ?p, "simulating");
                    obd::simulate(&model, p, &params, args.rounds, &seeds)
                })
                .collect();
            let out = serde_json::json!({
                "calibration": model.calibration,
                "oracle_ctr": model.oracle_ctr(),
                "params": params,
                "runs": runs,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
    }
    Ok(())
}
