//! Bearer-token authorisation: which permissions a connection has on which topics.

use super::config::{AuthConfig, Permission, TokenConfig};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wildmatch::WildMatch;

/// File in the data dir holding the generated admin token.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// What one authenticated connection may do.
#[derive(Debug)]
pub struct Grant {
    permissions: HashSet<Permission>,
    topics: Vec<WildMatch>,
}

impl Grant {
    fn from_config(t: &TokenConfig) -> Grant {
        Grant {
            permissions: t.permissions.iter().copied().collect(),
            topics: t.topics.iter().map(|p| WildMatch::new(p)).collect(),
        }
    }

    fn everything() -> Grant {
        Grant {
            permissions: [Permission::Produce, Permission::Consume, Permission::Admin]
                .into_iter()
                .collect(),
            topics: vec![WildMatch::new("*")],
        }
    }

    /// Whether `permission` is granted on `topic`.
    pub fn allows(&self, permission: Permission, topic: &str) -> bool {
        self.permissions.contains(&permission) && self.topics.iter().any(|p| p.matches(topic))
    }

    /// Whether any permission is granted on `topic` (so it may be listed and described).
    pub fn can_see(&self, topic: &str) -> bool {
        !self.permissions.is_empty() && self.topics.iter().any(|p| p.matches(topic))
    }

    /// Whether `permission` is granted on any topic.
    pub fn has(&self, permission: Permission) -> bool {
        self.permissions.contains(&permission)
    }
}

/// The token table, built once at start.
#[derive(Debug)]
pub struct Auth {
    tokens: HashMap<String, Arc<Grant>>,
    anonymous: Option<Arc<Grant>>,
}

impl Auth {
    /// Builds the table from the config.
    pub fn new(config: &AuthConfig) -> Auth {
        Auth {
            tokens: config
                .tokens
                .iter()
                .map(|t| (t.token.clone(), Arc::new(Grant::from_config(t))))
                .collect(),
            anonymous: config
                .allow_anonymous
                .then(|| Arc::new(Grant::everything())),
        }
    }

    /// The grant for a HELLO's token (empty for none); `None` means refused.
    pub fn authenticate(&self, token: &str) -> Option<Arc<Grant>> {
        if token.is_empty() {
            return self.anonymous.clone();
        }
        self.tokens.get(token).cloned()
    }

    /// Adds an all-powerful token (the generated admin token).
    pub fn add_admin(&mut self, token: String) {
        self.tokens.insert(token, Arc::new(Grant::everything()));
    }
}

/// Reads the admin token from the data dir, creating it (mode 0600) on first start.
pub fn ensure_admin_token(data_dir: &Path) -> std::io::Result<(PathBuf, String)> {
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok((path, t.trim().to_owned())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(data_dir)?;
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let tmp = path.with_extension("tmp");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        writeln!(f, "{token}")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    Ok((path, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(t: &str, perms: &[Permission], topics: &[&str]) -> TokenConfig {
        TokenConfig {
            token: t.into(),
            permissions: perms.to_vec(),
            topics: topics.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn tokens_grant_permissions_on_matching_topics_only() {
        let auth = Auth::new(&AuthConfig {
            allow_anonymous: false,
            tokens: vec![
                token("p", &[Permission::Produce], &["orders-*"]),
                token("a", &[Permission::Admin, Permission::Consume], &["*"]),
            ],
        });
        assert!(
            auth.authenticate("").is_none(),
            "anonymous is off by default"
        );
        assert!(auth.authenticate("nope").is_none());
        let p = auth.authenticate("p").unwrap();
        assert!(p.allows(Permission::Produce, "orders-eu"));
        assert!(!p.allows(Permission::Produce, "payments"));
        assert!(!p.allows(Permission::Consume, "orders-eu"));
        let a = auth.authenticate("a").unwrap();
        assert!(a.allows(Permission::Admin, "anything") && !a.has(Permission::Produce));
    }

    #[test]
    fn anonymous_only_when_enabled_and_admin_token_is_stable() {
        let auth = Auth::new(&AuthConfig {
            allow_anonymous: true,
            tokens: vec![],
        });
        assert!(
            auth.authenticate("")
                .unwrap()
                .allows(Permission::Admin, "t")
        );
        let dir = tempfile::tempdir().unwrap();
        let (path, t1) = ensure_admin_token(dir.path()).unwrap();
        let (_, t2) = ensure_admin_token(dir.path()).unwrap();
        assert_eq!(t1, t2);
        assert_eq!(t1.len(), 64);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
