//! The deploy files (compose, Dockerfiles, Prometheus, Grafana) and the build profile,
//! checked without a Docker engine: everything they name exists, the binaries and variables
//! they use are the real ones, images are pinned, only Grafana and the metrics ports are
//! published (on 127.0.0.1), no credential is written in them, containers have health
//! checks, and the dashboard is scoped by data source, job and instance variables.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use integration_tests::faults::binary;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn yaml(path: &Path) -> serde_norway::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
}

fn str_of<'a>(v: &'a serde_norway::Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("{key} missing or not a string in {v:?}"))
}

/// The target triple rustc builds for here, e.g. x86_64-unknown-linux-gnu.
fn host_triple() -> String {
    let out = std::process::Command::new("rustc").arg("-vV").output().expect("run rustc -vV");
    let text = String::from_utf8_lossy(&out.stdout);
    let host = text.lines().find_map(|l| l.strip_prefix("host: ")).expect("rustc -vV names its host");
    host.trim().to_owned()
}

/// What the builder stage sees (only the COPY'd paths) is a workspace cargo can load
/// with `--locked`, as the image's `cargo build --locked` needs.
fn builder_context_resolves(context: &Path, copied: &BTreeSet<String>) {
    let scratch = std::env::temp_dir().join(format!("rps-ops-docker-context-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    for src in copied {
        copy_tree(&context.join(src), &scratch.join(src));
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Only this machine's platform: resolving every platform's dependencies would need
    // crates (Android, Windows) that a fresh machine never downloaded, and this is offline.
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--locked", "--offline", "--format-version", "1", "--filter-platform", &host_triple()])
        .current_dir(&scratch)
        .output()
        .expect("run cargo metadata");
    let _ = std::fs::remove_dir_all(&scratch);
    assert!(
        out.status.success(),
        "the Docker build context does not resolve:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap();
    }
}

/// `members = [...]` of the workspace manifest.
fn workspace_members() -> Vec<String> {
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let list = manifest.split("members").nth(1).and_then(|rest| rest.split(']').next()).expect("workspace members");
    list.split('"').skip(1).step_by(2).map(str::to_owned).collect()
}

/// `[env: NAME=` entries of a binary's --help: every variable it reads.
fn env_vars_in_help(binary_name: &str) -> BTreeSet<String> {
    let out = std::process::Command::new(binary(binary_name)).arg("--help").output().expect("--help");
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    help.split("[env: ").skip(1).filter_map(|rest| rest.split('=').next()).map(str::to_owned).collect()
}

/// Without a Docker engine, check what can be checked: the compose file parses, every path
/// it and the Dockerfiles name exists, the binaries and environment variables they use are
/// the real ones, and Prometheus scrapes the ports the services listen on.
#[test]
fn deploy_files_reference_what_exists() {
    let deploy = repo().join("deploy");
    let compose = yaml(&deploy.join("docker-compose.yml"));
    let services = compose["services"].as_mapping().expect("services");
    for name in ["postgres", "redis", "engine", "worker", "prometheus", "grafana"] {
        assert!(services.contains_key(name), "service {name} missing");
    }
    let engine_manifest = std::fs::read_to_string(repo().join("engine/Cargo.toml")).unwrap();

    for (service, bin, metrics_env) in
        [("engine", "redis-postgres-sync", "METRICS_ADDR"), ("worker", "analytics-worker", "ANALYTICS_METRICS_ADDR")]
    {
        let s = &compose["services"][service];
        let context = deploy.join(str_of(&s["build"], "context"));
        assert!(context.join("Cargo.toml").is_file(), "{service}: build context is not the workspace root");
        let dockerfile_path = context.join(str_of(&s["build"], "dockerfile"));
        let dockerfile = std::fs::read_to_string(&dockerfile_path).expect("Dockerfile");
        assert!(engine_manifest.contains(&format!("name = \"{bin}\"")), "{bin} is not a binary of the engine crate");

        let froms: Vec<&str> = dockerfile.lines().filter(|l| l.starts_with("FROM ")).collect();
        assert_eq!(froms.len(), 2, "{service}: multi-stage build with two stages");
        assert!(froms[0].starts_with("FROM rust:1.9") && froms[0].ends_with(" AS builder"), "{}", froms[0]);
        for from in &froms {
            let image = from.split_whitespace().nth(1).unwrap();
            assert!(pinned(image), "{service}: {image} is not a pinned version");
        }
        let runtime = dockerfile.split(froms[1]).nth(1).unwrap();
        let healthcheck = runtime.split("HEALTHCHECK").nth(1).expect("a HEALTHCHECK in the runtime stage");
        let probe = format!("CMD [\"/usr/local/bin/{bin}\", \"health\"]");
        assert!(healthcheck.lines().take(3).any(|l| l.trim() == probe), "{service}: HEALTHCHECK runs {probe}");
        let test = s["healthcheck"]["test"].as_sequence().expect("compose healthcheck").iter();
        let test: Vec<&str> = test.map(|t| t.as_str().unwrap()).collect();
        assert_eq!(test, ["CMD", &format!("/usr/local/bin/{bin}"), "health"], "{service}: compose healthcheck");
        let user = runtime.lines().find_map(|l| l.strip_prefix("USER ")).expect("USER in the runtime stage");
        assert!(!user.starts_with("root") && !user.starts_with("0"), "{service} runs as root");
        assert!(dockerfile.contains(&format!("--bin {bin}")), "{service} builds {bin}");
        assert!(runtime.contains(&format!("ENTRYPOINT [\"/usr/local/bin/{bin}\"]")), "{service} runs {bin}");
        // Every COPY from the build context exists (paths relative to the context), and
        // every workspace member is copied (cargo cannot load a workspace missing one).
        let mut copied = BTreeSet::new();
        for line in dockerfile.lines().filter(|l| l.starts_with("COPY ") && !l.contains("--from=")) {
            let parts: Vec<&str> = line.split_whitespace().collect();
            for src in &parts[1..parts.len() - 1] {
                assert!(context.join(src).exists(), "{service}: COPY source {src} does not exist");
                copied.insert(src.to_string());
            }
        }
        for member in workspace_members() {
            assert!(copied.contains(&member), "{service}: workspace member {member} is not copied into the build");
        }
        builder_context_resolves(&context, &copied);
        let accepted = env_vars_in_help(bin);
        for line in runtime.lines().filter_map(|l| l.strip_prefix("ENV ")) {
            let key = line.split('=').next().unwrap();
            assert!(accepted.contains(key), "{service}: Dockerfile sets {key}, which {bin} does not read");
        }
        for (key, _) in s["environment"].as_mapping().expect("environment map") {
            let key = key.as_str().unwrap();
            assert!(key == "RUST_LOG" || accepted.contains(key), "{service}: {key} is not read by {bin}");
        }
        let port = str_of(&s["environment"], metrics_env).rsplit(':').next().unwrap().to_owned();
        assert!(
            str_of(&s["environment"], metrics_env).starts_with("0.0.0.0:"),
            "{service} must listen beyond localhost"
        );
        assert!(runtime.contains(&format!("EXPOSE {port}")), "{service}: the image exposes {port}");

        // Prometheus scrapes that service on that port.
        let prometheus = yaml(&deploy.join("prometheus/prometheus.yml"));
        let target = format!("{service}:{port}");
        let scraped = prometheus["scrape_configs"]
            .as_sequence()
            .unwrap()
            .iter()
            .flat_map(|c| c["static_configs"].as_sequence().unwrap().iter())
            .flat_map(|c| c["targets"].as_sequence().unwrap().iter())
            .any(|t| t.as_str() == Some(target.as_str()));
        assert!(scraped, "prometheus.yml does not scrape {target}");
    }

    // Bind mounts: the host side exists, and the files land where their configs expect.
    let mut mounts = std::collections::BTreeMap::new();
    for (name, service) in services {
        for volume in service["volumes"].as_sequence().into_iter().flatten() {
            let spec = volume.as_str().unwrap();
            if let Some(host) = spec.strip_prefix("./") {
                let host = host.split(':').next().unwrap();
                assert!(deploy.join(host).exists(), "{name:?} mounts ./{host}, which does not exist");
                let inside = spec.split(':').nth(1).unwrap().to_owned();
                mounts.insert(inside, deploy.join(host));
            }
        }
    }
    let prometheus_config = mounts.get("/etc/prometheus/prometheus.yml").expect("prometheus.yml mounted");
    for rule_file in yaml(prometheus_config)["rule_files"].as_sequence().unwrap() {
        let rule_file = rule_file.as_str().unwrap();
        assert!(mounts.contains_key(&format!("/etc/prometheus/{rule_file}")), "{rule_file} is not mounted");
    }
    let alerts = yaml(&deploy.join("prometheus/alerts.yml"));
    let mut alert_names = BTreeSet::new();
    for group in alerts["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            alert_names.insert(str_of(rule, "alert").to_owned());
            assert!(!str_of(rule, "expr").is_empty());
            assert!(rule["labels"]["severity"].as_str().is_some(), "{rule:?} has no severity");
        }
    }
    for wanted in [
        "RedisPostgresSyncNoEvents",
        "RedisPostgresSyncHighFailureRate",
        "RedisPostgresSyncLagGrowing",
        "RedisPostgresSyncSlowCascade",
    ] {
        assert!(alert_names.contains(wanted), "alert {wanted} missing");
    }

    // Grafana: the provisioned dashboards directory holds the dashboard, which uses the
    // provisioned data source.
    let providers = yaml(&deploy.join("grafana/provisioning/dashboards/dashboards.yml"));
    let dashboards_dir = str_of(&providers["providers"][0]["options"], "path").to_owned();
    let dashboard_path = mounts
        .iter()
        .find(|(inside, _)| inside.starts_with(&format!("{dashboards_dir}/")) && inside.ends_with(".json"))
        .map(|(_, host)| host.clone())
        .expect("a dashboard mounted into the provisioned directory");
    let datasources = yaml(&deploy.join("grafana/provisioning/datasources/prometheus.yml"));
    assert_eq!(str_of(&datasources["datasources"][0], "type"), "prometheus");
    assert!(str_of(&datasources["datasources"][0], "url").starts_with("http://prometheus:9090"));
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dashboard_path).unwrap()).unwrap();
    dashboard_is_scoped_by_variables(&dashboard);
}

