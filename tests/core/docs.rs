//! The user reference (`docs/reference/`, `docs/deploy-upstream.md`) cannot
//! drift from the code: every reason and warning code, trigger, metric,
//! Event reason, alert, configuration field, `run` flag and `plan` example
//! the product has is documented, the pages name no metric, Event reason,
//! alert, flag or example the product lacks, their links resolve, and no page
//! points outside the repository. Each failure names what is missing or
//! extra.

use clap::CommandFactory;
use cnpg_autoresize::api::cluster::VolumeType;
use cnpg_autoresize::api::report::{InactiveSlot, InstanceReport, VolumeStats, WalHealth};
use cnpg_autoresize::engine::{Reason, Trigger, WarningCode};
use cnpg_autoresize::metrics::{DecisionMetrics, Metrics, VolumeLabels};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative))
        .unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

fn page(name: &str) -> String {
    read(&format!("docs/reference/{name}"))
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `word` occurs in `text` as a whole identifier, not inside a longer one.
fn mentions(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

/// The whole identifiers of `text` that start with `prefix`.
fn identifiers_with_prefix(text: &str, prefix: &str) -> BTreeSet<String> {
    text.match_indices(prefix)
        .filter(|(i, _)| !text[..*i].chars().next_back().is_some_and(is_ident))
        .map(|(i, _)| {
            text[i..]
                .chars()
                .take_while(|c| is_ident(*c))
                .collect::<String>()
        })
        .collect()
}

/// The items of `wanted` that `documented` does not accept.
fn missing(
    wanted: impl IntoIterator<Item = String>,
    documented: impl Fn(&str) -> bool,
) -> Vec<String> {
    wanted.into_iter().filter(|w| !documented(w)).collect()
}

/// The items of `found` (names a page uses) that are not in `known`.
fn unknown(found: BTreeSet<String>, known: &BTreeSet<String>) -> Vec<String> {
    found.into_iter().filter(|f| !known.contains(f)).collect()
}

/// Panics naming what `page` lacks (`how`: where the page must have each) and
/// what it names that the code lacks.
fn check(page: &str, what: &str, how: &str, missing: Vec<String>, unknown: Vec<String>) {
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!(
            "does not document these {what} ({how}): {missing:?}"
        ));
    }
    if !unknown.is_empty() {
        problems.push(format!("names {what} the code does not have: {unknown:?}"));
    }
    assert!(problems.is_empty(), "{page} {}", problems.join("; and "));
}

/// `text` has a table row for `name`: its first cell starts with `` `name` ``
/// or `` `name{labels}` ``.
fn has_row(text: &str, name: &str) -> bool {
    text.lines().any(|line| {
        line.strip_prefix("| `")
            .and_then(|rest| rest.strip_prefix(name))
            .is_some_and(|rest| rest.starts_with('`') || rest.starts_with('{'))
    })
}

#[test]
fn every_reason_warning_and_trigger_code_is_in_codes_md() {
    let codes = page("codes.md");
    let wanted = Reason::ALL
        .iter()
        .map(|r| r.as_str())
        .chain(WarningCode::ALL.iter().map(|w| w.as_str()))
        .chain(Trigger::ALL.iter().map(|t| t.as_str()))
        .map(String::from);
    check(
        "docs/reference/codes.md",
        "codes of engine::Reason::ALL, WarningCode::ALL and Trigger::ALL",
        "a table row each",
        missing(wanted, |code| has_row(&codes, code)),
        Vec::new(),
    );
}

