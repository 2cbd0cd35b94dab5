//! AWS shared config and credentials files (`~/.aws/config`,
//! `~/.aws/credentials`), which object_store does not read. Static keys,
//! session token and region of one profile; the profile is `AWS_PROFILE`
//! (or `AWS_DEFAULT_PROFILE`), else `default`. Paths follow
//! `AWS_SHARED_CREDENTIALS_FILE` and `AWS_CONFIG_FILE`.

use std::collections::HashMap;
use std::path::PathBuf;

use super::params::env;

#[derive(Default, PartialEq, Eq)]
pub struct Profile {
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub region: Option<String>,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("access_key_id", &self.access_key_id.as_ref().map(|_| "…"))
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// The selected profile, from both files (credentials win over config).
pub fn load() -> Profile {
    let name = env("AWS_PROFILE")
        .or_else(|| env("AWS_DEFAULT_PROFILE"))
        .unwrap_or_else(|| "default".to_owned());
    let home = PathBuf::from(env("HOME").unwrap_or_default());
    let creds_path = env("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".aws").join("credentials"));
    let config_path = env("AWS_CONFIG_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".aws").join("config"));
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
    let creds = section(&read(creds_path), &name, false);
    let config = section(&read(config_path), &name, true);
    let get = |key: &str| creds.get(key).or_else(|| config.get(key)).cloned();
    Profile {
        access_key_id: get("aws_access_key_id"),
        secret_access_key: get("aws_secret_access_key"),
        session_token: get("aws_session_token"),
        region: get("region"),
    }
}

/// The key/value pairs of profile `name` in an INI text. In the config file
/// a profile other than `default` is headed `[profile NAME]`.
fn section(text: &str, name: &str, config_file: bool) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let header = header.trim();
            let this = if config_file && name != "default" {
                header
                    .strip_prefix("profile")
                    .is_some_and(|rest| rest.trim() == name)
            } else {
                header == name
                    || (config_file && header.strip_prefix("profile").map(str::trim) == Some(name))
            };
            inside = this;
            continue;
        }
        if !inside {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            out.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_named_section() {
        let creds = "[default]\naws_access_key_id = A\n\n[work]\naws_access_key_id=B\naws_secret_access_key = S # x\n";
        assert_eq!(section(creds, "work", false)["aws_access_key_id"], "B");
        assert_eq!(section(creds, "default", false)["aws_access_key_id"], "A");
        let config = "[default]\nregion=eu-west-1\n[profile work]\nregion = us-west-2\n";
        assert_eq!(section(config, "work", true)["region"], "us-west-2");
        assert_eq!(section(config, "default", true)["region"], "eu-west-1");
        assert!(section(config, "nope", true).is_empty());
    }
}
