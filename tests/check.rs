//! `redis-autopilot check` as users and CI run it: the built binary, its output and exit codes.

use std::path::{Path, PathBuf};
use std::process::Command;

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    fn summary(&self) -> &str {
        self.stdout.lines().last().unwrap_or_default()
    }
}

fn check<P: AsRef<std::ffi::OsStr>>(args: &[P]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_redis-autopilot"))
        .arg("check")
        .args(args)
        .output()
        .expect("run redis-autopilot");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
    }
}

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create dirs");
    }
    std::fs::write(&path, bytes).expect("write policy");
    path
}

const VALID: &str = "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\n\
                     metadata: {name: ok}\nspec:\n  target: {endpoints: ['redis-0:6379']}\n";

#[test]
fn every_example_policy_passes() {
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let count = std::fs::read_dir(&policies)
        .expect("policies/")
        .filter(|entry| {
            entry.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "yaml"))
        })
        .count();
    assert!(count >= 4, "the four examples at least, found {count}");
    let run = check(&[&policies]);
    assert_eq!(run.lines(), [format!("{count} policies checked, 0 with problems, 0 problems")]);
    assert_eq!(run.code, Some(0), "{}", run.stdout);
}

#[test]
fn every_problem_in_a_file_is_reported_with_its_position() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = "\
apiVersion: autopilot.redis.io/v1alpha1
kind: RedisPolicy
metadata:
  name: broken
  owner: me
spec:
  target:
    kubernetes: {namespace: cache, statefulSet: redis}
  sampling:
    interval: 10
  scaling:
    minReplicas: 6
    maxReplicas: 3
    metrics:
      - redis: instantaneous_ops_per_sec
        target: 35000
        windw: 2m
    schedule:
      - cron: \"0 8 * * Mon-Fri\"
        minReplicas: 2
        for: 10h
";
    let file = write(dir.path(), "broken.yaml", text);
    let run = check(&[&file]);
    let f = file.display();
    let expected = [
        format!(
            "{f}:5:3: metadata.owner: unknown field `owner`, expected one of name, namespace, \
             labels, annotations"
        ),
        format!(
            "{f}:10:15: spec.sampling.interval: durations need a unit, e.g. `30s` (found `10`)"
        ),
        format!("{f}:13:18: spec.scaling.maxReplicas: must be >= minReplicas (6), found 3"),
        format!(
            "{f}:17:9: spec.scaling.metrics[0].windw: unknown field `windw` (did you mean \
             `window`?), expected one of redis, prometheus, rate, aggregate, statistic, \
             halfLife, exceedance, window, target, plausibleMax, seasonal, saturation, bursts"
        ),
        format!(
            "{f}:19:15: spec.scaling.schedule[0].cron: invalid cron `0 8 * * Mon-Fri`: Invalid \
             pattern: Pattern must have 6 or 7 fields when seconds are required and years are \
             optional."
        ),
        "1 policy checked, 1 with problems, 5 problems".to_owned(),
    ];
    assert_eq!(run.lines(), expected);
    assert_eq!(run.code, Some(1));
}

#[test]
fn exit_code_is_one_when_any_policy_has_a_problem() {
    let dir = tempfile::tempdir().expect("temp dir");
    let good = write(dir.path(), "good.yaml", VALID);
    let bad = write(dir.path(), "bad.yaml", VALID.replace("RedisPolicy", "RedisPolcy"));
    assert_eq!(check(&[&good]).code, Some(0));
    let run = check(&[&good, &bad]);
    assert_eq!(run.code, Some(1));
    assert_eq!(run.summary(), "2 policies checked, 1 with problems, 1 problem");
    assert!(run.stdout.contains("bad.yaml:2:7: kind: must be `RedisPolicy`, found `RedisPolcy`"));
}

#[test]
fn a_missing_path_is_a_problem_not_a_crash() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("nope.yaml");
    let run = check(&[&missing]);
    assert_eq!(run.code, Some(1));
    let first = run.lines()[0];
    assert!(first.starts_with(&format!("{}:1:1: <file>: cannot read:", missing.display())));
    assert_eq!(run.summary(), "1 policy checked, 1 with problems, 1 problem");
    assert!(run.stderr.is_empty(), "{}", run.stderr);
}

