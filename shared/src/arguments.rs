//! Task arguments as Celery positional args and kwargs.
//!
//! A struct with named fields travels as kwargs, a tuple as positional
//! args, a single value as one positional arg and `()` as no arguments.
//! Decoding accepts either form for a struct: positional args are matched
//! to the struct's fields in declaration order (Python callers commonly
//! write `add.delay(2, 3)` for a task declared with keyword arguments).

use serde::de::{self, DeserializeOwned, Visitor};
use serde::{Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::Error;

/// Encodes a task's arguments as `(args, kwargs)`.
pub fn encode_arguments<A: Serialize>(
    arguments: &A,
) -> Result<(Vec<Value>, Map<String, Value>), Error> {
    let value = serde_json::to_value(arguments).map_err(|source| Error::Encode {
        what: "task arguments",
        source,
    })?;
    Ok(match value {
        Value::Object(kwargs) => (Vec::new(), kwargs),
        Value::Array(args) => (args, Map::new()),
        Value::Null => (Vec::new(), Map::new()),
        single => (vec![single], Map::new()),
    })
}

/// Decodes `(args, kwargs)` into a task's argument type, accepting kwargs
/// or positional args (or a mix) for structs with named fields.
pub fn decode_arguments<A: DeserializeOwned>(
    task: &str,
    args: Vec<Value>,
    kwargs: Map<String, Value>,
) -> Result<A, Error> {
    let fail = |reason: String| Error::Arguments {
        task: task.to_owned(),
        reason,
    };
    if let Some(fields) = struct_fields::<A>() {
        if args.len() > fields.len() {
            return Err(fail(format!(
                "takes {} arguments, {} positional given",
                fields.len(),
                args.len()
            )));
        }
        let mut named = kwargs;
        for (field, value) in fields.iter().zip(args) {
            if named.insert((*field).to_owned(), value).is_some() {
                return Err(fail(format!("got multiple values for argument `{field}`")));
            }
        }
        return serde_json::from_value(Value::Object(named)).map_err(|e| fail(e.to_string()));
    }
    if !kwargs.is_empty() {
        let names: Vec<&str> = kwargs.keys().map(String::as_str).collect();
        return Err(fail(format!(
            "takes positional arguments only, got keyword arguments {names:?}"
        )));
    }
    let single = (args.len() == 1).then(|| args[0].clone());
    let empty = args.is_empty();
    match serde_json::from_value(Value::Array(args)) {
        Ok(decoded) => Ok(decoded),
        Err(err) => {
            let fallback = match (single, empty) {
                (Some(value), _) => serde_json::from_value(value).ok(),
                (None, true) => serde_json::from_value(Value::Null).ok(),
                (None, false) => None,
            };
            fallback.ok_or_else(|| fail(err.to_string()))
        }
    }
}

/// The field names of `A` when it deserializes as a struct with named
/// fields, found by asking its `Deserialize` impl which fields it wants.
fn struct_fields<A: DeserializeOwned>() -> Option<&'static [&'static str]> {
    let mut fields = None;
    let _ = A::deserialize(FieldNames(&mut fields));
    fields.filter(|f| !f.is_empty())
}

/// A deserializer that records the fields passed to `deserialize_struct`
/// and then fails, so nothing is ever constructed.
struct FieldNames<'a>(&'a mut Option<&'static [&'static str]>);

#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("field names recorded")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Stop
    }
}

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Stop> {
        *self.0 = Some(fields);
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Add {
        x: i64,
        y: i64,
    }

    fn obj(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn a_struct_travels_as_kwargs() {
        let (args, kwargs) = encode_arguments(&Add { x: 1, y: 2 }).unwrap();
        assert!(args.is_empty());
        assert_eq!(Value::Object(kwargs), json!({"x": 1, "y": 2}));
    }

    #[test]
    fn a_tuple_travels_as_positional_args() {
        let (args, kwargs) = encode_arguments(&(1, "a")).unwrap();
        assert_eq!(args, vec![json!(1), json!("a")]);
        assert!(kwargs.is_empty());
    }

    #[test]
    fn a_struct_decodes_from_kwargs_positional_args_or_both() {
        let want = Add { x: 2, y: 3 };
        let from_kwargs: Add = decode_arguments("t", vec![], obj(json!({"x": 2, "y": 3}))).unwrap();
        let from_args: Add = decode_arguments("t", vec![json!(2), json!(3)], Map::new()).unwrap();
        let mixed: Add = decode_arguments("t", vec![json!(2)], obj(json!({"y": 3}))).unwrap();
        assert_eq!(
            (from_kwargs, from_args, mixed),
            (want, Add { x: 2, y: 3 }, Add { x: 2, y: 3 })
        );
    }

    #[test]
    fn a_tuple_decodes_from_positional_args() {
        let decoded: (i64, String) =
            decode_arguments("t", vec![json!(1), json!("a")], Map::new()).unwrap();
        assert_eq!(decoded, (1, "a".to_owned()));
    }

    #[test]
    fn single_values_and_unit_decode() {
        let n: u64 = decode_arguments("t", vec![json!(7)], Map::new()).unwrap();
        let unit: () = decode_arguments("t", vec![], Map::new()).unwrap();
        assert_eq!((n, unit), (7, ()));
    }

    #[test]
    fn wrong_types_and_counts_are_errors_that_name_the_task() {
        let wrong: Result<Add, _> =
            decode_arguments("demo.add", vec![json!("a"), json!(1)], Map::new());
        let err = wrong.unwrap_err().to_string();
        assert!(
            err.contains("demo.add") && err.contains("invalid type"),
            "{err}"
        );
        let too_many: Result<Add, _> =
            decode_arguments("demo.add", vec![json!(1), json!(2), json!(3)], Map::new());
        assert!(too_many.unwrap_err().to_string().contains("3 positional"));
        let duplicate: Result<Add, _> =
            decode_arguments("t", vec![json!(1)], obj(json!({"x": 1, "y": 2})));
        assert!(
            duplicate
                .unwrap_err()
                .to_string()
                .contains("multiple values")
        );
        let missing: Result<Add, _> = decode_arguments("t", vec![json!(1)], Map::new());
        assert!(
            missing
                .unwrap_err()
                .to_string()
                .contains("missing field `y`")
        );
    }
}
