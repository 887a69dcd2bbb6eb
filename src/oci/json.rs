//! JSON read the way the clients read it, or refused.
//!
//! dockerd, containerd, skopeo and podman decode manifests, indexes and image configs with Go's
//! `encoding/json`, which differs from a strict serde parse in ways an attacker can use to show
//! portcullis one document and the client another:
//!
//! - an object key fills a struct field when it equals the field's name *ignoring case*
//!   (`"Config"`, `"LAYERS"`; also `K` (U+212A, Kelvin) for `k` and `ſ` (U+017F, long s) for `s`),
//!   exact names first; serde matches names exactly and ignores the rest;
//! - a key given twice is decoded twice, so the *last* value wins (merged into the first when both
//!   are objects);
//! - invalid UTF-8 and lone surrogate escapes become U+FFFD instead of an error;
//! - `null` leaves a field as it was; a value of the wrong type is an error only once the whole
//!   document has been read (the rest is still decoded);
//! - `json.Decoder` (unlike `json.Unmarshal`) stops after the first value and ignores what follows.
//!
//! The rule here is to **refuse** every document on which the two could disagree, rather than to
//! imitate Go: [`check`] walks the raw JSON once, following the shape of the Go structs the clients
//! decode into ([`Shape`]), and fails on a key seen twice in one object (at any depth, in any
//! object, known or not), on a key that is not a field's exact name but that Go would match to it,
//! on invalid UTF-8 or escapes, on anything after the top-level value, and on nesting deeper than
//! serde_json's limit (128). A registry never writes such a document: Go's encoder (and every other
//! one that builds these documents) writes each key once, spelled as the spec spells it. After the
//! check, the typed parse (serde, exact names, see `oci::document`) sees the same fields with the
//! same values as Go; where Go would keep a zero value (`null`, or a missing field) the typed parse
//! sees `None` or refuses the document.

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

/// The shape of a Go value, as far as key matching goes.
#[derive(Debug)]
pub enum Shape {
    /// A value whose keys Go never matches to fields (`interface{}`, a string, a number, or a
    /// field neither side decodes). Its keys must still be unique.
    Any,
    /// A Go struct: its JSON field names, each with the shape of its value. Keys are matched to
    /// them case-insensitively by Go.
    Struct(&'static [(&'static str, Shape)]),
    /// A Go map: keys are taken exactly as written.
    Map(&'static Shape),
    /// A Go slice.
    List(&'static Shape),
}

/// Why a document is not read the same way by Go and by portcullis.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GoJsonError {
    #[error("not valid JSON: {0}")]
    Syntax(String),
    #[error("key {key:?} appears twice in the object at {at}")]
    Duplicate { key: String, at: String },
    #[error("key {key:?} at {at} is read by Go clients as the field {field:?}")]
    CaseVariant {
        key: String,
        field: &'static str,
        at: String,
    },
}

/// Checks that `bytes` hold one JSON value that Go decodes into `shape` exactly as an exact-name,
/// no-duplicates parse does (see the module docs). Every object is checked, however deep.
pub fn check(bytes: &[u8], shape: &'static Shape) -> Result<(), GoJsonError> {
    let found = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let walked = Walk {
        shape,
        at: &Pointer::Root,
        found: &found,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    if let Some(v) = found.into_inner() {
        return Err(v);
    }
    walked.map_err(|e| GoJsonError::Syntax(e.to_string()))
}

/// The longest key quoted in a message (keys are the upstream's, and go into logs and answers).
const MAX_SHOWN: usize = 64;

/// `key`, cut to [`MAX_SHOWN`] characters.
fn shown(key: &str) -> String {
    match key.char_indices().nth(MAX_SHOWN) {
        Some((i, _)) => format!("{}…", &key[..i]),
        None => key.to_string(),
    }
}

/// Go's case folding of an object key, made stricter: ASCII letters compare without case, and a
/// non-ASCII character counts as the ASCII letter its lower or upper case is (which covers Go's
/// `K` → `k` and `ſ` → `s`, and a few Go does not fold, such as `ı` → `i`: refusing those too is
/// harmless). Field names are ASCII.
fn fold(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    fn ascii(mut it: impl Iterator<Item = char>) -> Option<char> {
        match (it.next(), it.next()) {
            (Some(x), None) if x.is_ascii() => Some(x.to_ascii_lowercase()),
            _ => None,
        }
    }
    ascii(c.to_lowercase())
        .or_else(|| ascii(c.to_uppercase()))
        .unwrap_or(c)
}

/// Whether Go (or the stricter fold) would take `key` for the field `name`.
pub fn folds_to(key: &str, name: &str) -> bool {
    key.chars().map(fold).eq(name.chars().map(fold))
}

/// Where a value is, as a chain through the frames of the walk: written out (as `/a/0/b/`) only
/// for a message, so that deep nesting of long keys costs no memory.
enum Pointer<'a> {
    Root,
    Key(&'a Pointer<'a>, &'a str),
    Index(&'a Pointer<'a>, usize),
}

impl fmt::Display for Pointer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Pointer::Root => f.write_str("/"),
            Pointer::Key(parent, key) => write!(f, "{parent}{}/", shown(key)),
            Pointer::Index(parent, i) => write!(f, "{parent}{i}/"),
        }
    }
}

