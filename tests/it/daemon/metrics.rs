//! `/metrics` and `/healthz` of the real binary, on both backends: the series an operator
//! graphs, and a health that turns 503 once runs have failed for longer than `health.max_age`.

use std::time::Duration;

use closebot_sim::Faults;

use super::{eventually, free_port, Daemon};
use crate::common::{databases, sim_options, simulator};

/// The value of one series (name with labels, as rendered) in a Prometheus text page.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

async fn get(url: &str) -> Option<(u16, String)> {
    let r = reqwest::get(url).await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.ok()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_healthz_answer_and_health_turns_503_when_runs_fail_past_max_age() {
    let (sim, server) = simulator(sim_options(50, 41)).await;
    for db in databases().await {
        sim.set_api_key("sim-key");
        sim.set_faults(Faults {
            latency: Duration::from_millis(1500),
            ..Faults::default()
        });
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut d = Daemon::start(
            "d",
            &server.base_url(),
            &db,
            &[
                ("CLOSEBOT_SYNC_SCHEDULE__CRON", "*/1 * * * * *"),
                ("CLOSEBOT_SYNC_METRICS__LISTEN", &listen),
                ("CLOSEBOT_SYNC_HEALTH__MAX_AGE", "3s"),
            ],
        );
        let base = format!("http://{listen}");
        let healthy = eventually(Duration::from_secs(30), "a healthy /healthz", || {
            let url = format!("{base}/healthz");
            async move { get(&url).await.filter(|(s, _)| *s == 200) }
        })
        .await;
        assert!(
            healthy
                .1
                .starts_with("healthy: the last run that applied changes"),
            "{}",
            healthy.1
        );

        // A 1.5 s run on a 1 s schedule: ticks are skipped, and counted.
        let text = eventually(
            Duration::from_secs(30),
            "a skipped tick in /metrics",
            || {
                let url = format!("{base}/metrics");
                async move {
                    get(&url)
                        .await
                        .filter(|(_, t)| {
                            value(t, "closebot_sync_skipped_ticks_total{reason=\"overlap\"}")
                                .is_some_and(|n| n >= 1.0)
                        })
                        .map(|(_, t)| t)
                }
            },
        )
        .await;
        for series in [
            "closebot_sync_runs_total{status=\"succeeded\"}",
            "closebot_sync_run_duration_seconds_bucket",
            "closebot_sync_last_run_sources{state=\"created\"}",
            "closebot_sync_last_success_timestamp_seconds",
            "closebot_sync_http_requests_total",
            "closebot_sync_http_retries_total",
            "# HELP closebot_sync_skipped_ticks_total",
            "closebot_sync_skipped_ticks_total{reason=\"busy\"} 0",
            "closebot_sync_scheduler_rebuilds_total 0",
        ] {
            assert!(
                text.contains(series),
                "{}: no {series} in\n{text}",
                db.backend
            );
        }

        // The key is revoked: every run fails; once the last success is older than
        // health.max_age, /healthz says so.
        sim.set_api_key("a-new-key");
        let (_, body) = eventually(Duration::from_secs(30), "an unhealthy /healthz", || {
            let url = format!("{base}/healthz");
            async move { get(&url).await.filter(|(s, _)| *s == 503) }
        })
        .await;
        assert!(
            body.starts_with("unhealthy: the last run that applied changes"),
            "{body}"
        );
        assert!(
            body.contains(") is failed: the API refused the key"),
            "{body}"
        );
        let (_, text) = get(&format!("{base}/metrics")).await.unwrap();
        assert!(
            text.contains("closebot_sync_runs_total{status=\"failed\"}"),
            "{text}"
        );

        d.signal("TERM");
        assert_eq!(d.wait(Duration::from_secs(15)).0, 0, "{}", d.logs());
    }
}
