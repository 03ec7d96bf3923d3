//! Every binary answers `--help` and refuses a bad config with one clear line.

use std::process::Command;

use corral_e2e::{Scratch, binary};

#[test]
fn every_binary_documents_its_flags() {
    // The load tests' config belongs to their viewer swarm.
    for (name, args) in [
        ("origin", &["--help"][..]),
        ("edge", &["--help"]),
        ("chat-relay", &["--help"]),
        ("loadtest", &["viewers", "--help"]),
    ] {
        let out = Command::new(binary(name))
            .args(args)
            .output()
            .expect("runs");
        assert!(out.status.success(), "{name} --help");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("--config <YAML>"), "{name}: {text}");
    }
}

/// Runs the origin with `config`; returns its exit code (0 if it was still serving after 30 s
/// and had to be stopped) and its stderr with the config's path replaced by `FILE`.
fn origin_with(config: &str) -> (i32, String) {
    let scratch = Scratch::new("config");
    let path = scratch.file("bad.yaml", config);
    let err_path = scratch.0.join("stderr");
    let err_file = std::fs::File::create(&err_path).expect("stderr file");
    let mut child = Command::new(binary("origin"))
        .arg("--config")
        .arg(&path)
        // An origin that does start archives under its working directory.
        .current_dir(&scratch.0)
        .stdout(std::process::Stdio::null())
        .stderr(err_file)
        .spawn()
        .expect("runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code().unwrap_or(-1);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break 0;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&err_path)
        .unwrap_or_default()
        .replace(path.to_str().expect("utf-8"), "FILE");
    (code, stderr)
}

#[test]
fn a_bad_config_stops_the_origin_with_one_line_naming_file_key_and_expectation() {
    let (code, err) = origin_with("transcoder:\n  ladderr: []\n");
    assert_eq!(code, 2);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(
            "origin: FILE: transcoder.ladderr: unknown field `ladderr`, expected one of"
        ),
        "{err}"
    );

    let (code, err) = origin_with("llhls:\n  part_target: 5\n");
    assert_eq!(code, 2);
    assert_eq!(
        err.trim_end(),
        "origin: FILE: llhls.part_target: expected seconds between 0.1 and 2, got 5"
    );

    let (code, err) = origin_with(
        "transcoder:\n  ladder:\n    - { name: hd, width: 1280, height: 720, bitrate: fast }\n",
    );
    assert_eq!(code, 2);
    assert!(err.contains("transcoder.ladder[0].bitrate"), "{err}");

    let out = Command::new(binary("origin"))
        .args(["--config", "/nonexistent/origin.yaml"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .starts_with("origin: /nonexistent/origin.yaml: cannot read the config file")
    );
}

#[test]
fn nvenc_without_a_usable_gpu_fails_at_start_with_a_clear_message() {
    let (code, err) = origin_with(
        "http:\n  listen: 127.0.0.1:0\nmetrics:\n  listen: 127.0.0.1:0\ntranscoder:\n  encoder: nvenc\n",
    );
    if std::path::Path::new("/dev/nvidiactl").exists() && code == 0 {
        return; // A machine with a working NVENC: nothing to refuse.
    }
    assert_eq!(code, 1, "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("origin: "))
        .expect("an error line");
    assert!(
        line.starts_with(
            "origin: FILE: transcoder.encoder: encoder nvenc is not usable on this machine: "
        ),
        "{line}"
    );
}
