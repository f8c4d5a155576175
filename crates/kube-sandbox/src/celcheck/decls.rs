//! The functions a Kubernetes API server declares to CEL, library by library, with the
//! Kubernetes version each library entered its environment
//! (`k8s.io/apiserver/pkg/cel/environment/base.go`), their overload ids and whether each
//! overload is a global function (`f(x)`) or a member (`x.f()`): a rule that calls a
//! global function as a member (or the reverse) finds no overload, as on a real server.
//!
//! Declarations are written as `id: f(T, ...) -> R` (global) or `id: T.f(...) -> R`
//! (member); `A`, `B` are type parameters.

use std::collections::HashMap;

use super::types::Type;

/// One overload of a function.
#[derive(Debug, Clone)]
pub struct Overload {
    pub id: String,
    pub member: bool,
    /// Parameter types, the receiver first for a member.
    pub params: Vec<Type>,
    pub result: Type,
    pub type_params: Vec<String>,
}

/// A Kubernetes CEL compatibility version (major is always 1).
pub type Minor = u32;

/// The oldest compatibility version a Kubernetes that CloudNativePG supports uses for new
/// expressions: Kubernetes 1.30 compiles with its 1.29 environment.
pub const OLDEST_SUPPORTED: Minor = 29;
/// The compatibility version of the Kubernetes the sandbox stands in for (1.36 compiles
/// new expressions with its 1.35 environment).
pub const CURRENT: Minor = 35;

/// (introduced, removed, declarations).
const LIBRARIES: &[(Minor, Option<Minor>, &str)] = &[
    (0, None, STANDARD),
    (0, None, URLS),
    (0, None, REGEX),
    (0, None, LISTS),
    (0, Some(29), STRINGS_V0),
    (29, None, STRINGS_V0),
    (29, None, STRINGS_V2),
    (27, None, AUTHZ),
    (28, None, QUANTITY),
    (28, None, OPTIONAL),
    (28, None, CROSS_TYPE_NUMERIC),
    (29, None, SETS),
    (30, None, IP_CIDR),
    (31, None, FORMAT),
    (33, None, SEMVER),
    (34, None, LISTS_V3),
];