struct Walk<'a> {
    shape: &'static Shape,
    at: &'a Pointer<'a>,
    found: &'a RefCell<Option<GoJsonError>>,
}

impl Walk<'_> {
    fn fail<E: de::Error>(&self, v: GoJsonError) -> E {
        let msg = v.to_string();
        self.found.borrow_mut().get_or_insert(v);
        E::custom(msg)
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        // Keys are unescaped and checked to be UTF-8 by serde_json, as Go compares them.
        while let Some(key) = map.next_key::<String>()? {
            let child = match self.shape {
                Shape::Struct(fields) => match fields.iter().find(|(n, _)| *n == key) {
                    Some((_, s)) => s,
                    None => {
                        if let Some((field, _)) = fields.iter().find(|(n, _)| folds_to(&key, n)) {
                            return Err(self.fail(GoJsonError::CaseVariant {
                                key: shown(&key),
                                field,
                                at: self.at.to_string(),
                            }));
                        }
                        &Shape::Any
                    }
                },
                Shape::Map(values) => values,
                Shape::Any | Shape::List(_) => &Shape::Any,
            };
            if seen.contains(&key) {
                return Err(self.fail(GoJsonError::Duplicate {
                    key: shown(&key),
                    at: self.at.to_string(),
                }));
            }
            map.next_value_seed(Walk {
                shape: child,
                at: &Pointer::Key(self.at, &key),
                found: self.found,
            })?;
            seen.insert(key);
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let item = match self.shape {
            Shape::List(item) => item,
            _ => &Shape::Any,
        };
        let mut i = 0usize;
        loop {
            let walk = Walk {
                shape: item,
                at: &Pointer::Index(self.at, i),
                found: self.found,
            };
            if seq.next_element_seed(walk)?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// The keys of the top-level object of `bytes` (empty when it is not an object).
pub fn top_level_keys(bytes: &[u8]) -> HashSet<String> {
    #[derive(Default)]
    struct Keys(HashSet<String>);
    impl<'de> serde::Deserialize<'de> for Keys {
        fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Keys;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
                    let mut keys = HashSet::new();
                    while let Some(k) = map.next_key::<String>()? {
                        map.next_value::<IgnoredAny>()?;
                        keys.insert(k);
                    }
                    Ok(Keys(keys))
                }
            }
            d.deserialize_map(V)
        }
    }
    serde_json::from_slice::<Keys>(bytes)
        .map(|k| k.0)
        .unwrap_or_default()
}

// The shapes of the documents, from the Go types the clients decode into: the OCI image-spec's
// `v1.Manifest`, `v1.Index`, `v1.Descriptor`, `v1.Platform` and `v1.Image` (containerd, skopeo,
// podman), and distribution's `schema2`/`manifestlist` and moby's `image.Image` and
// `container.Config` (dockerd). A field either side knows is listed, so that a case variant of it
// is refused; unknown keys are `Any`.

const STRINGS: Shape = Shape::List(&Shape::Any);
const STRING_MAP: Shape = Shape::Map(&Shape::Any);

/// `v1.Platform` (and the manifest list's `PlatformSpec`).
const PLATFORM: Shape = Shape::Struct(&[
    ("architecture", Shape::Any),
    ("os", Shape::Any),
    ("os.version", Shape::Any),
    ("os.features", STRINGS),
    ("variant", Shape::Any),
    ("features", STRINGS),
]);

/// `v1.Descriptor` (and distribution's `Descriptor`).
const DESCRIPTOR: Shape = Shape::Struct(&[
    ("mediaType", Shape::Any),
    ("digest", Shape::Any),
    ("size", Shape::Any),
    ("urls", STRINGS),
    ("annotations", STRING_MAP),
    ("data", Shape::Any),
    ("platform", PLATFORM),
    ("artifactType", Shape::Any),
]);

