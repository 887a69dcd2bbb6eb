//! XMRig JSON configs: the structure, not the file name. A config has a `pools` array of objects
//! with `url` and `user`, next to XMRig's own top-level keys (`donate-level`, `randomx`, `cpu`).

use serde_json::Value;

/// What an XMRig config gives away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct XmrigConfig {
    /// `url` of the first pool that has one.
    pub url: String,
    /// Every pool `user` (wallets, usually).
    pub users: Vec<String>,
}

const XMRIG_KEYS: [&str; 6] = [
    "donate-level",
    "randomx",
    "cpu",
    "donate-over-proxy",
    "cpu-affinity",
    "opencl",
];

/// Parses `text` as an XMRig config. Old 2.x configs carry `//` comments, which JSON does not
/// allow: for those (parse failure) the key names alone decide, and no user is extracted.
pub(crate) fn parse(text: &[u8]) -> Option<XmrigConfig> {
    match serde_json::from_slice::<Value>(text) {
        Ok(value) => from_value(&value),
        Err(_) => {
            let has = |needle: &[u8]| text.windows(needle.len()).any(|w| w == needle);
            let keys = has(b"\"pools\"") && has(b"\"url\"") && has(b"\"user\"");
            let xmrig = XMRIG_KEYS
                .iter()
                .any(|k| has(format!("\"{k}\"").as_bytes()));
            (keys && xmrig).then(|| XmrigConfig {
                url: String::new(),
                users: Vec::new(),
            })
        }
    }
}

fn from_value(value: &Value) -> Option<XmrigConfig> {
    let top = value.as_object()?;
    if !XMRIG_KEYS.iter().any(|k| top.contains_key(*k)) {
        return None;
    }
    let pools = top.get("pools")?.as_array()?;
    let mut url = None;
    let mut users = Vec::new();
    for pool in pools.iter().filter_map(Value::as_object) {
        let (Some(u), Some(user)) = (
            pool.get("url").and_then(Value::as_str),
            pool.get("user").and_then(Value::as_str),
        ) else {
            continue;
        };
        url.get_or_insert_with(|| u.to_string());
        users.push(user.to_string());
    }
    url.map(|url| XmrigConfig { url, users })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upstream_default_config_is_recognised() {
        let text = br#"{"autosave": true, "donate-level": 1, "cpu": {"enabled": true},
            "randomx": {"init": -1}, "pools": [{"algo": null, "url": "donate.v2.xmrig.com:3333",
            "user": "YOUR_WALLET_ADDRESS", "pass": "x", "keepalive": false}]}"#;
        let c = parse(text).unwrap();
        assert_eq!(c.url, "donate.v2.xmrig.com:3333");
        assert_eq!(c.users, vec!["YOUR_WALLET_ADDRESS"]);
    }

    #[test]
    fn other_json_with_pools_is_not_a_miner_config() {
        assert_eq!(
            parse(br#"{"pools": [{"url": "db://x", "user": "app"}]}"#),
            None
        );
        assert_eq!(
            parse(br#"{"donate-level": 1, "pools": [{"name": "x"}]}"#),
            None
        );
        assert_eq!(parse(br#"{"donate-level": 1, "pools": "none"}"#), None);
        assert_eq!(parse(b"[1,2,3]"), None);
        assert_eq!(parse(b"\xff\xfe garbage"), None);
    }

    #[test]
    fn commented_2x_configs_are_recognised_by_their_keys() {
        let text = br#"{ "algo": "cryptonight",  // cryptonight (default) or cryptonight-lite
            "cpu-affinity": null, "pools": [ { "url": "pool.example:3333", "user": "W", "pass": "x" } ] }"#;
        assert!(parse(text).is_some());
    }
}