#[test]
fn directories_are_searched_recursively_in_sorted_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "b.yaml", VALID.replace("ok}", "B}"));
    write(dir.path(), "a/z.yml", VALID.replace("ok}", "Z}"));
    write(dir.path(), "a/deeper/c.yaml", VALID);
    write(dir.path(), "notes.txt", "not a policy");
    let run = check(&[dir.path()]);
    let problem_files: Vec<&str> = run
        .lines()
        .iter()
        .filter_map(|line| line.split(':').next())
        .filter_map(|path| path.strip_prefix(dir.path().to_str().expect("UTF-8 temp path")))
        .collect();
    assert_eq!(problem_files, ["/a/z.yml", "/b.yaml"]);
    assert_eq!(run.summary(), "3 policies checked, 2 with problems, 2 problems");
    assert_eq!(run.code, Some(1));
}

#[test]
fn a_directory_without_policies_is_a_problem() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = check(&[dir.path()]);
    assert_eq!(run.code, Some(1));
    assert!(run.stdout.contains("no *.yaml or *.yml files in this directory"), "{}", run.stdout);
}

#[test]
fn hostile_files_end_as_one_clear_line_each() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut laughs = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n".to_owned();
    for (prev, name) in ('a'..='h').zip('b'..='i') {
        laughs.push_str(&format!("{name}: &{name} [{}]\n", vec![format!("*{prev}"); 9].join(", ")));
    }
    let scaling = |max: &str, target: &str| {
        format!(
            "{VALID}  scaling:\n    minReplicas: 1\n    maxReplicas: {max}\n    \
             metrics: [{{redis: x, target: {target}}}]\n"
        )
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.yaml", Vec::new(), "empty document"),
        ("nul.yaml", b"\0\0\0\0".to_vec(), "unexpected character"),
        ("binary.yaml", vec![0x89, b'P', b'N', b'G', 0xFF, 0x00, 0x1A], "not UTF-8 text"),
        ("deep.yaml", format!("a: {}", "[".repeat(100_000)).into_bytes(), "nested too deeply"),
        ("deep-map.yaml", format!("a: {}", "{a: ".repeat(100_000)).into_bytes(), "too deeply"),
        ("laughs.yaml", laughs.into_bytes(), "too large"),
        ("big-int.yaml", scaling("99999999999999999999", "1").into_bytes(), "whole number"),
        ("1e400.yaml", scaling("1e400", "1").into_bytes(), "found `1e400`"),
        ("nan.yaml", scaling("3", ".nan").into_bytes(), "finite number greater than 0"),
        ("inf.yaml", scaling("3", ".inf").into_bytes(), "finite number greater than 0"),
        ("dup.yaml", format!("{VALID}kind: RedisPolicy\n").into_bytes(), "duplicate key"),
        ("two.yaml", format!("{VALID}---\n{VALID}").into_bytes(), "one YAML document"),
    ];
    for (name, bytes, message) in cases {
        let file = write(dir.path(), name, bytes);
        let run = check(&[&file]);
        assert_eq!(run.code, Some(1), "{name}: {}{}", run.stdout, run.stderr);
        assert!(run.stderr.is_empty(), "{name}: {}", run.stderr);
        let lines = run.lines();
        assert_eq!(lines.len(), 2, "{name}: one problem and the summary: {lines:?}");
        assert!(lines[0].starts_with(&format!("{}:", file.display())), "{name}: {}", lines[0]);
        assert!(lines[0].contains(message), "{name}: `{message}` not in {}", lines[0]);
    }
}

#[test]
fn help_explains_output_and_exit_status_with_an_example() {
    let run = check(&["--help"]);
    assert_eq!(run.code, Some(0));
    assert!(run.stdout.contains("FILE:LINE:COL: field.path: message"), "{}", run.stdout);
    assert!(run.stdout.contains("redis-autopilot check policies/"), "{}", run.stdout);
    assert!(run.stdout.contains("Exit status: 0"), "{}", run.stdout);
}