const STANDARD: &str = r#"
conditional: _?_:_(bool, A, A) -> A
logical_and: _&&_(bool, bool) -> bool
logical_or: _||_(bool, bool) -> bool
logical_not: !_(bool) -> bool
not_strictly_false: @not_strictly_false(bool) -> bool
equals: _==_(A, A) -> bool
not_equals: _!=_(A, A) -> bool
add_bytes: _+_(bytes, bytes) -> bytes
add_double: _+_(double, double) -> double
add_duration_duration: _+_(duration, duration) -> duration
add_duration_timestamp: _+_(duration, timestamp) -> timestamp
add_timestamp_duration: _+_(timestamp, duration) -> timestamp
add_int64: _+_(int, int) -> int
add_list: _+_(list(A), list(A)) -> list(A)
add_string: _+_(string, string) -> string
add_uint64: _+_(uint, uint) -> uint
divide_double: _/_(double, double) -> double
divide_int64: _/_(int, int) -> int
divide_uint64: _/_(uint, uint) -> uint
modulo_int64: _%_(int, int) -> int
modulo_uint64: _%_(uint, uint) -> uint
multiply_double: _*_(double, double) -> double
multiply_int64: _*_(int, int) -> int
multiply_uint64: _*_(uint, uint) -> uint
negate_double: -_(double) -> double
negate_int64: -_(int) -> int
subtract_double: _-_(double, double) -> double
subtract_duration_duration: _-_(duration, duration) -> duration
subtract_int64: _-_(int, int) -> int
subtract_timestamp_duration: _-_(timestamp, duration) -> timestamp
subtract_timestamp_timestamp: _-_(timestamp, timestamp) -> duration
subtract_uint64: _-_(uint, uint) -> uint
less_bool: _<_(bool, bool) -> bool
less_int64: _<_(int, int) -> bool
less_uint64: _<_(uint, uint) -> bool
less_double: _<_(double, double) -> bool
less_string: _<_(string, string) -> bool
less_bytes: _<_(bytes, bytes) -> bool
less_timestamp: _<_(timestamp, timestamp) -> bool
less_duration: _<_(duration, duration) -> bool
less_equals_bool: _<=_(bool, bool) -> bool
less_equals_int64: _<=_(int, int) -> bool
less_equals_uint64: _<=_(uint, uint) -> bool
less_equals_double: _<=_(double, double) -> bool
less_equals_string: _<=_(string, string) -> bool
less_equals_bytes: _<=_(bytes, bytes) -> bool
less_equals_timestamp: _<=_(timestamp, timestamp) -> bool
less_equals_duration: _<=_(duration, duration) -> bool
greater_bool: _>_(bool, bool) -> bool
greater_int64: _>_(int, int) -> bool
greater_uint64: _>_(uint, uint) -> bool
greater_double: _>_(double, double) -> bool
greater_string: _>_(string, string) -> bool
greater_bytes: _>_(bytes, bytes) -> bool
greater_timestamp: _>_(timestamp, timestamp) -> bool
greater_duration: _>_(duration, duration) -> bool
greater_equals_bool: _>=_(bool, bool) -> bool
greater_equals_int64: _>=_(int, int) -> bool
greater_equals_uint64: _>=_(uint, uint) -> bool
greater_equals_double: _>=_(double, double) -> bool
greater_equals_string: _>=_(string, string) -> bool
greater_equals_bytes: _>=_(bytes, bytes) -> bool
greater_equals_timestamp: _>=_(timestamp, timestamp) -> bool
greater_equals_duration: _>=_(duration, duration) -> bool
index_list: _[_](list(A), int) -> A
index_map: _[_](map(A, B), A) -> B
in_list: @in(A, list(A)) -> bool
in_map: @in(A, map(A, B)) -> bool
size_bytes: size(bytes) -> int
bytes_size: bytes.size() -> int
size_list: size(list(A)) -> int
list_size: list(A).size() -> int
size_map: size(map(A, B)) -> int
map_size: map(A, B).size() -> int
size_string: size(string) -> int
string_size: string.size() -> int
type: type(A) -> type(A)
bool_to_bool: bool(bool) -> bool
string_to_bool: bool(string) -> bool
bytes_to_bytes: bytes(bytes) -> bytes
string_to_bytes: bytes(string) -> bytes
double_to_double: double(double) -> double
int64_to_double: double(int) -> double
string_to_double: double(string) -> double
uint64_to_double: double(uint) -> double
duration_to_duration: duration(duration) -> duration
int64_to_duration: duration(int) -> duration
string_to_duration: duration(string) -> duration
to_dyn: dyn(A) -> dyn
int64_to_int64: int(int) -> int
double_to_int64: int(double) -> int
duration_to_int64: int(duration) -> int
string_to_int64: int(string) -> int
timestamp_to_int64: int(timestamp) -> int
uint64_to_int64: int(uint) -> int
string_to_string: string(string) -> string
bool_to_string: string(bool) -> string
bytes_to_string: string(bytes) -> string
double_to_string: string(double) -> string
duration_to_string: string(duration) -> string
int64_to_string: string(int) -> string
timestamp_to_string: string(timestamp) -> string
uint64_to_string: string(uint) -> string
timestamp_to_timestamp: timestamp(timestamp) -> timestamp
int64_to_timestamp: timestamp(int) -> timestamp
string_to_timestamp: timestamp(string) -> timestamp
uint64_to_uint64: uint(uint) -> uint
double_to_uint64: uint(double) -> uint
int64_to_uint64: uint(int) -> uint
string_to_uint64: uint(string) -> uint
contains_string: string.contains(string) -> bool
ends_with_string: string.endsWith(string) -> bool
starts_with_string: string.startsWith(string) -> bool
matches: matches(string, string) -> bool
matches_string: string.matches(string) -> bool
timestamp_to_year: timestamp.getFullYear() -> int
timestamp_to_year_with_tz: timestamp.getFullYear(string) -> int
timestamp_to_month: timestamp.getMonth() -> int
timestamp_to_month_with_tz: timestamp.getMonth(string) -> int
timestamp_to_day_of_year: timestamp.getDayOfYear() -> int
timestamp_to_day_of_year_with_tz: timestamp.getDayOfYear(string) -> int
timestamp_to_day_of_month: timestamp.getDayOfMonth() -> int
timestamp_to_day_of_month_with_tz: timestamp.getDayOfMonth(string) -> int
timestamp_to_day_of_month_1_based: timestamp.getDate() -> int
timestamp_to_day_of_month_1_based_with_tz: timestamp.getDate(string) -> int
timestamp_to_day_of_week: timestamp.getDayOfWeek() -> int
timestamp_to_day_of_week_with_tz: timestamp.getDayOfWeek(string) -> int
timestamp_to_hours: timestamp.getHours() -> int
timestamp_to_hours_with_tz: timestamp.getHours(string) -> int
duration_to_hours: duration.getHours() -> int
timestamp_to_minutes: timestamp.getMinutes() -> int
timestamp_to_minutes_with_tz: timestamp.getMinutes(string) -> int
duration_to_minutes: duration.getMinutes() -> int
timestamp_to_seconds: timestamp.getSeconds() -> int
timestamp_to_seconds_tz: timestamp.getSeconds(string) -> int
duration_to_seconds: duration.getSeconds() -> int
timestamp_to_milliseconds: timestamp.getMilliseconds() -> int
timestamp_to_milliseconds_with_tz: timestamp.getMilliseconds(string) -> int
duration_to_milliseconds: duration.getMilliseconds() -> int
"#;