/// A manifest or an index: `v1.Manifest` and `v1.Index` (distribution's `schema2` and
/// `manifestlist`) in one, since containerd reads `config`, `layers`, `fsLayers` and `manifests`
/// from either to tell which it is (`images.validateMediaType`), and each kind must not carry the
/// other's keys.
const DOCUMENT: Shape = Shape::Struct(&[
    ("schemaVersion", Shape::Any),
    ("mediaType", Shape::Any),
    ("artifactType", Shape::Any),
    ("config", DESCRIPTOR),
    ("layers", Shape::List(&DESCRIPTOR)),
    ("fsLayers", Shape::Any),
    ("manifests", Shape::List(&DESCRIPTOR)),
    ("subject", DESCRIPTOR),
    ("annotations", STRING_MAP),
]);

/// An image manifest (OCI, or Docker schema 2).
pub static MANIFEST: Shape = DOCUMENT;

/// An index (OCI, or a Docker manifest list).
pub static INDEX: Shape = DOCUMENT;

/// moby's `container.Config` together with the image-spec's `v1.ImageConfig`.
const RUN_CONFIG: Shape = Shape::Struct(&[
    ("Hostname", Shape::Any),
    ("Domainname", Shape::Any),
    ("User", Shape::Any),
    ("AttachStdin", Shape::Any),
    ("AttachStdout", Shape::Any),
    ("AttachStderr", Shape::Any),
    ("ExposedPorts", STRING_MAP),
    ("Tty", Shape::Any),
    ("OpenStdin", Shape::Any),
    ("StdinOnce", Shape::Any),
    ("Env", STRINGS),
    ("Cmd", STRINGS),
    (
        "Healthcheck",
        Shape::Struct(&[
            ("Test", STRINGS),
            ("Interval", Shape::Any),
            ("Timeout", Shape::Any),
            ("StartPeriod", Shape::Any),
            ("StartInterval", Shape::Any),
            ("Retries", Shape::Any),
        ]),
    ),
    ("ArgsEscaped", Shape::Any),
    ("Image", Shape::Any),
    ("Volumes", STRING_MAP),
    ("WorkingDir", Shape::Any),
    ("Entrypoint", STRINGS),
    ("NetworkDisabled", Shape::Any),
    ("MacAddress", Shape::Any),
    ("OnBuild", STRINGS),
    ("Labels", STRING_MAP),
    ("StopSignal", Shape::Any),
    ("StopTimeout", Shape::Any),
    ("Shell", STRINGS),
]);

/// An image config: the image-spec's `v1.Image` together with moby's `image.Image`.
pub static IMAGE_CONFIG: Shape = Shape::Struct(&[
    ("created", Shape::Any),
    ("author", Shape::Any),
    ("architecture", Shape::Any),
    ("variant", Shape::Any),
    ("os", Shape::Any),
    ("os.version", Shape::Any),
    ("os.features", STRINGS),
    ("config", RUN_CONFIG),
    (
        "rootfs",
        Shape::Struct(&[("type", Shape::Any), ("diff_ids", STRINGS)]),
    ),
    (
        "history",
        Shape::List(&Shape::Struct(&[
            ("created", Shape::Any),
            ("created_by", Shape::Any),
            ("author", Shape::Any),
            ("comment", Shape::Any),
            ("empty_layer", Shape::Any),
        ])),
    ),
    ("id", Shape::Any),
    ("parent", Shape::Any),
    ("comment", Shape::Any),
    ("container", Shape::Any),
    ("container_config", RUN_CONFIG),
    ("docker_version", Shape::Any),
    ("Size", Shape::Any),
]);

/// `manifest.json` of a `docker save` archive (moby's `tarexport.manifestItem`, read by
/// `docker load`).
pub static SAVED_MANIFEST: Shape = Shape::List(&Shape::Struct(&[
    ("Config", Shape::Any),
    ("RepoTags", STRINGS),
    ("Layers", STRINGS),
    ("Parent", Shape::Any),
    ("LayerSources", Shape::Map(&DESCRIPTOR)),
]));

#[cfg(test)]
mod tests {
    use super::*;

    fn err(doc: &str) -> GoJsonError {
        check(doc.as_bytes(), &MANIFEST).expect_err(doc)
    }

    #[test]
    fn ordinary_documents_pass() {
        let ok = [
            r#"{"schemaVersion":2,"config":{"digest":"x","size":1},"layers":[{"digest":"y"}]}"#,
            r#"  {"annotations":{"a":"1","A":"2"},"unknown":{"x":[1,2,{"y":null}]}}  "#,
            r#"{"config":{"\u0064igest":"x"}}"#,
        ];
        for doc in ok {
            assert_eq!(check(doc.as_bytes(), &MANIFEST), Ok(()), "{doc}");
        }
    }