#[test]
fn check_without_paths_is_a_usage_error() {
    let run = check::<&str>(&[]);
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("<PATH>"), "{}", run.stderr);
}

/// A valid policy's risks are warnings: printed with file, line and field, exit status 0.
#[test]
fn warnings_are_printed_and_do_not_fail_check() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = format!(
        "{VALID}  scaling: {{minReplicas: 1, maxReplicas: 3, metrics: [{{redis: \
         connected_clients, target: 10}}]}}\n  health:\n    confirmWithReplicas: false\n"
    );
    let file = write(dir.path(), "risky.yaml", text);
    let run = check(&[&file]);
    let f = file.display();
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    let lines = run.lines();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!(
            "{f}:6:3: spec.scaling: warning: an `endpoints` target is observe-only"
        )),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with(&format!("{f}:8:26: spec.health.confirmWithReplicas: warning: with confirmWithReplicas: false and minReplicasToWrite: 0")),
        "{}",
        lines[1]
    );
    assert_eq!(lines[2], "1 policy checked, 0 with problems, 0 problems, 2 warnings");
}

/// Two policies on one target undo each other's actions: `check` on their directory
/// refuses the second, at its `spec.target`, naming the first.
#[test]
fn overlapping_policies_in_a_directory_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = |name: &str, target: &str| {
        format!(
            "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\nmetadata: {{name: \
             {name}}}\nspec:\n  target: {target}\n"
        )
    };
    write(
        dir.path(),
        "a.yaml",
        policy("a", "{kubernetes: {namespace: cache, statefulSet: redis}}"),
    );
    write(
        dir.path(),
        "b.yaml",
        policy("b", "{kubernetes: {namespace: cache, statefulSet: redis}}"),
    );
    write(dir.path(), "c.yaml", policy("c", "{local: {basePort: 7000, dataDir: /srv/c}}"));
    write(dir.path(), "d.yaml", policy("d", "{local: {basePort: 7100, dataDir: /srv/c/d}}"));
    write(
        dir.path(),
        "e.yaml",
        policy("e", "{kubernetes: {namespace: cache, statefulSet: other}}"),
    );
    let run = check(&[dir.path()]);
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    let lines = run.lines();
    assert_eq!(lines.len(), 3, "{lines:?}");
    let b = dir.path().join("b.yaml");
    assert!(
        lines[0].starts_with(&format!("{}:5:3: spec.target: overlaps policy `a`", b.display())),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("StatefulSet cache/redis"), "{}", lines[0]);
    assert!(lines[1].contains("d.yaml:5:3: spec.target: overlaps policy `c`"), "{}", lines[1]);
    assert!(lines[1].contains("same or nested"), "{}", lines[1]);
    assert_eq!(lines[2], "5 policies checked, 2 with problems, 2 problems");
}

/// A secret file passed to `check` by mistake: nothing of it is printed when a checked
/// policy names it as a secret, and no value of it when it is merely not YAML.
#[test]
fn secret_files_are_never_quoted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = write(dir.path(), "secrets/password", "hunter2-s3cr3t and more\n");
    let other = write(dir.path(), "token.txt", "tok3n-value\n");
    let policy = format!("{VALID}  auth: {{passwordFile: '{}'}}\n", secret.display());
    let file = write(dir.path(), "cache.yaml", policy);
    let run = check(&[&file, &secret, &other]);
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    for leaked in ["hunter2", "s3cr3t", "tok3n"] {
        assert!(!run.stdout.contains(leaked), "{leaked} in {}", run.stdout);
        assert!(!run.stderr.contains(leaked), "{leaked} in {}", run.stderr);
    }
    assert!(
        run.stdout.contains(&format!(
            "{}:1:1: <file>: policy `ok` reads a secret from this file (spec.auth.passwordFile)",
            secret.display()
        )),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("token.txt:1:1: <document>: expected a mapping, found a value (not shown"),
        "{}",
        run.stdout
    );
}

