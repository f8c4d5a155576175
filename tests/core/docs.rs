//! The user reference (`docs/reference/`, `docs/deploy-upstream.md`) cannot
//! drift from the code: every reason and warning code, trigger, metric,
//! Event reason, alert, configuration field, `run` flag and `plan` example
//! the product has is documented, the pages name no metric, Event reason,
//! alert, flag or example the product lacks, their links resolve, and no page
//! points outside the repository. Nor does any other file: what a source,
//! script, chart file or message cites is in the repository, and its
//! `docs/…#anchor` resolves. Each failure names what is missing or extra.

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
        history_seconds: Some(600.0),
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
        &cnpg_autoresize::engine::CnpgSlots::default(),
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

#[test]
fn the_chart_check_allows_exactly_the_documented_metrics() {
    // hack/check-chart.sh refuses alert rules and dashboards that use a name
    // this list lacks; it must be the metrics.md list, no more, no less.
    let listed: BTreeSet<String> = read("tests/packaging/metrics.txt")
        .lines()
        .map(|line| line.split('#').next().unwrap_or("").trim().to_string())
        .filter(|name| !name.is_empty())
        .collect();
    let families: BTreeSet<String> = exposed_metric_families().into_keys().collect();
    check(
        "tests/packaging/metrics.txt",
        "metrics",
        "a line each",
        missing(families.iter().cloned(), |name| listed.contains(name)),
        unknown(listed, &families),
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
fn every_plugin_flag_and_its_environment_variable_is_in_commands_md() {
    let cli = cnpg_autoresize::manager::cli::Cli::command();
    let plugin = cli
        .find_subcommand("plugin")
        .expect("the command line has `plugin`");
    let mut flags = BTreeSet::new();
    let mut environment = BTreeSet::new();
    for arg in plugin.get_arguments().filter(|a| !a.is_hide_set()) {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version") {
            continue;
        }
        flags.insert(format!("--{long}"));
        if let Some(env) = arg.get_env() {
            environment.insert(env.to_string_lossy().into_owned());
        }
    }
    assert!(
        flags.contains("--listen"),
        "no plugin flag found: {flags:?}"
    );
    let text = page("commands.md");
    let section: String = text
        .split("\n## ")
        .find(|s| s.starts_with("`plugin`"))
        .expect("commands.md has a `plugin` section")
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
    let mut lacking = missing(flags.iter().cloned(), |flag| mentions_flag(&section, flag));
    lacking.extend(missing(environment, |env| mentions(&section, env)));
    check(
        "docs/reference/commands.md",
        "`plugin` flags and their environment variables",
        "in the `plugin` section",
        lacking,
        unknown(tabled, &flags),
    );
    // The parameters the plugin takes are the ones deploy-cnpg-i.md lists.
    let deploy = read("docs/deploy-cnpg-i.md");
    let documented: BTreeSet<String> = deploy
        .split("\n## Parameters")
        .nth(1)
        .expect("deploy-cnpg-i.md has a Parameters section")
        .split("\n## ")
        .next()
        .unwrap_or("")
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .map(String::from)
        .collect();
    let known: BTreeSet<String> = cnpg_autoresize::plugin::inject::PARAMETERS
        .iter()
        .map(|p| p.to_string())
        .collect();
    check(
        "docs/deploy-cnpg-i.md",
        "plugin parameters",
        "a row each in its Parameters table",
        missing(known.iter().cloned(), |p| documented.contains(p)),
        unknown(documented, &known),
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

/// The relative links of the Markdown file `page` that do not resolve: no
/// such file, or no such heading in it.
fn broken_links(page: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(page).expect("a page reads");
    let dir = page.parent().unwrap_or(Path::new("."));
    let name = page.strip_prefix(root()).unwrap_or(page).display();
    let mut broken = Vec::new();
    for (i, _) in text.match_indices("](") {
        let target: String = text[i + 2..].chars().take_while(|c| *c != ')').collect();
        if target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        let (file, anchor) = target.split_once('#').unwrap_or((&target, ""));
        let at = format!("{name}:{}: {target}", text[..i].matches('\n').count() + 1);
        let resolved = if file.is_empty() {
            page.to_path_buf()
        } else {
            dir.join(file)
        };
        if resolved.is_dir() && anchor.is_empty() {
            continue;
        }
        // Bytes: a picture is linked too.
        let Ok(linked) = std::fs::read(&resolved) else {
            broken.push(format!("{at} (no such file)"));
            continue;
        };
        if !anchor.is_empty() && !anchors(&String::from_utf8_lossy(&linked)).contains(anchor) {
            broken.push(format!("{at} (no such heading)"));
        }
    }
    broken
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
    let broken: Vec<String> = pages.iter().flat_map(|p| broken_links(p)).collect();
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// Every file of the repository a maintainer reads — sources, scripts, the
/// chart, fixtures, examples, pages — as (path from the root, text). Build
/// output and files that are not UTF-8 text are left out.
fn repository_texts() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if !is_dir {
                out.push(entry.path());
            } else if name != ".git" && name != "target" && !name.starts_with("target-") {
                // What libFuzzer writes (ignored by git): inputs, not text.
                let fuzz_output = dir.ends_with("fuzz")
                    && matches!(name.as_str(), "corpus" | "artifacts" | "coverage");
                if !fuzz_output {
                    walk(&entry.path(), out);
                }
            }
        }
    }
    let mut files = Vec::new();
    walk(&root(), &mut files);
    files.sort();
    files
        .into_iter()
        .filter_map(|path| {
            let text = std::fs::read_to_string(&path).ok()?;
            let relative = path.strip_prefix(root()).unwrap_or(&path);
            Some((relative.display().to_string(), text))
        })
        .collect()
}

/// Whether `line` cites the product specification the project was first
/// written from, which the repository does not contain: its name in
/// capitals, a section sign, or a numbered section "of the spec". The name
/// or the sign alone in quotes (a test keeping them out of generated text,
/// or this one) is no citation.
fn cites_the_specification(line: &str) -> bool {
    let quoted = |i: usize, len: usize| {
        let quote = line[..i]
            .chars()
            .next_back()
            .filter(|c| matches!(c, '"' | '\''));
        quote.is_some_and(|q| line[i + len..].starts_with(q))
    };
    let name = "SPEC";
    let by_name = line.match_indices(name).any(|(i, _)| {
        !line[..i].chars().next_back().is_some_and(is_ident)
            && !line[i + name.len()..].chars().next().is_some_and(is_ident)
            && !quoted(i, name.len())
    });
    let by_sign = line.match_indices('§').any(|(i, s)| !quoted(i, s.len()));
    let lower = line.to_lowercase();
    let by_section = lower.match_indices("spec").any(|(i, word)| {
        let (before, after) = (&lower[..i], &lower[i + word.len()..]);
        if before.chars().next_back().is_some_and(is_ident)
            || after.chars().next().is_some_and(is_ident)
        {
            return false;
        }
        let numbered = |s: &str| s.starts_with(|c: char| c.is_ascii_digit() || c == '§');
        let section_before = before.strip_suffix(" of the ").is_some_and(|b| {
            let number = b.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
            number.len() < b.len() && number.ends_with("section ")
        });
        after.strip_prefix(' ').is_some_and(numbered)
            || after.starts_with(" section")
            || after.starts_with("'s section")
            || section_before
    });
    by_name || by_sign || by_section
}

#[test]
fn nothing_cites_a_document_the_repository_does_not_have() {
    let mut problems = Vec::new();
    for (file, text) in repository_texts() {
        for (n, line) in text.lines().enumerate() {
            if cites_the_specification(line) {
                problems.push(format!("{file}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "these lines cite a specification the repository does not contain; cite its own \
         docs (docs/reference/decision.md#<rule>, docs/reference/metrics.md, \
         docs/design.md, ...) or say what is meant:\n{}",
        problems.join("\n")
    );
}

/// The `docs/…` paths `line` cites, each with its anchor ("" without one).
fn cited_doc_paths(line: &str) -> Vec<(String, String)> {
    let path_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-');
    line.match_indices("docs/")
        .filter(|(i, _)| !line[..*i].chars().next_back().is_some_and(path_char))
        .map(|(i, _)| {
            let rest = &line[i..];
            let path: String = rest.chars().take_while(|c| path_char(*c)).collect();
            // A sentence may end right after the path.
            let path = path.trim_end_matches('.').to_string();
            let anchor = rest[path.len()..]
                .strip_prefix('#')
                .map(|a| {
                    a.chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
                        .collect()
                })
                .unwrap_or_default();
            (path, anchor)
        })
        .collect()
}

#[test]
fn every_cited_docs_path_and_anchor_resolves() {
    let mut broken = Vec::new();
    let mut resolved = 0;
    for (file, text) in repository_texts() {
        for (n, line) in text.lines().enumerate() {
            for (path, anchor) in cited_doc_paths(line) {
                let at = format!("{file}:{}: {path}", n + 1);
                let target = root().join(&path);
                if !target.exists() {
                    broken.push(format!("{at} (no such file)"));
                } else if !anchor.is_empty() {
                    let page = std::fs::read_to_string(&target).unwrap_or_default();
                    if !anchors(&page).contains(&anchor) {
                        broken.push(format!("{at}#{anchor} (no such heading)"));
                    }
                }
                resolved += 1;
            }
        }
    }
    assert!(resolved >= 20, "found only {resolved} docs/ citations");
    assert!(
        broken.is_empty(),
        "broken docs/ citations:\n{}",
        broken.join("\n")
    );
}

#[test]
fn every_relative_link_of_every_markdown_file_resolves() {
    let broken: Vec<String> = repository_texts()
        .into_iter()
        .filter(|(file, _)| file.ends_with(".md"))
        .flat_map(|(file, _)| broken_links(&root().join(file)))
        .collect();
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}
