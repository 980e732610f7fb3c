//! Validating: each setting as written checked and parsed into the type the program uses,
//! or refused with a message that names the setting and the fix.

use std::time::Duration;

use super::load::RawSettings;
use super::{
    invalid, ApiSettings, ConfigError, Cron, DatabaseSettings, LogFormat, LogSettings,
    ScheduleSettings, Settings, SyncSettings, MAX_PAGE_SIZE,
};

/// The range of `api.max_page_bytes`: a page of 100 real sources is a few hundred kB.
const PAGE_BYTES_RANGE: std::ops::RangeInclusive<u64> = (64 << 10)..=(256 << 20);

/// A duration as operators write it (`30s`, `5m`, `1h`).
fn duration(key: &'static str, text: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(text).map_err(|e| {
        invalid(
            key,
            format!("{text:?} is not a duration ({e}); write e.g. \"30s\", \"5m\" or \"1h\""),
        )
    })
}

pub(super) fn validate(
    raw: RawSettings,
    warnings: Vec<String>,
    env: &[(String, String)],
) -> Result<Settings, ConfigError> {
    // Not shown back: a URL that does not parse may still hold a password.
    let base_url = url::Url::parse(&raw.api.base_url).map_err(|e| {
        invalid(
            "api.base_url",
            format!("is not a URL ({e}); write the API's address, e.g. https://api.closebot.com"),
        )
    })?;
    if !base_url.username().is_empty()
        || base_url.password().is_some()
        || base_url.query().is_some()
        || base_url.fragment().is_some()
    {
        return Err(invalid(
            "api.base_url",
            "holds a user name, password, query string or fragment: give the API's address \
             alone, e.g. https://api.closebot.com (the key goes in api.key or api.key_file); \
             anything else in it would be sent with every request and shown in messages",
        ));
    }
    check_transport(&base_url)?;
    if raw.api.page_size == 0 || raw.api.page_size > MAX_PAGE_SIZE {
        return Err(invalid(
            "api.page_size",
            format!(
                "{} is out of range: the API serves 1 to {MAX_PAGE_SIZE} sources per page",
                raw.api.page_size
            ),
        ));
    }
    let timeout = duration("api.timeout", &raw.api.timeout)?;
    if timeout.is_zero() {
        return Err(invalid(
            "api.timeout",
            "must be more than zero, e.g. \"30s\"",
        ));
    }
    let max_retry_wait = duration("api.max_retry_wait", &raw.api.max_retry_wait)?;
    if raw.api.concurrency == 0 || raw.api.concurrency > 16 {
        return Err(invalid(
            "api.concurrency",
            format!("{} is out of range: use 1 to 16", raw.api.concurrency),
        ));
    }
    if !PAGE_BYTES_RANGE.contains(&raw.api.max_page_bytes) {
        return Err(invalid(
            "api.max_page_bytes",
            format!(
                "{} is out of range: use {} (64 KiB) to {} (256 MiB); a page of 100 sources \
                 is a few hundred kB, and the default is 16777216 (16 MiB)",
                raw.api.max_page_bytes,
                PAGE_BYTES_RANGE.start(),
                PAGE_BYTES_RANGE.end()
            ),
        ));
    }
    let key = super::key::resolve(raw.api.key, raw.api.key_file, env)?;
    let url = raw.database.url.parse().map_err(|e| {
        invalid(
            "database.url",
            format!("{e} (set it in the settings file or as CLOSEBOT_SYNC_DATABASE__URL)"),
        )
    })?;
    if raw.database.max_connections < 2 {
        return Err(invalid(
            "database.max_connections",
            "must be at least 2 (one for the run's transaction, one for its run row)",
        ));
    }
    if raw.sync.max_walks == 0 || raw.sync.max_walks > 10 {
        return Err(invalid("sync.max_walks", "use 1 to 10"));
    }
    if !(0.0..=1.0).contains(&raw.sync.max_delete_fraction) {
        return Err(invalid(
            "sync.max_delete_fraction",
            format!(
                "{} is not a fraction: use 0.0 to 1.0 (0.5 = at most half of the live sources)",
                raw.sync.max_delete_fraction
            ),
        ));
    }
    let max_run_time = duration("sync.max_run_time", &raw.sync.max_run_time)?;
    if max_run_time < std::time::Duration::from_secs(1)
        || max_run_time > std::time::Duration::from_secs(30 * 86_400)
    {
        return Err(invalid(
            "sync.max_run_time",
            "use 1s to 30days, e.g. \"2h\"",
        ));
    }
    let format = match raw.log.format.as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            return Err(invalid(
                "log.format",
                format!("{other:?} is not a format: use \"text\" or \"json\""),
            ))
        }
    };
    tracing_subscriber::EnvFilter::try_new(&raw.log.level).map_err(|e| {
        invalid(
            "log.level",
            format!(
                "{:?}: {e}; use e.g. \"info\" or \"closebot_sync=debug\"",
                raw.log.level
            ),
        )
    })?;
    let metrics_listen = raw
        .metrics
        .listen
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.parse().map_err(|_| {
                invalid(
                    "metrics.listen",
                    format!("{s:?} is not an address: write e.g. \"127.0.0.1:9464\""),
                )
            })
        })
        .transpose()?;
    if raw.history.retain_days == Some(0) {
        return Err(invalid(
            "history.retain_days",
            "0 would delete history as soon as it is written: leave it unset to keep \
             history forever, or give a number of days",
        ));
    }
    Ok(Settings {
        api: ApiSettings {
            base_url,
            key,
            page_size: raw.api.page_size,
            timeout,
            max_retries: raw.api.max_retries,
            max_retry_wait,
            concurrency: raw.api.concurrency as usize,
            max_page_bytes: raw.api.max_page_bytes,
        },
        database: DatabaseSettings {
            url,
            max_connections: raw.database.max_connections,
        },
        sync: SyncSettings {
            store_credentials: raw.sync.store_credentials,
            max_walks: raw.sync.max_walks,
            max_delete_fraction: raw.sync.max_delete_fraction,
            max_run_time,
        },
        schedule: ScheduleSettings {
            cron: Cron::parse(&raw.schedule.cron)?,
            run_on_start: raw.schedule.run_on_start,
            shutdown_timeout: duration(
                "schedule.shutdown_timeout",
                &raw.schedule.shutdown_timeout,
            )?,
        },
        log: LogSettings {
            level: raw.log.level,
            format,
        },
        metrics_listen,
        health_max_age: duration("health.max_age", &raw.health.max_age)?,
        history_retain_days: raw.history.retain_days,
        warnings,
    })
}