/// The dashboard's data source is a variable (no hard-coded uid), and every query of ours
/// is scoped by the job and instance variables of the binary it comes from.
fn dashboard_is_scoped_by_variables(dashboard: &serde_json::Value) {
    let variables = dashboard["templating"]["list"].as_array().expect("templating variables");
    let variable = |name: &str| variables.iter().find(|v| v["name"] == name).unwrap_or_else(|| panic!("no ${name}"));
    assert_eq!(variable("datasource")["type"], "datasource");
    assert_eq!(variable("datasource")["query"], "prometheus");
    for (job, instance) in [("job", "instance"), ("worker_job", "worker_instance")] {
        assert_eq!(variable(job)["type"], "query");
        assert_eq!(variable(instance)["includeAll"], true, "${instance} offers All");
        assert!(variable(instance)["query"]["query"].as_str().unwrap().contains(&format!("job=\"${job}\"")));
    }
    let panels = dashboard["panels"].as_array().unwrap();
    let queries: Vec<&serde_json::Value> = panels.iter().filter(|p| p["type"] != "row").collect();
    assert!(queries.len() >= 10);
    for panel in queries {
        let title = &panel["title"];
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "panel {title} hard-codes its data source");
        let targets = panel["targets"].as_array().filter(|t| !t.is_empty());
        for target in targets.unwrap_or_else(|| panic!("panel {title} has no query")) {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "a query of {title} hard-codes its data source");
            let expr = target["expr"].as_str().unwrap();
            let (job, instance) = if expr.contains("analytics_worker_") || expr.contains("$worker_job") {
                ("job=\"$worker_job\"", "instance=~\"$worker_instance\"")
            } else {
                ("job=\"$job\"", "instance=~\"$instance\"")
            };
            let selectors = expr.matches('{').count();
            assert!(selectors > 0, "{title}: {expr} has no label selector");
            assert_eq!(expr.matches(job).count(), selectors, "{title}: every selector of {expr} has {job}");
            assert_eq!(expr.matches(instance).count(), selectors, "{title}: every selector of {expr} has {instance}");
        }
    }
}