/// Logs are plain text when stderr is not a terminal (a pipe here): no colour codes.
#[test]
fn logs_to_a_pipe_have_no_colour_codes() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("temp dir");
    // Port 1 answers nobody: the daemon logs, and being paused it never acts.
    std::fs::write(
        dir.path().join("quiet.yaml"),
        "apiVersion: autopilot.redis.io/v1alpha1\nkind: RedisPolicy\nmetadata: {name: quiet}\n\
         spec:\n  target:\n    endpoints: ['127.0.0.1:1']\n  scaling:\n    minReplicas: 1\n    \
         maxReplicas: 2\n    metrics:\n      - {redis: instantaneous_ops_per_sec, target: 1000}\n",
    )
    .expect("write policy");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_redis-autopilot"))
        .args(["run", "--paused", "--listen", "127.0.0.1:0", "--policies"])
        .arg(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run redis-autopilot");
    // Read until the first INFO line; the daemon's stderr is a pipe, so no colour is due.
    let mut seen = String::new();
    for line in std::io::BufReader::new(daemon.stderr.take().expect("stderr")).lines() {
        let line = line.expect("read stderr");
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("INFO") {
            break;
        }
    }
    daemon.kill().expect("stop the daemon");
    daemon.wait().expect("reap the daemon");
    assert!(seen.contains("INFO"), "a log line was written: {seen}");
    assert!(!seen.contains("\x1b["), "{seen:?}");
}

/// A snapshot recipients file that `check` can read must hold age public keys: a secret key
/// pasted there is a problem at `recipientsFile`, by line number, without a character of it.
#[test]
fn a_readable_recipients_file_must_hold_public_keys() {
    use age::secrecy::ExposeSecret as _;
    let dir = tempfile::tempdir().expect("temp dir");
    let identity = age::x25519::Identity::generate();
    let secret = identity.to_string().expose_secret().to_owned();
    let good = write(dir.path(), "good.txt", format!("# ops\n{}\n", identity.to_public()));
    let bad = write(dir.path(), "bad.txt", format!("{}\n{secret}\n", identity.to_public()));
    let policy = |name: &str, recipients: &Path| {
        let text = format!(
            "{VALID}  snapshots:\n    schedule: '0 0 3 * * *'\n    destination: 'file:///b'\n    \
             encryption: {{recipientsFile: '{}'}}\n",
            recipients.display()
        );
        write(dir.path(), name, text)
    };
    let run = check(&[policy("good.yaml", &good)]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    let missing = policy("elsewhere.yaml", &dir.path().join("mounted-only-in-the-pod"));
    assert_eq!(check(&[missing]).code, Some(0), "an unreadable file is not checked here");
    let run = check(&[policy("bad.yaml", &bad)]);
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    let shown = format!("{}{}", run.stdout, run.stderr);
    assert!(
        shown.contains("bad.yaml:9:") && shown.contains("spec.snapshots.encryption.recipientsFile"),
        "{shown}"
    );
    assert!(shown.contains("line 2") && shown.contains("secret key"), "{shown}");
    assert!(!shown.contains(&secret[15..]), "{shown}");

    // No regular file (a device that never ends, a FIFO nobody writes): a problem, found at
    // once, with nothing read. `/dev/zero` used to be read until memory ran out.
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    for device in [Path::new("/dev/zero"), fifo.as_path()] {
        let run = check(&[policy("device.yaml", device)]);
        assert_eq!(run.code, Some(1), "{}{}", run.stdout, run.stderr);
        assert!(run.stdout.contains("not a regular file"), "{}", run.stdout);
    }
}

/// A RedisPolicy resource as `kubectl apply -f` takes it (a namespace in its metadata)
/// passes `check` as it is: a file and a resource are one language.
#[test]
fn a_resource_manifest_with_a_namespace_passes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let resource = VALID.replace("metadata: {name: ok}", "metadata: {name: ok, namespace: cache}");
    let path = write(dir.path(), "resource.yaml", resource);
    let run = check(&[&path]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
}