/// Whether the URL names this machine.
pub fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// The key travels in a header: plain HTTP is allowed only to this machine (the simulator).
fn check_transport(url: &url::Url) -> Result<(), ConfigError> {
    let loopback = is_loopback(url);
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(invalid(
            "api.base_url",
            format!(
                "{url} is plain http: the API key would cross the network unencrypted; \
                 use https:// (plain http is accepted only for a loopback host such as the simulator)"
            ),
        )),
        other => Err(invalid(
            "api.base_url",
            format!("scheme {other:?} is not supported: use https://"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load_toml;

    #[test]
    fn a_bad_value_names_the_key_and_the_fix() {
        for (toml, key) in [
            ("[api]\ntimeout = \"soon\"\n", "api.timeout"),
            (
                "[api]\nbase_url = \"http://api.closebot.com\"\n",
                "api.base_url",
            ),
            (
                "[sync]\nmax_delete_fraction = 2.0\n",
                "sync.max_delete_fraction",
            ),
            ("[log]\nformat = \"xml\"\n", "log.format"),
            ("[api]\nmax_page_bytes = 1000\n", "api.max_page_bytes"),
            ("[api]\nmax_page_bytes = 1000000000\n", "api.max_page_bytes"),
            ("[database]\nurl = \"mysql://x\"\n", "database.url"),
            ("[history]\nretain_days = 0\n", "history.retain_days"),
            (
                "[sync]\nmax_run_time = \"300000000000y\"\n",
                "sync.max_run_time",
            ),
            ("[sync]\nmax_run_time = \"0s\"\n", "sync.max_run_time"),
        ] {
            let e = load_toml(toml, &[]).unwrap_err().to_string();
            assert!(e.contains(key), "{toml}: {e}");
        }
        let typo = load_toml("[api]\npage_sise = 5\n", &[])
            .unwrap_err()
            .to_string();
        assert!(typo.contains("page_sise"), "{typo}");
    }

    #[test]
    fn plain_http_is_accepted_only_for_loopback() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost:1",
            "http://[::1]:9",
            "https://x.example",
        ] {
            let toml = format!("[api]\nbase_url = \"{ok}\"\n");
            assert!(load_toml(&toml, &[]).is_ok(), "{ok}");
        }
        let e = load_toml("[api]\nbase_url = \"http://10.0.0.5\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("https://"), "{e}");
    }

    #[test]
    fn a_base_url_with_credentials_a_query_or_a_fragment_is_refused_without_showing_them() {
        for bad in [
            "https://u:BasicPw@api.example",
            "https://u@api.example",
            "https://api.example/?token=QSECRET",
            "https://api.example/#QSECRET",
            "https://u:BasicPw@[bad",
        ] {
            let toml = format!("[api]\nbase_url = \"{bad}\"\n");
            let e = load_toml(&toml, &[]).unwrap_err().to_string();
            assert!(e.contains("api.base_url"), "{bad}: {e}");
            assert!(
                !e.contains("BasicPw") && !e.contains("QSECRET"),
                "{bad}: {e}"
            );
        }
        assert!(load_toml("[api]\nbase_url = \"https://api.example/v1/\"\n", &[]).is_ok());
    }

    #[test]
    fn an_in_memory_database_is_refused() {
        for url in ["sqlite::memory:", "sqlite://x.db?mode=memory"] {
            let e = load_toml(&format!("[database]\nurl = \"{url}\"\n"), &[])
                .unwrap_err()
                .to_string();
            assert!(e.contains("database.url") && e.contains("in-memory"), "{e}");
        }
    }

    #[test]
    fn a_malformed_database_url_names_the_setting_its_variable_and_an_example() {
        for url in [
            "mysql://x",
            "sqlite://x.db?cache=sideways",
            "closebot-sync.db",
        ] {
            let e = load_toml("", &[("CLOSEBOT_SYNC_DATABASE__URL", url)])
                .unwrap_err()
                .to_string();
            for says in [
                "database.url",
                "CLOSEBOT_SYNC_DATABASE__URL",
                "sqlite://closebot-sync.db",
            ] {
                assert!(e.contains(says), "{url}: {e}");
            }
        }
    }
}