/// An image reference with a version of at least major.minor (not `latest`, not `15`,
/// not a bare release name).
fn pinned(image: &str) -> bool {
    let Some((_, tag)) = image.rsplit_once(':') else { return false };
    let version = tag.trim_start_matches('v').split('-').next().unwrap_or_default();
    let parts: Vec<&str> = version.split('.').collect();
    parts.len() >= 2 && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

#[test]
fn pinned_accepts_versions_only() {
    for good in ["postgres:15.14-bookworm", "prom/prometheus:v2.53.0", "debian:12.12-slim", "rust:1.95.0-slim-bookworm"]
    {
        assert!(pinned(good), "{good}");
    }
    for bad in ["postgres:15-bookworm", "redis", "redis:latest", "debian:bookworm-slim", "rust:1-slim"] {
        assert!(!pinned(bad), "{bad}");
    }
}

/// Only Grafana and the two metrics ports are published, and only on 127.0.0.1; every
/// image is pinned; no password is written in the file: each comes from deploy/.env,
/// whose example lists every variable the compose file needs.
#[test]
fn compose_publishes_little_and_holds_no_credentials() {
    let deploy = repo().join("deploy");
    let text = std::fs::read_to_string(deploy.join("docker-compose.yml")).unwrap();
    let compose = yaml(&deploy.join("docker-compose.yml"));
    let mut published = BTreeSet::new();
    for (name, service) in compose["services"].as_mapping().unwrap() {
        let name = name.as_str().unwrap();
        if let Some(image) = service["image"].as_str().filter(|_| service["build"].is_null()) {
            assert!(pinned(image), "{name}: image {image} is not a pinned version");
        }
        for port in service["ports"].as_sequence().into_iter().flatten() {
            let port = port.as_str().unwrap();
            assert!(port.starts_with("127.0.0.1:"), "{name} publishes {port} beyond this machine");
            published.insert(format!("{name} {}", port.rsplit(':').next().unwrap()));
        }
        for (key, value) in service["environment"].as_mapping().into_iter().flatten() {
            let (key, value) = (key.as_str().unwrap(), value.as_str().unwrap_or_default());
            if key.contains("PASSWORD") {
                assert!(value.starts_with("${"), "{name}: {key} is written in the compose file");
            }
            if let Some((_, after_scheme)) = value.split_once("://") {
                let userinfo = after_scheme.split('@').next().filter(|_| after_scheme.contains('@'));
                let secret = userinfo.and_then(|u| u.split_once(':')).map(|(_, p)| p).unwrap_or("");
                assert!(secret.is_empty() || secret.starts_with("${"), "{name}: {key} holds a password");
            }
        }
    }
    assert_eq!(published, BTreeSet::from(["engine 3030".into(), "grafana 3000".into(), "worker 3031".into()]));

    let example = std::fs::read_to_string(deploy.join(".env.example")).expect("deploy/.env.example");
    let defined: BTreeSet<&str> = example
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
        .collect();
    let needed: BTreeSet<&str> = text
        .split("${")
        .skip(1)
        .filter_map(|rest| rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).next())
        .collect();
    assert!(needed.contains("POSTGRES_PASSWORD") && needed.contains("REDIS_PASSWORD"));
    assert_eq!(needed, defined, "variables the compose file uses vs. those deploy/.env.example lists");
    let ignored = std::fs::read_to_string(repo().join(".gitignore")).unwrap();
    assert!(ignored.lines().any(|l| l == "/deploy/.env"), "deploy/.env must not be committed");
}

/// Release binaries without debug info (the profiling profile has it).
#[test]
fn release_profile_has_no_debug_info() {
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let release = manifest.split("[profile.release]").nth(1).expect("[profile.release]").split("\n[").next().unwrap();
    assert!(release.lines().any(|l| l.replace(' ', "") == "debug=false"), "{release}");
    assert!(manifest.contains("[profile.profiling]"), "a profile with debug info for perf");
}
