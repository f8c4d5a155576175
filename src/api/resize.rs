//! The `resize` block (docs/reference/configuration.md): its wire form, and
//! its resolution into a typed [`ResizePolicy`] with defaults applied and
//! every value checked.
//!
//! Resolution is the single place values are interpreted: `validate` reports
//! its errors, and the decision engine refuses to act on a block that does not
//! resolve (`invalid_config`) instead of falling back to a default.

use super::duration::parse_go_duration;
use super::field::{FieldIssue, FieldPath};
use super::quantity::Quantity;
use schemars::JsonSchema;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

use super::cluster::Extra;

pub const DEFAULT_USAGE_THRESHOLD: u32 = 80;
pub const DEFAULT_STEP_PERCENT: u32 = 20;
pub const DEFAULT_MIN_STEP: u64 = 2 << 30;
pub const DEFAULT_MAX_STEP: u64 = 500 << 30;
pub const DEFAULT_MAX_ACTIONS_PER_DAY: u32 = 3;
pub const MAX_ACTIONS_PER_DAY_CEILING: u32 = 10;
pub const DEFAULT_MAX_PENDING_WAL_FILES: u64 = 100;
/// `timeToFull` when unset: grow when the forecast says the volume is full
/// within it. Quiet on steady growth (full in days), it catches a fill too
/// fast for `usageThreshold` and the expansion latency
/// (docs/benchmarks.md#trace).
pub const DEFAULT_TIME_TO_FULL: Duration = Duration::from_secs(10 * 60);
pub const STANDARD_MODE: &str = "Standard";
pub const RECOMMEND_MODE: &str = "Recommend";

pub const STEP_INTEGER_MESSAGE: &str = "integer step values are ambiguous; use a percentage string like '20%' or a quantity like '5Gi'";
pub const STEP_ZERO_MESSAGE: &str = "step must be a positive quantity or percentage, not 0";

/// A `resize` block as written (docs/reference/configuration.md). Values are
/// checked by [`ResizeConfiguration::resolve`], never by deserialization, so a
/// bad value is reported with its field path instead of making the object
/// unreadable.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResizeConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggers: Option<ResizeTriggers>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expansion: Option<ExpansionPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<ResizeStrategy>,
    /// Fields this version does not know (validation warns about them).
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResizeTriggers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_threshold: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_available: Option<IntOrString>,
    /// Policy only: fires when inodes used% > value (strict).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inode_usage_threshold: Option<i64>,
    /// Policy only: fires when the forecast says the volume fills within it (Go duration; 10m when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_full: Option<String>,
    /// Fields this version does not know (validation warns about them).
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExpansionPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_step: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_step: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<IntOrString>,
    /// Policy only: the increment covers at least the forecast growth over it (Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub horizon: Option<String>,
    /// Fields this version does not know (validation warns about them).
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResizeStrategy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_actions_per_day: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_safety_policy: Option<WalSafetyPolicy>,
    /// Policy only: minimum time between two resizes of one PVC (Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<String>,
    /// Fields this version does not know (validation warns about them).
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WalSafetyPolicy {
    #[serde(
        rename = "acknowledgeWALRisk",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub acknowledge_wal_risk: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_archive_healthy: Option<bool>,
    #[serde(
        rename = "maxPendingWALFiles",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub max_pending_wal_files: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_slot_retention_bytes: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_on_resize: Option<bool>,
    /// Fields this version does not know (validation warns about them).
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

/// Kubernetes' IntOrString as it arrives on the wire. Quantity fields accept
/// it too, because Kubernetes quantities may be written as plain numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IntOrString {
    Int(i64),
    String(String),
}

impl fmt::Display for IntOrString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrString::Int(i) => write!(f, "{i}"),
            IntOrString::String(s) => write!(f, "{s:?}"),
        }
    }
}

impl Serialize for IntOrString {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            IntOrString::Int(i) => serializer.serialize_i64(*i),
            IntOrString::String(s) => serializer.serialize_str(s),
        }
    }
}

impl<'de> Deserialize<'de> for IntOrString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IntOrStringVisitor;
        impl Visitor<'_> for IntOrStringVisitor {
            type Value = IntOrString;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer or a string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IntOrString, E> {
                Ok(IntOrString::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IntOrString, E> {
                i64::try_from(v)
                    .map(IntOrString::Int)
                    .map_err(|_| E::custom(format!("integer {v} is too large")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IntOrString, E> {
                Ok(IntOrString::String(v.to_string()))
            }
        }
        deserializer.deserialize_any(IntOrStringVisitor)
    }
}

/// Kubernetes' own shape for int-or-string fields.
impl JsonSchema for IntOrString {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "IntOrString".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "x-kubernetes-int-or-string": true,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
        })
    }
}

