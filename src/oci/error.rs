//! The OCI error envelope: `{"errors":[{"code":"…","message":"…","detail":…}]}`.

use serde::{Deserialize, Serialize};

/// Error codes of the distribution spec (and distribution's `UNAVAILABLE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    Unauthorized,
    Denied,
    NameUnknown,
    ManifestUnknown,
    BlobUnknown,
    NameInvalid,
    DigestInvalid,
    ManifestInvalid,
    SizeInvalid,
    #[serde(rename = "TOOMANYREQUESTS")]
    TooManyRequests,
    Unsupported,
    Unavailable,
    /// A range that the blob cannot satisfy (416). Clients treat unknown codes as `UNKNOWN`.
    RangeInvalid,
    /// A path that is not part of the API.
    NotFound,
    #[serde(other)]
    Unknown,
}

/// One entry of the envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorInfo {
    pub code: ErrorCode,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

/// The envelope every error body carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorEnvelope {
    pub errors: Vec<ErrorInfo>,
}

impl ErrorEnvelope {
    pub fn single(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorEnvelope {
            errors: vec![ErrorInfo {
                code,
                message: message.into(),
                detail: None,
            }],
        }
    }

    /// Parses an upstream's error body; `None` if it is not the envelope.
    pub fn parse(body: &[u8]) -> Option<Self> {
        serde_json::from_slice::<ErrorEnvelope>(body)
            .ok()
            .filter(|e| !e.errors.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_the_spec_spells_them() {
        let e = ErrorEnvelope::single(ErrorCode::TooManyRequests, "slow down");
        let s = serde_json::to_string(&e).unwrap();
        assert_eq!(
            s,
            r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#
        );
        let s =
            serde_json::to_string(&ErrorEnvelope::single(ErrorCode::ManifestUnknown, "")).unwrap();
        assert!(s.contains("MANIFEST_UNKNOWN"));
    }

    #[test]
    fn unknown_codes_parse_as_unknown() {
        let e =
            ErrorEnvelope::parse(br#"{"errors":[{"code":"WEIRD_THING","message":"x"}]}"#).unwrap();
        assert_eq!(e.errors[0].code, ErrorCode::Unknown);
        assert!(ErrorEnvelope::parse(b"<html>").is_none());
        assert!(ErrorEnvelope::parse(br#"{"errors":[]}"#).is_none());
    }
}
