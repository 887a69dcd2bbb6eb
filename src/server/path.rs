//! Splitting `/v2/<name>/<endpoint>` paths. A name may hold `/`, so the split is on the *last*
//! endpoint marker, as the spec advises.

/// An API path with its raw (not yet routed or validated) parts.
#[derive(Debug, PartialEq, Eq)]
pub enum ApiPath<'a> {
    Manifest { name: &'a str, reference: &'a str },
    Blob { name: &'a str, digest: &'a str },
    Tags { name: &'a str },
    Referrers { name: &'a str, digest: &'a str },
}

/// Parses the part of the path after `/v2/`.
pub fn parse(rest: &str) -> Option<ApiPath<'_>> {
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return (!name.is_empty()).then_some(ApiPath::Tags { name });
    }
    let markers = ["/manifests/", "/blobs/", "/referrers/"];
    let (at, marker) = markers
        .iter()
        .filter_map(|m| rest.rfind(m).map(|i| (i, *m)))
        .max_by_key(|(i, _)| *i)?;
    let name = &rest[..at];
    let last = &rest[at + marker.len()..];
    if name.is_empty() || last.is_empty() || last.contains('/') {
        return None;
    }
    Some(match marker {
        "/manifests/" => ApiPath::Manifest {
            name,
            reference: last,
        },
        "/blobs/" => ApiPath::Blob { name, digest: last },
        _ => ApiPath::Referrers { name, digest: last },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_the_last_marker() {
        assert_eq!(
            parse("library/nginx/manifests/latest"),
            Some(ApiPath::Manifest {
                name: "library/nginx",
                reference: "latest"
            })
        );
        assert_eq!(
            parse("ghcr.io/o/blobs/manifests/sha256:ab"),
            Some(ApiPath::Manifest {
                name: "ghcr.io/o/blobs",
                reference: "sha256:ab"
            })
        );
        assert_eq!(
            parse("a/b/blobs/sha256:00"),
            Some(ApiPath::Blob {
                name: "a/b",
                digest: "sha256:00"
            })
        );
        assert_eq!(parse("a/tags/list"), Some(ApiPath::Tags { name: "a" }));
        assert_eq!(
            parse("a/referrers/sha256:1"),
            Some(ApiPath::Referrers {
                name: "a",
                digest: "sha256:1"
            })
        );
    }

    #[test]
    fn rejects_what_is_not_an_endpoint() {
        for p in [
            "",
            "a",
            "a/manifests/",
            "/manifests/x",
            "a/blobs/uploads/",
            "a/blobs/uploads/123",
            "tags/list",
            "_catalog",
        ] {
            assert_eq!(parse(p), None, "{p}");
        }
    }
}
