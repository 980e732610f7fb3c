//! The systemd unit: its exposure as `systemd-analyze security` scores it.

use std::process::Command;

/// The bar of the issue: 1.5 or less ("OK" starts below 2.0 in systemd's scale).
const MAX_EXPOSURE: f64 = 1.5;

#[test]
fn the_service_unit_scores_an_exposure_of_at_most_1_5() {
    let unit = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/closebot-sync.service");
    assert!(std::path::Path::new(unit).is_file(), "{unit} is missing");
    let out = match Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager", unit])
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            crate::common::note_skipped(&format!(
                "systemd-analyze is not available ({e}): the exposure check of {unit} is SKIPPED"
            ));
            return;
        }
    };
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score of {line:?}"));
    assert!(
        score <= MAX_EXPOSURE,
        "exposure {score} > {MAX_EXPOSURE}:\n{text}"
    );
}

#[test]
fn the_service_unit_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/closebot-sync.service"
    ))
    .unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/closebot-sync run"));
    // verify checks that ExecStart= exists: point it at the binary just built.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("closebot-sync.service");
    let unit = unit.replace(
        "/usr/bin/closebot-sync",
        env!("CARGO_BIN_EXE_closebot-sync"),
    );
    std::fs::write(&copy, unit).unwrap();
    let out = match Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            crate::common::note_skipped(&format!(
                "systemd-analyze is not available ({e}): verifying the unit is SKIPPED"
            ));
            return;
        }
    };
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.trim().is_empty(), "{text}");
}