/// `CrossTypeNumericComparisons(true)`, from 1.28.
const CROSS_TYPE_NUMERIC: &str = r#"
less_int64_double: _<_(int, double) -> bool
less_int64_uint64: _<_(int, uint) -> bool
less_uint64_double: _<_(uint, double) -> bool
less_uint64_int64: _<_(uint, int) -> bool
less_double_int64: _<_(double, int) -> bool
less_double_uint64: _<_(double, uint) -> bool
less_equals_int64_double: _<=_(int, double) -> bool
less_equals_int64_uint64: _<=_(int, uint) -> bool
less_equals_uint64_double: _<=_(uint, double) -> bool
less_equals_uint64_int64: _<=_(uint, int) -> bool
less_equals_double_int64: _<=_(double, int) -> bool
less_equals_double_uint64: _<=_(double, uint) -> bool
greater_int64_double: _>_(int, double) -> bool
greater_int64_uint64: _>_(int, uint) -> bool
greater_uint64_double: _>_(uint, double) -> bool
greater_uint64_int64: _>_(uint, int) -> bool
greater_double_int64: _>_(double, int) -> bool
greater_double_uint64: _>_(double, uint) -> bool
greater_equals_int64_double: _>=_(int, double) -> bool
greater_equals_int64_uint64: _>=_(int, uint) -> bool
greater_equals_uint64_double: _>=_(uint, double) -> bool
greater_equals_uint64_int64: _>=_(uint, int) -> bool
greater_equals_double_int64: _>=_(double, int) -> bool
greater_equals_double_uint64: _>=_(double, uint) -> bool
"#;

const URLS: &str = r#"
string_to_url: url(string) -> kubernetes.URL
url_get_scheme: kubernetes.URL.getScheme() -> string
url_get_host: kubernetes.URL.getHost() -> string
url_get_hostname: kubernetes.URL.getHostname() -> string
url_get_port: kubernetes.URL.getPort() -> string
url_get_escaped_path: kubernetes.URL.getEscapedPath() -> string
url_get_query: kubernetes.URL.getQuery() -> map(string, list(string))
is_url_string: isURL(string) -> bool
"#;

const REGEX: &str = r#"
string_find_string: string.find(string) -> string
string_find_all_string: string.findAll(string) -> list(string)
string_find_all_string_int: string.findAll(string, int) -> list(string)
"#;

