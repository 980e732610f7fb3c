//! A minimal JSON tree for generated records. Objects are vectors of static keys and
//! strings may borrow from the word lists, so building a record costs a few dozen
//! allocations instead of serde_json's map, hash table and key string per object; that
//! is what keeps a page of 100 generated sources cheap to serve.

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;
use std::borrow::Cow;

pub(crate) enum J<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Str(Cow<'a, str>),
    Arr(Vec<J<'a>>),
    Obj(Vec<(&'static str, J<'a>)>),
}

impl J<'_> {
    /// The serde_json form, field order kept (the crate enables `preserve_order`).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

impl Serialize for J<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            J::Null => s.serialize_unit(),
            J::Bool(b) => s.serialize_bool(*b),
            J::Int(n) => s.serialize_i64(*n),
            J::Str(t) => s.serialize_str(t),
            J::Arr(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            J::Obj(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl From<bool> for J<'_> {
    fn from(b: bool) -> Self {
        J::Bool(b)
    }
}

impl From<i32> for J<'_> {
    fn from(n: i32) -> Self {
        J::Int(n.into())
    }
}

impl<'a> From<&'a str> for J<'a> {
    fn from(t: &'a str) -> Self {
        J::Str(Cow::Borrowed(t))
    }
}

impl From<String> for J<'_> {
    fn from(t: String) -> Self {
        J::Str(Cow::Owned(t))
    }
}

impl<'a, T: Into<J<'a>>> From<Option<T>> for J<'a> {
    fn from(o: Option<T>) -> Self {
        o.map_or(J::Null, Into::into)
    }
}

impl<'a> FromIterator<J<'a>> for J<'a> {
    fn from_iter<I: IntoIterator<Item = J<'a>>>(iter: I) -> Self {
        J::Arr(iter.into_iter().collect())
    }
}
