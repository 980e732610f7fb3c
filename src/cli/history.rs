//! `closebot-sync history SOURCE_ID`: a source's name, versions and field changes, newest
//! first, read in one snapshot. Reads only.

use chrono::{DateTime, Utc};

use super::exit::{CommandError, Ended};
use super::status::cut;
use crate::closebot::untrusted::printable;
use crate::config::Settings;
use crate::store::history::{self, ChangeRow, VersionRow};
use crate::store::Store;

pub(super) async fn history_command(
    settings: &Settings,
    source_id: &str,
) -> Result<Ended, CommandError> {
    let store = super::read_store(settings).await?;
    print!("{}", history(&store, source_id).await?);
    Ok(Ended::Done)
}

/// `history SOURCE_ID`: the source's name, versions and changes, read in one snapshot; an
/// id the mirror never held is an error.
async fn history(store: &Store, source_id: &str) -> anyhow::Result<String> {
    let mut tx = store.begin_read().await?;
    let read = async {
        let versions = history::versions(&mut tx.conn(), source_id).await?;
        let changes = history::changes(&mut tx.conn(), source_id).await?;
        let name = history::latest_name(&mut tx.conn(), source_id).await?;
        Ok::<_, crate::store::StoreError>((versions, changes, name))
    }
    .await;
    tx.rollback().await?;
    let (versions, changes, name) = read?;
    if versions.is_empty() && changes.is_empty() {
        anyhow::bail!(
            "unknown source {:?}: the mirror never held a source with this sourceId (check it: \
             `closebot-sync export` lists the ids)",
            printable(source_id)
        );
    }
    Ok(history_text(
        source_id,
        name.as_deref(),
        &versions,
        &changes,
    ))
}

/// A source's history as text: its name, its versions, then its field changes, newest first.
fn history_text(
    source_id: &str,
    name: Option<&str>,
    versions: &[VersionRow],
    changes: &[ChangeRow],
) -> String {
    let time = |t: &DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S").to_string();
    let name = match name {
        Some(n) => format!("\"{}\"", printable(n)),
        None => "(no name)".to_string(),
    };
    let mut out = format!(
        "source {} {name}\n\nversions (newest first)\n",
        printable(source_id)
    );
    out.push_str(&format!(
        "{:>7}  {:<19}  {:<19}  {:>6}  {:>6}\n",
        "version", "valid from (UTC)", "valid to (UTC)", "opened", "closed"
    ));
    for v in versions {
        out.push_str(&format!(
            "{:>7}  {:<19}  {:<19}  {:>6}  {:>6}\n",
            v.version,
            time(&v.valid_from),
            v.valid_to
                .as_ref()
                .map(time)
                .unwrap_or_else(|| "(current)".into()),
            v.opened_run_id,
            v.closed_run_id.map(|r| r.to_string()).unwrap_or_default()
        ));
    }
    out.push_str("\nchanges (newest first)\n");
    for c in changes {
        let detail = match &c.field_path {
            Some(path) => format!(
                "{path}: {} → {}",
                c.old_value
                    .as_deref()
                    .map(|v| cut(v, 80))
                    .unwrap_or_else(|| "(absent)".into()),
                c.new_value
                    .as_deref()
                    .map(|v| cut(v, 80))
                    .unwrap_or_else(|| "(absent)".into())
            ),
            None => String::new(),
        };
        out.push_str(&format!(
            "{}  run {:>5}  {:<8}  {detail}\n",
            time(&c.changed_at),
            c.run_id,
            c.change_type
        ));
    }
    out
}