const LISTS: &str = r#"
list_int_is_sorted_bool: list(int).isSorted() -> bool
list_uint_is_sorted_bool: list(uint).isSorted() -> bool
list_double_is_sorted_bool: list(double).isSorted() -> bool
list_bool_is_sorted_bool: list(bool).isSorted() -> bool
list_duration_is_sorted_bool: list(duration).isSorted() -> bool
list_timestamp_is_sorted_bool: list(timestamp).isSorted() -> bool
list_string_is_sorted_bool: list(string).isSorted() -> bool
list_bytes_is_sorted_bool: list(bytes).isSorted() -> bool
list_int_sum_int: list(int).sum() -> int
list_uint_sum_uint: list(uint).sum() -> uint
list_double_sum_double: list(double).sum() -> double
list_duration_sum_duration: list(duration).sum() -> duration
list_int_max_int: list(int).max() -> int
list_uint_max_uint: list(uint).max() -> uint
list_double_max_double: list(double).max() -> double
list_bool_max_bool: list(bool).max() -> bool
list_duration_max_duration: list(duration).max() -> duration
list_timestamp_max_timestamp: list(timestamp).max() -> timestamp
list_string_max_string: list(string).max() -> string
list_bytes_max_bytes: list(bytes).max() -> bytes
list_int_min_int: list(int).min() -> int
list_uint_min_uint: list(uint).min() -> uint
list_double_min_double: list(double).min() -> double
list_bool_min_bool: list(bool).min() -> bool
list_duration_min_duration: list(duration).min() -> duration
list_timestamp_min_timestamp: list(timestamp).min() -> timestamp
list_string_min_string: list(string).min() -> string
list_bytes_min_bytes: list(bytes).min() -> bytes
list_a_index_of_int: list(A).indexOf(A) -> int
list_a_last_index_of_int: list(A).lastIndexOf(A) -> int
"#;

/// cel-go's strings extension at version 0 (Kubernetes before 1.29 and after, stored).
const STRINGS_V0: &str = r#"
string_char_at_int: string.charAt(int) -> string
string_index_of_string: string.indexOf(string) -> int
string_index_of_string_int: string.indexOf(string, int) -> int
string_last_index_of_string: string.lastIndexOf(string) -> int
string_last_index_of_string_int: string.lastIndexOf(string, int) -> int
string_lower_ascii: string.lowerAscii() -> string
string_replace_string_string: string.replace(string, string) -> string
string_replace_string_string_int: string.replace(string, string, int) -> string
string_split_string: string.split(string) -> list(string)
string_split_string_int: string.split(string, int) -> list(string)
string_substring_int: string.substring(int) -> string
string_substring_int_int: string.substring(int, int) -> string
string_trim: string.trim() -> string
string_upper_ascii: string.upperAscii() -> string
"#;

/// Version 2 adds `format`, `strings.quote` and `join` (1.29).
const STRINGS_V2: &str = r#"
string_format: string.format(list(dyn)) -> string
strings_quote: strings.quote(string) -> string
list_join: list(string).join() -> string
list_join_string: list(string).join(string) -> string
"#;

const AUTHZ: &str = r#"
authorizer_path: kubernetes.authorization.Authorizer.path(string) -> kubernetes.authorization.PathCheck
authorizer_group: kubernetes.authorization.Authorizer.group(string) -> kubernetes.authorization.GroupCheck
authorizer_serviceaccount: kubernetes.authorization.Authorizer.serviceAccount(string, string) -> kubernetes.authorization.Authorizer
groupcheck_resource: kubernetes.authorization.GroupCheck.resource(string) -> kubernetes.authorization.ResourceCheck
resourcecheck_subresource: kubernetes.authorization.ResourceCheck.subresource(string) -> kubernetes.authorization.ResourceCheck
resourcecheck_namespace: kubernetes.authorization.ResourceCheck.namespace(string) -> kubernetes.authorization.ResourceCheck
resourcecheck_name: kubernetes.authorization.ResourceCheck.name(string) -> kubernetes.authorization.ResourceCheck
pathcheck_check: kubernetes.authorization.PathCheck.check(string) -> kubernetes.authorization.Decision
resourcecheck_check: kubernetes.authorization.ResourceCheck.check(string) -> kubernetes.authorization.Decision
decision_errored: kubernetes.authorization.Decision.errored() -> bool
decision_error: kubernetes.authorization.Decision.error() -> string
decision_allowed: kubernetes.authorization.Decision.allowed() -> bool
decision_reason: kubernetes.authorization.Decision.reason() -> string
"#;

