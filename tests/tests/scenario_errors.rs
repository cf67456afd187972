//! Bad input gets a one-line error that names the file and the key, and the
//! command line turns it into exit code 2, never a panic.

use kafsim::cli::{main_with, run, Cli, RunArgs};
use clap::Parser;
use std::path::PathBuf;

fn write(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kafsim-scenario-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write scenario");
    path
}

const VALID: &str = r#"
name = "tiny"
duration = "5s"
[cluster]
brokers = 1
[[topics]]
name = "t"
partitions = 1
replication_factor = 1
"#;

fn error_for(name: &str, text: &str) -> String {
    let path = write(name, text);
    let args = RunArgs { scenarios: vec![path.clone()], seeds: Some(1), quiet: true, ..RunArgs::default() };
    match run(args) {
        Err(error) => {
            let message = error.0;
            assert!(!message.contains('\n'), "the error is one line: {message}");
            assert!(message.contains(&path.display().to_string()), "the error names the file: {message}");
            message
        }
        Ok(code) => panic!("a bad scenario ran with exit code {code}"),
    }
}

#[test]
fn an_unknown_key_is_named() {
    let message = error_for("unknown-key.toml", &VALID.replace("brokers = 1", "brokers = 1\nbrokerz = 2"));
    assert!(message.contains("cluster.brokerz"), "{message}");
}

#[test]
fn a_bad_duration_is_named_with_what_was_expected() {
    let message = error_for("bad-duration.toml", &VALID.replace("\"5s\"", "\"5 sec\""));
    assert!(message.contains("duration") && message.contains("\"10s\""), "{message}");
}

#[test]
fn a_misspelt_kafka_property_is_named() {
    let message = error_for("misspelt-property.toml", &VALID.replace("brokers = 1", "brokers = 1\n[cluster.config]\n\"min.insync.replica\" = 2"));
    assert!(message.contains("min.insync.replica"), "{message}");
}

#[test]
fn bad_input_exits_with_code_2() {
    let path = write("unknown.toml", &VALID.replace("name = \"tiny\"", "name = \"tiny\"\nfrobnicate = true"));
    let cli = Cli::parse_from(["kafsim", "run", path.to_str().expect("utf-8 path"), "--seeds", "1", "--quiet"]);
    assert_eq!(main_with(cli), 2);
    let missing = Cli::parse_from(["kafsim", "run", "/nonexistent/scenario.toml", "--quiet"]);
    assert_eq!(main_with(missing), 2);
}

#[test]
fn a_valid_tiny_scenario_runs_and_passes() {
    let path = write("valid.toml", VALID);
    let args = RunArgs { scenarios: vec![path], seeds: Some(3), quiet: true, ..RunArgs::default() };
    assert!(matches!(run(args), Ok(0)));
}