/// Every metric family the binary exposes, with its type ("" when only the
/// source names it): from the rendered output of a registry whose every
/// family has a series, and from the names `src/metrics.rs` registers (so a
/// family this test does not fill is still required).
fn exposed_metric_families() -> BTreeMap<String, String> {
    let metrics = Metrics::new("x").expect("the metrics registry builds");
    let stats = VolumeStats {
        total_bytes: 100,
        used_bytes: 50,
        available_bytes: 50,
        inodes_total: 10,
        inodes_used: 5,
        inodes_free: 5,
        growth_bytes_per_second: Some(1.0),
    };
    metrics.record_report(&InstanceReport {
        data: Some(stats),
        wal: Some(stats),
        tablespaces: BTreeMap::from([("events".to_string(), stats)]),
        ..Default::default()
    });
    metrics.record_wal_health(
        Some(&WalHealth {
            inactive_slots: vec![InactiveSlot {
                slot_name: "old_replica".into(),
                retention_bytes: 1,
            }],
            ..Default::default()
        }),
        "_cnpg_",
    );
    let labels = VolumeLabels::new(VolumeType::Data, None);
    metrics.record_decision(
        &labels,
        &DecisionMetrics {
            reason: Some(Reason::RateLimit),
            at_limit: true,
            budget_remaining: Some(0),
            next_action_at: Some(jiff::Timestamp::UNIX_EPOCH),
            stuck: true,
            recommended_bytes: Some(1),
        },
    );
    metrics.init_resize_counters(&labels);
    metrics.count_resize(&labels, true);
    metrics.count_api("get", "pods", 200);
    metrics.watch_up.with_label_values(&["pods"]).set(1);
    metrics.actor_restarts.with_label_values(&["planner"]).inc();
    metrics.probe_duration.observe(0.001);
    metrics.wal_check_duration.observe(0.001);

    let mut families = BTreeMap::new();
    for line in metrics.render().lines() {
        let mut words = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            families.insert(name.to_string(), kind.to_string());
        }
    }
    assert!(
        families.contains_key("cnpg_disk_total_bytes"),
        "no metric family found in the rendered output: {families:?}"
    );
    let source = read("src/metrics.rs");
    for name in source
        .match_indices("\"cnpg_")
        .map(|(i, _)| source[i + 1..].chars().take_while(|c| is_ident(*c)))
        .map(String::from_iter)
    {
        families.entry(name).or_default();
    }
    families
}

#[test]
fn every_metric_the_binary_exposes_is_in_metrics_md_and_no_other() {
    let text = page("metrics.md");
    let families = exposed_metric_families();
    // The page may also name a histogram's series.
    let mut known: BTreeSet<String> = families.keys().cloned().collect();
    for (name, kind) in &families {
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                known.insert(format!("{name}{suffix}"));
            }
        }
    }
    check(
        "docs/reference/metrics.md",
        "metrics",
        "a table row each",
        missing(families.keys().cloned(), |name| has_row(&text, name)),
        unknown(identifiers_with_prefix(&text, "cnpg_"), &known),
    );
}

/// The Event reasons the planner can record: every `"AutoResize…"` string
/// literal in `src/actors/planner/`, except the Event action (`AutoResize`)
/// and the policy's kind.
fn event_reasons() -> BTreeSet<String> {
    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        let entries =
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    sources(&root().join("src/actors/planner"), &mut files);
    let not_reasons = ["AutoResize", cnpg_autoresize::api::policy::KIND];
    let mut reasons = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        for (i, _) in text.match_indices("\"AutoResize") {
            let rest = &text[i + 1..];
            let Some(end) = rest.find('"') else { continue };
            let literal = &rest[..end];
            if literal.chars().all(|c| c.is_ascii_alphanumeric()) && !not_reasons.contains(&literal)
            {
                reasons.insert(literal.to_string());
            }
        }
    }
    assert!(
        reasons.contains("AutoResizeSuccess"),
        "found no Event reason in src/actors/planner: {reasons:?}"
    );
    reasons
}

#[test]
fn every_event_reason_the_planner_records_is_in_events_md_and_no_other() {
    let text = page("events.md");
    let reasons = event_reasons();
    let named: BTreeSet<String> = identifiers_with_prefix(&text, "AutoResize")
        .into_iter()
        .filter(|n| n != "AutoResize" && n != cnpg_autoresize::api::policy::KIND)
        .collect();
    check(
        "docs/reference/events.md",
        "Event reasons",
        "a table row each",
        missing(reasons.iter().cloned(), |reason| has_row(&text, reason)),
        unknown(named, &reasons),
    );
}