    #[test]
    fn case_variants_of_a_field_are_refused_at_any_depth() {
        assert!(matches!(
            err(r#"{"Config":{}}"#),
            GoJsonError::CaseVariant {
                field: "config",
                ..
            }
        ));
        assert!(matches!(
            err(r#"{"LAYERS":[]}"#),
            GoJsonError::CaseVariant {
                field: "layers",
                ..
            }
        ));
        let nested = err(r#"{"layers":[{"digest":"a"},{"Digest":"b"}]}"#);
        assert_eq!(
            nested,
            GoJsonError::CaseVariant {
                key: "Digest".into(),
                field: "digest",
                at: "/layers/1/".into()
            }
        );
        assert!(matches!(
            err(r#"{"manifests":[{"platform":{"OS":"linux"}}]}"#),
            GoJsonError::CaseVariant { field: "os", .. }
        ));
        // Go folds the Kelvin sign to k and the long s to s.
        assert!(matches!(
            err("{\"layer\u{17f}\":[]}"),
            GoJsonError::CaseVariant {
                field: "layers",
                ..
            }
        ));
        let config = "{\"config\":{\"Healthchec\u{212a}\":{}}}";
        assert!(matches!(
            check(config.as_bytes(), &IMAGE_CONFIG),
            Err(GoJsonError::CaseVariant {
                field: "Healthcheck",
                ..
            })
        ));
        assert!(matches!(
            check(br#"{"config":{"entrypoint":["x"]}}"#, &IMAGE_CONFIG),
            Err(GoJsonError::CaseVariant {
                field: "Entrypoint",
                ..
            })
        ));
    }

    #[test]
    fn duplicate_keys_are_refused_anywhere() {
        assert_eq!(
            err(r#"{"config":{"digest":"a"},"config":{"digest":"b"}}"#),
            GoJsonError::Duplicate {
                key: "config".into(),
                at: "/".into()
            }
        );
        // Escaped spellings of one key are one key.
        assert!(matches!(
            err(r#"{"config":{},"\u0063onfig":{}}"#),
            GoJsonError::Duplicate { .. }
        ));
        // In maps, in unknown fields, deep down.
        assert!(matches!(
            err(r#"{"annotations":{"a":"1","a":"2"}}"#),
            GoJsonError::Duplicate { .. }
        ));
        assert!(matches!(
            err(r#"{"x":[[{"y":{"z":1,"z":2}}]]}"#),
            GoJsonError::Duplicate { .. }
        ));
    }

    #[test]
    fn what_is_not_one_clean_json_value_is_refused() {
        for doc in [
            &b"\xef\xbb\xbf{}"[..],
            b"{} {}",
            b"{}x",
            b"{\"a\":\"\xff\"}",
            b"{\"\xff\":1}",
            br#"{"a":"\ud800"}"#,
            b"{\"a\":1,}",
            b"{/*c*/}",
            b"{\"a\":\"\x01\"}",
            b"",
        ] {
            assert!(
                matches!(check(doc, &MANIFEST), Err(GoJsonError::Syntax(_))),
                "{:?}",
                String::from_utf8_lossy(doc)
            );
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(matches!(
            check(deep.as_bytes(), &MANIFEST),
            Err(GoJsonError::Syntax(_))
        ));
    }

    #[test]
    fn messages_quote_long_keys_cut_short() {
        let long = "k".repeat(10_000);
        let doc = format!(r#"{{"{long}":{{"{long}":1,"{long}":2}}}}"#);
        let e = check(doc.as_bytes(), &MANIFEST).unwrap_err().to_string();
        assert!(e.len() < 300, "{e}");
    }

    #[test]
    fn the_fold_covers_go_and_a_little_more() {
        assert!(folds_to("CoNfIg", "config"));
        assert!(folds_to("\u{212a}", "k"));
        assert!(folds_to("\u{17f}ize", "size"));
        assert!(folds_to("\u{131}d", "id"));
        assert!(!folds_to("config ", "config"));
        assert!(!folds_to("os_version", "os.version"));
        assert!(!folds_to("confi", "config"));
    }

    #[test]
    fn top_level_keys_lists_the_top_level_keys() {
        let keys = top_level_keys(br#"{"a":1,"b":{"c":2},"manifests":null}"#);
        assert_eq!(keys.len(), 3);
        assert!(keys.contains("manifests"));
        assert!(top_level_keys(b"[]").is_empty());
    }
}
