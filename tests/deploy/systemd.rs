//! The systemd unit parses as INI and passes `systemd-analyze verify` (when installed).

use super::*;

/// `[section] → [(key, value)]` of an INI-style unit file; panics on a line that is
/// neither a comment, a section header nor `key=value`.
fn parse_unit(text: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut section: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.to_string());
            out.entry(name.to_string()).or_default();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("line {}: not key=value: {line}", n + 1));
        let section = section
            .as_ref()
            .unwrap_or_else(|| panic!("line {}: outside a section", n + 1));
        out.get_mut(section)
            .unwrap()
            .push((k.trim().to_string(), v.trim().to_string()));
    }
    out
}

#[test]
fn the_systemd_unit_verifies() {
    let unit_path = deploy().join("bffgate.service");
    let text = read(&unit_path);
    let unit = parse_unit(&text);
    for section in ["Unit", "Service", "Install"] {
        assert!(unit.contains_key(section), "no [{section}] section");
    }
    let service: BTreeMap<&str, Vec<&str>> =
        unit["Service"]
            .iter()
            .fold(BTreeMap::new(), |mut m, (k, v)| {
                m.entry(k.as_str()).or_default().push(v.as_str());
                m
            });
    let exec_start = service["ExecStart"][0];
    assert!(exec_start.contains("bffgate"), "{exec_start}");
    assert!(service.contains_key("User"), "runs as a dedicated user");
    // Type=forking with --daemon: systemd follows the pid file, which bffgate writes as
    // bffgate.pid in $RUNTIME_DIRECTORY (set by RuntimeDirectory=) when the config names
    // no pid_file.
    if service.get("Type") == Some(&vec!["forking"]) {
        assert!(exec_start.contains("--daemon") || exec_start.contains(" -d"));
        let pid_file = service["PIDFile"][0];
        let runtime_dir = service["RuntimeDirectory"][0];
        assert_eq!(pid_file, format!("/run/{runtime_dir}/bffgate.pid"));
    }

    let Some(analyze) = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
    else {
        eprintln!(
            "systemd-analyze is not installed (Debian package `systemd`): checked only that \
             deploy/bffgate.service parses with [Unit], [Service] and [Install]"
        );
        return;
    };
    // The unit names /usr/local/bin/bffgate; verify checks that commands exist, so point a
    // copy at the binary under test.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("bffgate.service");
    std::fs::write(&copy, text.replace("/usr/local/bin/bffgate", common::BIN)).unwrap();
    let out = Command::new(&analyze)
        .arg("verify")
        .arg("--man=no")
        .arg(&copy)
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .expect("run systemd-analyze verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // verify exits 0 even for unknown keys and bad values ("…, ignoring."): any output is a
    // finding.
    let findings: Vec<&str> = stdout
        .lines()
        .chain(stderr.lines())
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(
        out.status.success() && findings.is_empty(),
        "systemd-analyze verify deploy/bffgate.service ({}):\n{}",
        out.status,
        findings.join("\n")
    );
}