/// How much a resize adds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// 1..=100 percent of the current request, clamped to [minStep, maxStep].
    Percent(u32),
    /// A fixed number of bytes (> 0); minStep and maxStep do not apply.
    Absolute(u64),
}

/// `Standard` resizes; `Recommend` decides and reports but never patches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    #[default]
    Standard,
    Recommend,
}

/// A resize block with defaults applied and every value checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResizePolicy {
    pub usage_threshold: u32,
    pub min_available: Option<u64>,
    pub inode_usage_threshold: Option<u32>,
    pub time_to_full: Option<Duration>,
    pub horizon: Option<Duration>,
    pub mode: Mode,
    pub cooldown: Option<Duration>,
    pub step: Step,
    pub min_step: u64,
    pub max_step: u64,
    pub limit: Option<u64>,
    pub max_actions_per_day: u32,
    pub wal_safety: WalSafety,
    /// Which optional fields the user set; validation warns about some of them.
    pub min_step_set: bool,
    pub max_step_set: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalSafety {
    pub acknowledge_wal_risk: bool,
    pub require_archive_healthy: bool,
    /// 0 disables the check.
    pub max_pending_wal_files: u64,
    /// 0 disables the check.
    pub max_slot_retention_bytes: u64,
    pub alert_on_resize: bool,
}

impl Default for WalSafety {
    fn default() -> Self {
        WalSafety {
            acknowledge_wal_risk: false,
            require_archive_healthy: true,
            max_pending_wal_files: DEFAULT_MAX_PENDING_WAL_FILES,
            max_slot_retention_bytes: 0,
            alert_on_resize: true,
        }
    }
}

impl ResizeConfiguration {
    pub fn is_enabled(&self) -> bool {
        self.enabled == Some(true)
    }

    pub fn acknowledges_wal_risk(&self) -> bool {
        self.wal_safety_policy()
            .and_then(|w| w.acknowledge_wal_risk)
            .unwrap_or(false)
    }

    fn wal_safety_policy(&self) -> Option<&WalSafetyPolicy> {
        self.strategy.as_ref()?.wal_safety_policy.as_ref()
    }