#[test]
fn every_alert_of_the_chart_is_in_metrics_md_and_no_other() {
    let rules = read("charts/cnpg-autoresize/templates/prometheusrule.yaml");
    let alerts: BTreeSet<String> = rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- alert:"))
        .map(|name| name.trim().to_string())
        .collect();
    assert!(
        alerts.len() >= 5,
        "found too few alerts in the PrometheusRule: {alerts:?}"
    );
    let text = page("metrics.md");
    let named: BTreeSet<String> = identifiers_with_prefix(&text, "CNPG")
        .into_iter()
        .filter(|n| n.chars().nth(4).is_some_and(|c| c.is_ascii_uppercase()))
        .collect();
    check(
        "docs/reference/metrics.md",
        "alerts of charts/cnpg-autoresize/templates/prometheusrule.yaml",
        "a table row and a section each",
        missing(alerts.iter().cloned(), |alert| {
            has_row(&text, alert) && text.contains(&format!("\n### `{alert}`\n"))
        }),
        unknown(named, &alerts),
    );
}

/// Property names anywhere below `node` of a JSON schema.
fn property_names(node: &Value, out: &mut BTreeSet<String>) {
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (name, child) in props {
            out.insert(name.clone());
            property_names(child, out);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(child) = node.get(key).filter(|c| c.is_object()) {
            property_names(child, out);
        }
    }
    for key in ["anyOf", "allOf", "oneOf"] {
        for branch in node
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            property_names(branch, out);
        }
    }
}

#[test]
fn every_configuration_field_is_in_configuration_md() {
    let schema_root = "/spec/versions/0/schema/openAPIV3Schema/properties/spec";
    let policy = serde_json::to_value(cnpg_autoresize::api::crd::policy_crd())
        .expect("the policy CRD serializes");
    let spec = policy
        .pointer(schema_root)
        .expect("the policy CRD has a spec schema");
    let mut fields = BTreeSet::new();
    property_names(spec, &mut fields);
    // The fork's `resize` block, as the project's Cluster schema declares it.
    let cluster = serde_json::to_value(cnpg_autoresize::api::crd::generated_cluster_crd())
        .expect("the Cluster CRD serializes");
    let resize = cluster
        .pointer(&format!(
            "{schema_root}/properties/storage/properties/resize"
        ))
        .expect("the Cluster CRD has spec.storage.resize");
    property_names(resize, &mut fields);
    for expected in ["cluster", "usageThreshold", "walSafetyPolicy", "cooldown"] {
        assert!(
            fields.contains(expected),
            "the schema walk missed {expected}: {fields:?}"
        );
    }
    let text = page("configuration.md");
    check(
        "docs/reference/configuration.md",
        "fields of the AutoResizePolicy spec and the resize block",
        "each named somewhere",
        missing(fields, |field| mentions(&text, field)),
        Vec::new(),
    );
}

