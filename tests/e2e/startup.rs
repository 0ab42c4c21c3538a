//! Start-up configuration errors name the setting and stop the process.

use std::process::Command;

use crate::harness::{repo_root, shared};

fn serve_with(env: &[(&str, &str)]) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gateway"));
    command.arg("serve").current_dir(repo_root()).env("GATEWAY_PACKAGES", shared().join("fhir-packages"));
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().expect("run gateway");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn unknown_setting_stops_start_up() {
    let (code, err) = serve_with(&[("GATEWAY_DATABSE_URL", "sqlite://x.db")]);
    assert_eq!(code, 2);
    assert!(err.contains("GATEWAY_DATABSE_URL"), "{err}");
}

#[test]
fn invalid_setting_stops_start_up() {
    let (code, err) = serve_with(&[("GATEWAY_LISTEN", "not-an-address")]);
    assert_eq!(code, 2);
    assert!(err.contains("GATEWAY_LISTEN"), "{err}");
    let (code, err) = serve_with(&[("GATEWAY_PACKAGES", "/no/such/dir")]);
    assert_eq!(code, 2);
    assert!(err.contains("packages") && err.contains("/no/such/dir"), "{err}");
    let (code, err) = serve_with(&[("GATEWAY_DATABASE_URL", "mysql://x")]);
    assert_eq!(code, 2);
    assert!(err.contains("database_url"), "{err}");
}