    /// Applies defaults and checks every value; `path` is the block's own path
    /// (e.g. `spec.walStorage.resize`). Reports every problem, not just the first.
    pub fn resolve(&self, path: &FieldPath) -> Result<ResizePolicy, Vec<FieldIssue>> {
        let mut errors = Vec::new();
        let triggers_path = path.child("triggers");
        let expansion_path = path.child("expansion");
        let strategy_path = path.child("strategy");
        let wal_path = strategy_path.child("walSafetyPolicy");

        let triggers = self.triggers.as_ref();
        let usage_threshold = match triggers.and_then(|t| t.usage_threshold) {
            None => DEFAULT_USAGE_THRESHOLD,
            Some(v) if (1..=99).contains(&v) => v as u32,
            Some(v) => {
                errors.push(FieldIssue::new(
                    &triggers_path.child("usageThreshold"),
                    format!("must be between 1 and 99 (percent used), got {v}"),
                ));
                DEFAULT_USAGE_THRESHOLD
            }
        };
        let min_available = optional_bytes(
            triggers.and_then(|t| t.min_available.as_ref()),
            &triggers_path.child("minAvailable"),
            &mut errors,
        );
        let inode_usage_threshold = match triggers.and_then(|t| t.inode_usage_threshold) {
            None => None,
            Some(v) if (1..=99).contains(&v) => Some(v as u32),
            Some(v) => {
                errors.push(FieldIssue::new(
                    &triggers_path.child("inodeUsageThreshold"),
                    format!("must be between 1 and 99 (percent of inodes used), got {v}"),
                ));
                None
            }
        };
        let time_to_full = optional_duration(
            triggers.and_then(|t| t.time_to_full.as_deref()),
            &triggers_path.child("timeToFull"),
            &mut errors,
        )
        .or(Some(DEFAULT_TIME_TO_FULL));

        let expansion = self.expansion.as_ref();
        let step = resolve_step(
            expansion.and_then(|e| e.step.as_ref()),
            &expansion_path.child("step"),
            &mut errors,
        );
        let min_step_field = expansion.and_then(|e| e.min_step.as_ref());
        let max_step_field = expansion.and_then(|e| e.max_step.as_ref());
        let errors_before_steps = errors.len();
        let min_step = optional_bytes(
            min_step_field,
            &expansion_path.child("minStep"),
            &mut errors,
        );
        let max_step = optional_bytes(
            max_step_field,
            &expansion_path.child("maxStep"),
            &mut errors,
        );
        let steps_parsed = errors.len() == errors_before_steps;
        let limit = optional_bytes(
            expansion.and_then(|e| e.limit.as_ref()),
            &expansion_path.child("limit"),
            &mut errors,
        );
        let horizon = optional_duration(
            expansion.and_then(|e| e.horizon.as_deref()),
            &expansion_path.child("horizon"),
            &mut errors,
        );
        let min_step_set = min_step.is_some();
        let max_step_set = max_step.is_some();
        let min_step = min_step.unwrap_or(DEFAULT_MIN_STEP);
        let max_step = max_step.unwrap_or(DEFAULT_MAX_STEP);
        if steps_parsed && min_step > max_step {
            errors.push(FieldIssue::new(
                &expansion_path.child("minStep"),
                format!(
                    "minStep ({}) must not be greater than maxStep ({})",
                    super::quantity::format_bytes(min_step),
                    super::quantity::format_bytes(max_step)
                ),
            ));
        }

        let strategy = self.strategy.as_ref();
        let mode = match strategy.and_then(|s| s.mode.as_deref()) {
            None | Some("") | Some(STANDARD_MODE) => Mode::Standard,
            Some(RECOMMEND_MODE) => Mode::Recommend,
            Some(other) => {
                errors.push(FieldIssue::new(
                    &strategy_path.child("mode"),
                    format!(
                        "unsupported mode {other:?}; use \"{STANDARD_MODE}\" or \"{RECOMMEND_MODE}\""
                    ),
                ));
                Mode::Standard
            }
        };
        let cooldown = optional_duration(
            strategy.and_then(|s| s.cooldown.as_deref()),
            &strategy_path.child("cooldown"),
            &mut errors,
        );
        let max_actions_per_day = match strategy.and_then(|s| s.max_actions_per_day) {
            None => DEFAULT_MAX_ACTIONS_PER_DAY,
            Some(v) if (0..=MAX_ACTIONS_PER_DAY_CEILING as i64).contains(&v) => v as u32,
            Some(v) => {
                errors.push(FieldIssue::new(
                    &strategy_path.child("maxActionsPerDay"),
                    format!("must be between 0 and {MAX_ACTIONS_PER_DAY_CEILING}, got {v}"),
                ));
                DEFAULT_MAX_ACTIONS_PER_DAY
            }
        };

        let mut wal_safety = WalSafety::default();
        if let Some(policy) = self.wal_safety_policy() {
            wal_safety.acknowledge_wal_risk = policy.acknowledge_wal_risk.unwrap_or(false);
            wal_safety.require_archive_healthy = policy.require_archive_healthy.unwrap_or(true);
            wal_safety.alert_on_resize = policy.alert_on_resize.unwrap_or(true);
            match policy.max_pending_wal_files {
                None => {}
                Some(v) if v >= 0 => wal_safety.max_pending_wal_files = v as u64,
                Some(v) => errors.push(FieldIssue::new(
                    &wal_path.child("maxPendingWALFiles"),
                    format!("must be 0 (check disabled) or more, got {v}"),
                )),
            }
            wal_safety.max_slot_retention_bytes = optional_bytes(
                policy.max_slot_retention_bytes.as_ref(),
                &wal_path.child("maxSlotRetentionBytes"),
                &mut errors,
            )
            .unwrap_or(0);
        }

        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(ResizePolicy {
            usage_threshold,
            min_available,
            inode_usage_threshold,
            time_to_full,
            horizon,
            mode,
            cooldown,
            step,
            min_step,
            max_step,
            limit,
            max_actions_per_day,
            wal_safety,
            min_step_set,
            max_step_set,
        })
    }
}

/// Parses a storage-size field into bytes; "" means absent.
fn optional_bytes(
    value: Option<&IntOrString>,
    path: &FieldPath,
    errors: &mut Vec<FieldIssue>,
) -> Option<u64> {
    let text = match value? {
        IntOrString::String(s) if s.is_empty() => return None,
        IntOrString::String(s) => s.clone(),
        IntOrString::Int(i) => i.to_string(),
    };
    if !within_length(&text, super::crd::MAX_QUANTITY_LENGTH, path, errors) {
        return None;
    }
    match parse_non_negative_bytes(&text) {
        Ok(bytes) => Some(bytes),
        Err(message) => {
            errors.push(FieldIssue::new(path, message));
            None
        }
    }
}