const QUANTITY: &str = r#"
string_to_quantity: quantity(string) -> kubernetes.Quantity
is_quantity_string: isQuantity(string) -> bool
quantity_sign: sign(kubernetes.Quantity) -> int
quantity_is_greater_than: kubernetes.Quantity.isGreaterThan(kubernetes.Quantity) -> bool
quantity_is_less_than: kubernetes.Quantity.isLessThan(kubernetes.Quantity) -> bool
quantity_compare_to: kubernetes.Quantity.compareTo(kubernetes.Quantity) -> int
quantity_get_float: kubernetes.Quantity.asApproximateFloat() -> double
quantity_get_int: kubernetes.Quantity.asInteger() -> int
quantity_is_integer: kubernetes.Quantity.isInteger() -> bool
quantity_add: kubernetes.Quantity.add(kubernetes.Quantity) -> kubernetes.Quantity
quantity_add_int: kubernetes.Quantity.add(int) -> kubernetes.Quantity
quantity_sub: kubernetes.Quantity.sub(kubernetes.Quantity) -> kubernetes.Quantity
quantity_sub_int: kubernetes.Quantity.sub(int) -> kubernetes.Quantity
"#;

const OPTIONAL: &str = r#"
optional_of: optional.of(A) -> optional(A)
optional_of_non_zero_value: optional.ofNonZeroValue(A) -> optional(A)
optional_none: optional.none() -> optional(A)
optional_has_value: optional(A).hasValue() -> bool
optional_value: optional(A).value() -> A
optional_or_optional: optional(A).or(optional(A)) -> optional(A)
optional_orValue_value: optional(A).orValue(A) -> A
select_optional_field: _?._(dyn, string) -> optional(dyn)
list_optindex_optional_int: _[?_](list(A), int) -> optional(A)
optional_list_optindex_optional_int: _[?_](optional(list(A)), int) -> optional(A)
map_optindex_optional_value: _[?_](map(A, B), A) -> optional(B)
optional_map_optindex_optional_value: _[?_](optional(map(A, B)), A) -> optional(B)
optional_list_index_int: _[_](optional(list(A)), int) -> optional(A)
optional_map_index_value: _[_](optional(map(A, B)), A) -> optional(B)
"#;

const SETS: &str = r#"
list_sets_contains_list: sets.contains(list(A), list(A)) -> bool
list_sets_equivalent_list: sets.equivalent(list(A), list(A)) -> bool
list_sets_intersects_list: sets.intersects(list(A), list(A)) -> bool
"#;

const IP_CIDR: &str = r#"
string_to_ip: ip(string) -> net.IP
ip_family: net.IP.family() -> int
ip_is_canonical: ip.isCanonical(string) -> bool
ip_is_unspecified: net.IP.isUnspecified() -> bool
ip_is_loopback: net.IP.isLoopback() -> bool
ip_is_link_local_multicast: net.IP.isLinkLocalMulticast() -> bool
ip_is_link_local_unicast: net.IP.isLinkLocalUnicast() -> bool
ip_is_global_unicast: net.IP.isGlobalUnicast() -> bool
is_ip: isIP(string) -> bool
ip_to_string: string(net.IP) -> string
string_to_cidr: cidr(string) -> net.CIDR
cidr_contains_ip_string: net.CIDR.containsIP(string) -> bool
cidr_contains_ip_ip: net.CIDR.containsIP(net.IP) -> bool
cidr_contains_cidr_string: net.CIDR.containsCIDR(string) -> bool
cidr_contains_cidr: net.CIDR.containsCIDR(net.CIDR) -> bool
cidr_ip: net.CIDR.ip() -> net.IP
cidr_prefix_length: net.CIDR.prefixLength() -> int
cidr_masked: net.CIDR.masked() -> net.CIDR
is_cidr: isCIDR(string) -> bool
cidr_to_string: string(net.CIDR) -> string
"#;

const FORMAT: &str = r#"
format-validate: kubernetes.NamedFormat.validate(string) -> optional(list(string))
format-named: format.named(string) -> optional(kubernetes.NamedFormat)
format.dns1123Label: format.dns1123Label() -> kubernetes.NamedFormat
format.dns1123Subdomain: format.dns1123Subdomain() -> kubernetes.NamedFormat
format.dns1035Label: format.dns1035Label() -> kubernetes.NamedFormat
format.qualifiedName: format.qualifiedName() -> kubernetes.NamedFormat
format.dns1123LabelPrefix: format.dns1123LabelPrefix() -> kubernetes.NamedFormat
format.dns1123SubdomainPrefix: format.dns1123SubdomainPrefix() -> kubernetes.NamedFormat
format.dns1035LabelPrefix: format.dns1035LabelPrefix() -> kubernetes.NamedFormat
format.labelValue: format.labelValue() -> kubernetes.NamedFormat
format.uri: format.uri() -> kubernetes.NamedFormat
format.uuid: format.uuid() -> kubernetes.NamedFormat
format.byte: format.byte() -> kubernetes.NamedFormat
format.date: format.date() -> kubernetes.NamedFormat
format.datetime: format.datetime() -> kubernetes.NamedFormat
"#;

