//! Tag-list pagination (`n`, `last`), applied by the proxy when an upstream does not.

use bytes::Bytes;

/// The pagination a client asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub n: Option<usize>,
    pub last: Option<String>,
}

/// A page cut by the proxy: the new body and the `n=..&last=..` query of the next page, if any.
pub struct Cut {
    pub body: Bytes,
    pub next: Option<String>,
}

impl Page {
    /// The query sent upstream.
    pub fn query(&self) -> Option<String> {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        if let Some(n) = self.n {
            q.append_pair("n", &n.to_string());
        }
        if let Some(last) = &self.last {
            q.append_pair("last", last);
        }
        let q = q.finish();
        (!q.is_empty()).then_some(q)
    }

    /// Cuts `{"name":..,"tags":[..]}` to this page when the upstream sent more than it should.
    /// `None` when no pagination was asked for or the body is already a proper page.
    pub fn apply(&self, body: &[u8]) -> Option<Cut> {
        if self.n.is_none() && self.last.is_none() {
            return None;
        }
        let mut list: serde_json::Value = serde_json::from_slice(body).ok()?;
        let tags = list.get_mut("tags")?.as_array_mut()?;
        let mut names: Vec<String> = tags
            .iter()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect();
        names.sort();
        if let Some(last) = &self.last {
            names.retain(|t| t > last);
        }
        let n = self.n.unwrap_or(usize::MAX);
        let more = names.len() > n;
        names.truncate(n);
        let already = tags.len() == names.len() && !more;
        if already {
            return None;
        }
        let next = (more && n > 0).then(|| {
            let last = names.last().cloned().unwrap_or_default();
            Page {
                n: Some(n),
                last: Some(last),
            }
            .query()
            .unwrap_or_default()
        });
        *tags = names.into_iter().map(serde_json::Value::String).collect();
        Some(Cut {
            body: Bytes::from(serde_json::to_vec(&list).ok()?),
            next,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(n: Option<usize>, last: Option<&str>) -> Page {
        Page {
            n,
            last: last.map(str::to_string),
        }
    }

    const BODY: &[u8] = br#"{"name":"x","tags":["b","v1","c","a"]}"#;

    #[test]
    fn cuts_an_unpaginated_answer() {
        let cut = page(Some(2), None).apply(BODY).unwrap();
        assert_eq!(cut.body.as_ref(), br#"{"name":"x","tags":["a","b"]}"#);
        assert_eq!(cut.next.as_deref(), Some("n=2&last=b"));
        let cut = page(Some(2), Some("b")).apply(BODY).unwrap();
        assert_eq!(cut.body.as_ref(), br#"{"name":"x","tags":["c","v1"]}"#);
        assert_eq!(cut.next, None);
    }

    #[test]
    fn zero_means_an_empty_list_without_a_link() {
        let cut = page(Some(0), None).apply(BODY).unwrap();
        assert_eq!(cut.body.as_ref(), br#"{"name":"x","tags":[]}"#);
        assert_eq!(cut.next, None);
    }

    #[test]
    fn leaves_proper_pages_and_unpaginated_requests_alone() {
        assert!(page(None, None).apply(BODY).is_none());
        assert!(page(Some(2), None)
            .apply(br#"{"name":"x","tags":["a","b"]}"#)
            .is_none());
        assert!(page(Some(2), None).apply(b"not json").is_none());
    }
}
