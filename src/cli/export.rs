//! `closebot-sync export [--as-of TIME]`: the listing as it stood at a time, as JSON, in one
//! consistent snapshot. Reads only.

use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};

use super::exit::{CommandError, Ended};
use crate::config::Settings;
use crate::store::history;
use crate::store::{Store, Tx};

pub(super) async fn export_command(
    settings: &Settings,
    as_of: Option<DateTime<Utc>>,
) -> Result<Ended, CommandError> {
    let at = as_of.unwrap_or_else(Utc::now);
    let store = super::read_store(settings).await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let n = export(&store, at, &mut out).await?;
    tracing::debug!(sources = n, "exported the listing as of {at}");
    Ok(Ended::Done)
}

/// Reads `--as-of`: RFC 3339 (a time without a zone is UTC), or a plain date, meaning the
/// end of that day in UTC (the listing as it stood when the day was over). The command
/// line's parser for it, so a time that does not parse is an invalid argument (exit 2).
pub(super) fn parse_as_of(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
        let end = d
            .and_hms_micro_opt(23, 59, 59, 999_999)
            .expect("a valid time of day");
        return Ok(end.and_utc());
    }
    crate::model::parse_time(text.trim()).map_err(|e| {
        format!(
            "{e}; give an RFC 3339 time such as 2026-03-03T12:00:00Z, or a date such as 2026-03-03"
        )
    })
}

/// Writes the listing as it stood at `at`: `{"asOf": ..., "sources": [...]}`, sorted by
/// sourceId, each record as the API sent it, credentials left out. Reads a slice at a time,
/// all in one read transaction, so a run that commits meanwhile is seen wholly or not at
/// all. A time before the mirror's first completed run is an error: the mirror does not
/// know the listing then, and an empty listing would say it was empty. So is a time before
/// the cut-off of `history.retain_days`: a source whose version then has been deleted
/// would be left out.
pub async fn export(
    store: &Store,
    at: DateTime<Utc>,
    out: &mut impl Write,
) -> anyhow::Result<usize> {
    let mut tx = store.begin_read().await?;
    let written = export_in(&mut tx, at, out).await;
    // Ended on every path: a read transaction left open on a pooled PostgreSQL connection
    // would hold its locks (a DROP or a migration would wait on it).
    tx.rollback().await?;
    written
}

async fn export_in(tx: &mut Tx, at: DateTime<Utc>, out: &mut impl Write) -> anyhow::Result<usize> {
    let Some(first) = history::first_completed_run(&mut tx.conn()).await? else {
        anyhow::bail!(
            "the mirror holds no completed run yet, so there is no listing to export: run \
             `closebot-sync sync` first (or check that this is the service's database)"
        );
    };
    if at < first.started_at {
        anyhow::bail!(
            "--as-of {} is before the mirror's first completed run (run {}, started {}): the \
             mirror does not know the listing then; export a time from then on",
            at.to_rfc3339_opts(SecondsFormat::Secs, true),
            first.run_id,
            first
                .started_at
                .to_rfc3339_opts(SecondsFormat::Micros, true)
        );
    }
    if let Some(horizon) = history::history_horizon(&mut tx.conn()).await? {
        if at < horizon.pruned_before {
            anyhow::bail!(
                "--as-of {} is before {}, the cut-off before which run {} deleted the history \
                 that had closed (history.retain_days): the listing then can no longer be rebuilt \
                 whole; export a time from then on",
                at.to_rfc3339_opts(SecondsFormat::Secs, true),
                horizon
                    .pruned_before
                    .to_rfc3339_opts(SecondsFormat::Micros, true),
                horizon.run_id
            );
        }
    }
    let mut conn = tx.conn();
    let conn = &mut conn;
    write!(
        out,
        "{{\"asOf\":{},\"sources\":[",
        serde_json::to_string(&at.to_rfc3339_opts(SecondsFormat::Micros, true))?
    )?;
    let mut after = String::new();
    let mut n = 0;
    loop {
        let slice = history::records_at(conn, at, &after, 500).await?;
        let Some(last) = slice.last() else { break };
        after = last.source_id.clone();
        for r in slice {
            let record = crate::model::record::for_export(serde_json::from_str(&r.record)?);
            if n > 0 {
                out.write_all(b",")?;
            }
            out.write_all(b"\n")?;
            serde_json::to_writer(&mut *out, &record)?;
            n += 1;
        }
    }
    out.write_all(b"\n]}\n")?;
    out.flush()?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_date_means_the_end_of_that_day_in_utc_and_a_time_is_taken_as_written() {
        let end = parse_as_of("2026-03-03").unwrap();
        assert_eq!(
            end.to_rfc3339_opts(SecondsFormat::Micros, true),
            "2026-03-03T23:59:59.999999Z"
        );
        let at = parse_as_of("2026-03-03T12:00:00+02:00").unwrap();
        assert_eq!(
            at.to_rfc3339_opts(SecondsFormat::Secs, true),
            "2026-03-03T10:00:00Z"
        );
        let e = parse_as_of("yesterday").unwrap_err();
        assert!(e.contains("RFC 3339") && e.contains("2026-03-03"), "{e}");
    }
}