/// `--flag` occurs in `text`, not as the start of a longer flag.
fn mentions_flag(text: &str, flag: &str) -> bool {
    text.match_indices(flag).any(|(i, _)| {
        let after = text[i + flag.len()..].chars().next();
        !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

#[test]
fn every_run_flag_and_its_environment_variable_is_in_commands_md() {
    let cli = cnpg_autoresize::manager::cli::Cli::command();
    let run = cli
        .find_subcommand("run")
        .expect("the command line has `run`");
    let mut flags = BTreeSet::new();
    let mut environment = BTreeSet::new();
    for arg in run.get_arguments().filter(|a| !a.is_hide_set()) {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version") {
            continue;
        }
        flags.insert(format!("--{long}"));
        if let Some(env) = arg.get_env() {
            environment.insert(env.to_string_lossy().into_owned());
        }
    }
    assert!(flags.contains("--cluster"), "no run flag found: {flags:?}");
    let text = page("commands.md");
    // The flag table of the `run` section lists no flag `run` lacks.
    let section: String = text
        .split("\n## ")
        .find(|s| s.starts_with("`run`"))
        .expect("commands.md has a `run` section")
        .to_string();
    let mut tabled = BTreeSet::new();
    for row in section.lines().filter(|l| l.starts_with("| `-")) {
        let first_cell = row.split('|').nth(1).unwrap_or("");
        for (i, _) in first_cell.match_indices("--") {
            let flag: String = first_cell[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            tabled.insert(flag);
        }
    }
    assert!(
        !tabled.is_empty(),
        "commands.md has no flag table in its `run` section"
    );
    let mut lacking = missing(flags.iter().cloned(), |flag| mentions_flag(&section, flag));
    lacking.extend(missing(environment, |env| mentions(&section, env)));
    check(
        "docs/reference/commands.md",
        "`run` flags and their environment variables",
        "in the `run` section",
        lacking,
        unknown(tabled, &flags),
    );
}

#[test]
fn every_plan_example_is_listed_in_commands_md() {
    let listed = page("commands.md");
    let examples: BTreeSet<String> = std::fs::read_dir(root().join("examples/plan"))
        .expect("examples/plan exists")
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| name.ends_with(".yaml"))
        .collect();
    let mentioned: BTreeSet<String> = listed
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .filter(|name| name.ends_with(".yaml"))
        .map(String::from)
        .collect();
    check(
        "docs/reference/commands.md",
        "plan snapshots of examples/plan/",
        "a table row each",
        missing(examples.iter().cloned(), |name| mentioned.contains(name)),
        unknown(mentioned, &examples),
    );
}

/// The Markdown files of `docs/` (all of them) and `README.md`.
fn markdown_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    let mut files = vec![root().join("README.md")];
    walk(&root().join("docs"), &mut files);
    files
}

#[test]
fn no_page_points_at_the_shared_directory() {
    let offending: Vec<String> = markdown_files()
        .into_iter()
        .filter(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .contains("../shared")
        })
        .map(|f| f.strip_prefix(root()).unwrap_or(&f).display().to_string())
        .collect();
    assert!(
        offending.is_empty(),
        "these pages link to ../shared, which users of the project do not have: {offending:?}"
    );
}

/// GitHub's anchors for the headings of a Markdown text (outside code blocks).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        if fenced {
            continue;
        }
        let title = heading.trim_start_matches('#').trim();
        let slug: String = title
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let n = seen.entry(slug.clone()).or_insert(0);
        out.insert(if *n == 0 {
            slug.clone()
        } else {
            format!("{slug}-{n}")
        });
        *n += 1;
    }
    out
}

#[test]
fn links_between_the_reference_pages_resolve() {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root().join("docs/reference"))
        .expect("docs/reference exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.push(root().join("docs/deploy-upstream.md"));
    let mut broken = Vec::new();
    for page in &pages {
        let text = std::fs::read_to_string(page).expect("a page reads");
        let dir = page.parent().unwrap_or(Path::new("."));
        for (i, _) in text.match_indices("](") {
            let target: String = text[i + 2..].chars().take_while(|c| *c != ')').collect();
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let resolved = if file.is_empty() {
                page.clone()
            } else {
                dir.join(file)
            };
            let name = page.strip_prefix(root()).unwrap_or(page).display();
            let Ok(linked) = std::fs::read_to_string(&resolved) else {
                broken.push(format!("{name}: {target} (no such file)"));
                continue;
            };
            if !anchor.is_empty() && !anchors(&linked).contains(anchor) {
                broken.push(format!("{name}: {target} (no such heading)"));
            }
        }
    }
    assert!(broken.is_empty(), "broken links: {broken:#?}");
}
