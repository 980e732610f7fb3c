//! The soak test: many runs in a row against a simulator that changes its data and injects
//! random faults between and during runs. After every run the database equals the
//! simulator (success) or the state after the last committed run (failure), and no source
//! is ever marked deleted while it is still listed. Seeded: SOAK_SEED=n replays a failure.

use std::collections::BTreeSet;
use std::time::Duration;

use closebot_sim::{FaultAction, FaultRule, Faults, MidWalk, MutationPlan};
use closebot_sync::store::runs::RunStatus;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::common::rebuild::assert_mirrors;
use crate::common::{databases, settings, sim_options, simulator, snapshot, Mirror};

const RUNS: usize = 30;

fn random_faults(rng: &mut ChaCha8Rng) -> (&'static str, Faults) {
    let page = Some(rng.gen_range(0..6));
    let one = |action, attempts| Faults {
        rules: vec![FaultRule {
            page,
            attempts,
            action,
        }],
        ..Faults::default()
    };
    let status = |code, retry_after: Option<&str>| FaultAction::Status {
        code,
        retry_after: retry_after.map(str::to_string),
        body: None,
    };
    match rng.gen_range(0..12) {
        0..=3 => ("none", Faults::default()),
        // Retry-After 0: within the tests' api.max_retry_wait, so it is waited, not given up on.
        4 => ("a 429 that passes", one(status(429, Some("0")), 1..=2)),
        5 => ("a 503 that passes", one(status(503, None), 1..=1)),
        6 => ("a 500 that persists", one(status(500, None), 1..=100)),
        7 => ("a malformed page", one(FaultAction::InvalidJson, 1..=100)),
        8 => (
            "an unstable order",
            Faults {
                unstable_order: true,
                ..Faults::default()
            },
        ),
        9 => (
            "a source inserted mid-walk",
            Faults {
                // After page 0, which is always served alone and first: pages after it
                // are fetched concurrently and in any order, so a change "after page 2"
                // may come after the last page, when the walk has seen a whole, steady
                // listing and rightly mirrors that.
                mid_walk: vec![MidWalk::InsertFirst { after_page: 0 }],
                ..Faults::default()
            },
        ),
        10 => (
            "a source deleted mid-walk",
            Faults {
                // After page 0, which is always served alone and first: pages after it
                // are fetched concurrently and in any order, so a change "after page 2"
                // may come after the last page, when the walk has seen a whole, steady
                // listing and rightly mirrors that.
                mid_walk: vec![MidWalk::DeleteFirst { after_page: 0 }],
                ..Faults::default()
            },
        ),
        _ => (
            "a listing that shrinks",
            Faults {
                shrink_to: Some(rng.gen_range(0..20)),
                ..Faults::default()
            },
        ),
    }
}

fn random_changes(rng: &mut ChaCha8Rng) -> MutationPlan {
    MutationPlan {
        rename: rng.gen_range(0..4),
        flip_wallet: rng.gen_range(0..3),
        add_tag: rng.gen_range(0..3),
        rotate_token: rng.gen_range(0..2),
        reorder: rng.gen_range(0..2),
        delete: rng.gen_range(0..3),
        add: rng.gen_range(0..4),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_runs_with_random_faults_never_lose_data_or_delete_a_listed_source() {
    let seed: u64 = std::env::var("SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261124);
    for db in databases().await {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (sim, server) = simulator(sim_options(150, seed)).await;
        let m = Mirror::new(settings(
            &server.base_url(),
            &db,
            &[
                ("CLOSEBOT_SYNC_API__PAGE_SIZE", "30"),
                ("CLOSEBOT_SYNC_API__MAX_RETRIES", "2"),
                ("CLOSEBOT_SYNC_API__TIMEOUT", "5s"),
            ],
        ))
        .await;
        let mut committed = snapshot(&m).await;
        let mut outcomes = BTreeSet::new();
        for run in 0..RUNS {
            sim.set_faults(Faults::default());
            let changes = random_changes(&mut rng);
            sim.mutate(rng.gen(), &changes);
            let (fault, faults) = random_faults(&mut rng);
            sim.set_faults(faults);
            let report = tokio::time::timeout(Duration::from_secs(60), m.sync())
                .await
                .expect("a run ends");
            let context = format!("{} seed {seed} run {run} ({fault})", m.backend());
            sim.set_faults(Faults::default());
            let listed: BTreeSet<String> = sim
                .listing()
                .iter()
                .map(|s| s["sourceId"].as_str().unwrap().to_string())
                .collect();
            match report.status {
                RunStatus::Succeeded => assert_mirrors(&m, &sim.listing()).await,
                RunStatus::Failed => assert_eq!(
                    snapshot(&m).await,
                    committed,
                    "{context}: a failed run changed data"
                ),
                RunStatus::Partial => assert_eq!(report.counts.deleted, 0, "{context}"),
                other => panic!("{context}: unexpected status {other:?}: {:?}", report.error),
            }
            let deleted_while_listed = m
                .dump("SELECT source_id FROM sources WHERE deleted_at IS NOT NULL")
                .await
                .into_iter()
                .filter(|r| listed.contains(r["source_id"].as_str().unwrap()))
                .count();
            assert_eq!(
                deleted_while_listed, 0,
                "{context}: a listed source is marked deleted"
            );
            if report.status != RunStatus::Failed {
                committed = snapshot(&m).await;
            }
            outcomes.insert(report.status.as_str());
        }
        assert!(
            outcomes.contains("succeeded")
                && outcomes.contains("failed")
                && outcomes.contains("partial"),
            "seed {seed} exercised only {outcomes:?}"
        );
        // A last clean run catches up with everything.
        assert_eq!(m.sync().await.status, RunStatus::Succeeded);
        assert_mirrors(&m, &sim.listing()).await;
    }
}