const SEMVER: &str = r#"
string_to_semver: semver(string) -> kubernetes.Semver
string_bool_to_semver: semver(string, bool) -> kubernetes.Semver
is_semver_string: isSemver(string) -> bool
is_semver_string_bool: isSemver(string, bool) -> bool
semver_is_greater_than: kubernetes.Semver.isGreaterThan(kubernetes.Semver) -> bool
semver_is_less_than: kubernetes.Semver.isLessThan(kubernetes.Semver) -> bool
semver_compare_to: kubernetes.Semver.compareTo(kubernetes.Semver) -> int
semver_major: kubernetes.Semver.major() -> int
semver_minor: kubernetes.Semver.minor() -> int
semver_patch: kubernetes.Semver.patch() -> int
"#;

/// cel-go's lists extension at version 3 (1.34).
const LISTS_V3: &str = r#"
list_slice: list(A).slice(int, int) -> list(A)
list_flatten: list(list(A)).flatten() -> list(A)
list_flatten_int: list(dyn).flatten(int) -> list(dyn)
lists_range: lists.range(int) -> list(int)
list_reverse: list(A).reverse() -> list(A)
list_distinct: list(A).distinct() -> list(A)
list_sort: list(A).sort() -> list(A)
"#;

/// The functions of one compatibility version, by name.
#[derive(Debug, Default)]
pub struct Functions {
    by_name: HashMap<String, Vec<Overload>>,
}

impl Functions {
    /// The functions an API server declares for expressions compiled at `version`
    /// (its compatibility version: the binary's minor version minus one).
    pub fn for_version(version: Minor) -> Functions {
        let mut f = Functions::default();
        for (introduced, removed, text) in LIBRARIES {
            if version >= *introduced && removed.is_none_or(|r| version < r) {
                f.add_all(text);
            }
        }
        f
    }