/// Parses a positive Go duration; "" means absent.
fn optional_duration(
    value: Option<&str>,
    path: &FieldPath,
    errors: &mut Vec<FieldIssue>,
) -> Option<Duration> {
    let text = value.filter(|t| !t.is_empty())?;
    if !within_length(text, super::crd::MAX_SHORT_STRING_LENGTH, path, errors) {
        return None;
    }
    match parse_go_duration(text) {
        Ok(d) if !d.is_zero() => Some(d),
        Ok(_) => {
            errors.push(FieldIssue::new(
                path,
                format!("must be a positive duration, got {text:?}"),
            ));
            None
        }
        Err(message) => {
            errors.push(FieldIssue::new(path, message));
            None
        }
    }
}

/// Whether `text` fits the CRD's `maxLength` for its field; else an error saying so.
fn within_length(text: &str, max: u32, path: &FieldPath, errors: &mut Vec<FieldIssue>) -> bool {
    let length = text.chars().count();
    if length <= max as usize {
        return true;
    }
    errors.push(FieldIssue::new(
        path,
        format!("must be at most {max} characters (the CRD's maxLength), got {length} ({text:?})"),
    ));
    false
}

/// Parses a quantity that must be a non-negative byte count.
pub fn parse_non_negative_bytes(text: &str) -> Result<u64, String> {
    let quantity = Quantity::parse(text).map_err(|e| e.to_string())?;
    if quantity.is_negative() {
        return Err(format!("quantity {text:?} must not be negative"));
    }
    quantity.to_bytes().map_err(|e| e.to_string())
}

fn resolve_step(
    value: Option<&IntOrString>,
    path: &FieldPath,
    errors: &mut Vec<FieldIssue>,
) -> Step {
    let default = Step::Percent(DEFAULT_STEP_PERCENT);
    let text = match value {
        None => return default,
        Some(IntOrString::Int(0)) => {
            errors.push(FieldIssue::new(path, STEP_ZERO_MESSAGE));
            return default;
        }
        Some(IntOrString::Int(i)) => {
            errors.push(FieldIssue::new(
                path,
                format!("{STEP_INTEGER_MESSAGE} (got {i})"),
            ));
            return default;
        }
        Some(IntOrString::String(s)) if s.is_empty() => return default,
        Some(IntOrString::String(s)) => s.as_str(),
    };
    if !within_length(text, super::crd::MAX_QUANTITY_LENGTH, path, errors) {
        return default;
    }
    match parse_step(text) {
        Ok(step) => step,
        Err(message) => {
            errors.push(FieldIssue::new(path, message));
            default
        }
    }
}

/// `"<1..100>%"` or a positive quantity.
pub fn parse_step(text: &str) -> Result<Step, String> {
    if let Some(number) = text.strip_suffix('%') {
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "invalid percentage {text:?}: use a whole number of percent like '20%'"
            ));
        }
        return match number.parse::<u32>() {
            Ok(0) => Err(format!("{STEP_ZERO_MESSAGE} (got {text:?})")),
            Ok(p) if p <= 100 => Ok(Step::Percent(p)),
            _ => Err(format!("percentage {text:?} must be between 1% and 100%")),
        };
    }
    let quantity = Quantity::parse(text).map_err(|e| {
        format!("{e}; step must be a percentage like '20%' or a quantity like '5Gi'")
    })?;
    if quantity.is_negative() {
        return Err(format!("step {text:?} must be positive"));
    }
    if quantity.is_zero() {
        return Err(format!("{STEP_ZERO_MESSAGE} (got {text:?})"));
    }
    quantity
        .to_bytes()
        .map(Step::Absolute)
        .map_err(|e| e.to_string())
}

impl super::lenient::Lenient<ResizeConfiguration> {
    /// `enabled: true`; an unreadable block counts as enabled unless it says
    /// `enabled: false`, so its problem is reported rather than ignored.
    pub fn is_enabled(&self) -> bool {
        match self {
            super::lenient::Lenient::Ok(r) => r.is_enabled(),
            super::lenient::Lenient::Unreadable { value, .. } => {
                value.get("enabled") != Some(&serde_json::Value::Bool(false))
            }
        }
    }

    /// [`ResizeConfiguration::resolve`]; an unreadable block is one error at `path`.
    pub fn resolve(&self, path: &FieldPath) -> Result<ResizePolicy, Vec<FieldIssue>> {
        match self {
            super::lenient::Lenient::Ok(r) => r.resolve(path),
            super::lenient::Lenient::Unreadable { error, .. } => Err(vec![FieldIssue::new(
                path,
                format!("cannot be read: {error}"),
            )]),
        }
    }

    pub fn acknowledges_wal_risk(&self) -> bool {
        self.ok()
            .is_some_and(ResizeConfiguration::acknowledges_wal_risk)
    }
}
