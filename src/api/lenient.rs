//! Lenient reading of data other programs write
//! (docs/reference/decision.md#foreign-data: foreign data never stops
//! planning). A [`Lenient<T>`] never fails to deserialize: a value that
//! does not read as `T` is kept as it was, with the reason, so one bad entry
//! affects only the decisions that need it instead of making the whole
//! object (and with it every decision of the cluster) unreadable.

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::borrow::Cow;

#[derive(Clone, Debug, PartialEq)]
pub enum Lenient<T> {
    Ok(T),
    /// The value as found, and why it could not be read (with the field path
    /// inside the value, when there is one).
    Unreadable {
        value: Value,
        error: String,
    },
}

impl<T> Lenient<T> {
    pub fn ok(&self) -> Option<&T> {
        match self {
            Lenient::Ok(t) => Some(t),
            Lenient::Unreadable { .. } => None,
        }
    }

    pub fn error(&self) -> Option<&str> {
        match self {
            Lenient::Ok(_) => None,
            Lenient::Unreadable { error, .. } => Some(error),
        }
    }
}

impl<T: serde::de::DeserializeOwned> Lenient<T> {
    /// Reads `value` as `T`, keeping it as found when it does not read.
    pub fn read(value: Value) -> Self {
        match serde_path_to_error::deserialize::<_, T>(&value) {
            Ok(t) => Lenient::Ok(t),
            Err(e) => {
                let path = e.path().to_string();
                let error = if path == "." {
                    e.into_inner().to_string()
                } else {
                    format!("{path}: {}", e.into_inner())
                };
                Lenient::Unreadable { value, error }
            }
        }
    }
}

impl<T> From<T> for Lenient<T> {
    fn from(t: T) -> Self {
        Lenient::Ok(t)
    }
}

impl<T: Default> Default for Lenient<T> {
    fn default() -> Self {
        Lenient::Ok(T::default())
    }
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Lenient::read(Value::deserialize(deserializer)?))
    }
}

impl<T: Serialize> Serialize for Lenient<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Lenient::Ok(t) => t.serialize(serializer),
            Lenient::Unreadable { value, .. } => value.serialize(serializer),
        }
    }
}

/// The schema is `T`'s: leniency is a reading policy, not a different shape.
impl<T: JsonSchema> JsonSchema for Lenient<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }

    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }

    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

/// A list read element by element: readable elements and unreadable ones.
pub fn split<T: Clone>(list: &[Lenient<T>]) -> (Vec<T>, Vec<(&Value, &str)>) {
    let mut readable = Vec::new();
    let mut unreadable = Vec::new();
    for item in list {
        match item {
            Lenient::Ok(t) => readable.push(t.clone()),
            Lenient::Unreadable { value, error } => unreadable.push((value, error.as_str())),
        }
    }
    (readable, unreadable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
    struct Entry {
        a: u32,
    }

    #[test]
    fn an_unreadable_element_does_not_spoil_its_list() {
        let list: Vec<Lenient<Entry>> =
            serde_json::from_value(json!([{"a": 1}, {"a": "x"}, {"b": 2}])).unwrap();
        let (ok, bad) = split(&list);
        assert_eq!(ok, vec![Entry { a: 1 }]);
        assert_eq!(bad.len(), 2);
        assert!(bad[0].1.contains("a:"), "{}", bad[0].1);
        assert!(bad[1].1.contains("missing field `a`"), "{}", bad[1].1);
        // Written back as found: nothing of another writer's data is lost by reading it.
        assert_eq!(
            serde_json::to_value(&list).unwrap(),
            json!([{"a": 1}, {"a": "x"}, {"b": 2}])
        );
    }
}