    /// Adds declarations written in this module's notation.
    pub fn add_all(&mut self, text: &str) {
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some((name, overload)) = parse_decl(line) {
                let list = self.by_name.entry(name).or_default();
                if !list.iter().any(|o| o.id == overload.id) {
                    list.push(overload);
                }
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&[Overload]> {
        self.by_name.get(name).map(Vec::as_slice)
    }
}

/// `id: name(T...) -> R` or `id: T.name(T...) -> R`. Declarations are constants of this
/// module, so a malformed one is a programming error caught by the tests.
fn parse_decl(line: &str) -> Option<(String, Overload)> {
    let (id, sig) = line.split_once(": ")?;
    let (call, result) = sig.rsplit_once(" -> ")?;
    // The parenthesis that opens the argument list matches the final one.
    let mut depth = 0;
    let mut open = None;
    for (i, c) in call.char_indices().rev() {
        match c {
            ')' => depth += 1,
            '(' => {
                depth -= 1;
                if depth == 0 {
                    open = Some(i);
                    break;
                }
            }
            _ => {}
        }
    }
    let open = open?;
    let head = &call[..open];
    let args_text = call[open + 1..].strip_suffix(')')?;
    let mut params = Vec::new();
    let (member, name) = if head.starts_with('_')
        || head.starts_with('@')
        || head.starts_with('!')
        || head.starts_with('-')
    {
        (false, head.to_string())
    } else {
        // The name is the last dotted part when the rest is a receiver type; receiver
        // types are written with parentheses (`list(A)`) or start with a lowercase
        // primitive or a known namespace.
        match split_receiver(head) {
            Some((recv, name)) => {
                params.push(parse_type(recv)?);
                (true, name.to_string())
            }
            None => (false, head.to_string()),
        }
    };
    for a in split_top(args_text) {
        params.push(parse_type(a)?);
    }
    let result = parse_type(result)?;
    let mut type_params = Vec::new();
    for t in params.iter().chain(std::iter::once(&result)) {
        collect_params(t, &mut type_params);
    }
    Some((
        name,
        Overload {
            id: id.to_string(),
            member,
            params,
            result,
            type_params,
        },
    ))
}

/// Global functions whose names contain dots.
const DOTTED_GLOBALS: &[&str] = &[
    "strings.quote",
    "sets.contains",
    "sets.equivalent",
    "sets.intersects",
    "ip.isCanonical",
    "format.named",
    "optional.of",
    "optional.ofNonZeroValue",
    "optional.none",
    "lists.range",
    "jsonpatch.escapeKey",
];

fn split_receiver(head: &str) -> Option<(&str, &str)> {
    if DOTTED_GLOBALS.contains(&head) || head.starts_with("format.") {
        return None;
    }
    let dot = head.rfind('.')?;
    Some((&head[..dot], &head[dot + 1..]))
}

fn split_top(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(text[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    let last = text[start..].trim();
    if !last.is_empty() {
        out.push(last);
    }
    out
}

/// A type in the notation of the declarations.
pub fn parse_type(text: &str) -> Option<Type> {
    let text = text.trim();
    if let Some(inner) = text.strip_suffix(')') {
        let (name, args) = inner.split_once('(')?;
        let args: Vec<Type> = split_top(args)
            .into_iter()
            .map(parse_type)
            .collect::<Option<_>>()?;
        return match (name, args.as_slice()) {
            ("list", [e]) => Some(Type::list(e.clone())),
            ("map", [k, v]) => Some(Type::map(k.clone(), v.clone())),
            ("optional", [t]) => Some(Type::optional(t.clone())),
            ("type", [t]) => Some(Type::TypeOf(Some(Box::new(t.clone())))),
            _ => None,
        };
    }
    Some(match text {
        "bool" => Type::Bool,
        "int" => Type::Int,
        "uint" => Type::Uint,
        "double" => Type::Double,
        "string" => Type::String,
        "bytes" => Type::Bytes,
        "null" => Type::Null,
        "dyn" => Type::Dyn,
        "duration" => Type::Duration,
        "timestamp" => Type::Timestamp,
        "type" => Type::TypeOf(None),
        p if p.len() == 1 && p.chars().all(|c| c.is_ascii_uppercase()) => Type::Param(p.into()),
        named => Type::named(named),
    })
}

fn collect_params(t: &Type, out: &mut Vec<String>) {
    match t {
        Type::Param(p) if !out.contains(p) => out.push(p.clone()),
        Type::List(e) => collect_params(e, out),
        Type::Map(k, v) => {
            collect_params(k, out);
            collect_params(v, out);
        }
        Type::Opaque(_, ps) => ps.iter().for_each(|p| collect_params(p, out)),
        Type::TypeOf(Some(t)) => collect_params(t, out),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_declaration_parses() {
        for (_, _, text) in LIBRARIES {
            for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                assert!(parse_decl(line).is_some(), "{line}");
            }
        }
        let f = Functions::for_version(CURRENT);
        let sign = &f.get("sign").unwrap()[0];
        assert!(
            !sign.member,
            "sign is a global function of the quantity library"
        );
        let gt = &f.get("isGreaterThan").unwrap()[0];
        assert!(gt.member);
        assert!(!f.get("sets.contains").unwrap()[0].member);
        assert!(f.get("substring").unwrap().iter().all(|o| o.member));
        assert_eq!(f.get("_[_]").unwrap().len(), 4);
    }

    #[test]
    fn libraries_follow_the_kubernetes_version() {
        assert!(Functions::for_version(27).get("quantity").is_none());
        assert!(Functions::for_version(28).get("quantity").is_some());
        assert!(Functions::for_version(29).get("ip").is_none());
        assert!(Functions::for_version(30).get("ip").is_some());
        assert!(Functions::for_version(30).get("format.named").is_none());
        assert!(Functions::for_version(OLDEST_SUPPORTED)
            .get("join")
            .is_some());
        assert!(Functions::for_version(OLDEST_SUPPORTED)
            .get("semver")
            .is_none());
    }
}
