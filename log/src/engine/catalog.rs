//! The durable topic catalog: replaced atomically, so a crash leaves the old or the new one.

use super::topic::TopicConfig;
use crate::error::{Error, IoContext, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// File holding the catalog inside the engine's data directory.
pub const CATALOG_FILE: &str = "catalog.json";
/// Version of the catalog file format.
pub const CATALOG_VERSION: u32 = 1;

/// A topic as recorded in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    /// Never-reused id; names the topic's directory, so a re-created topic starts fresh.
    pub id: u64,
    /// Topic name.
    pub name: String,
    /// Topic settings.
    pub config: TopicConfig,
    /// The topic's own round-robin position for keyless records (not stored).
    #[serde(skip)]
    pub(crate) round_robin: RoundRobin,
}

/// A counter for round-robin partitioning: not part of a topic's identity or its record,
/// so it compares equal to any other, and a copy starts where the original stood.
#[derive(Debug, Default)]
pub(crate) struct RoundRobin(AtomicU32);

impl RoundRobin {
    /// The next position.
    pub(crate) fn next(&self) -> u32 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

impl Clone for RoundRobin {
    fn clone(&self) -> Self {
        RoundRobin(AtomicU32::new(self.0.load(Ordering::Relaxed)))
    }
}

impl PartialEq for RoundRobin {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for RoundRobin {}

/// Every topic, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    /// Format version of the file.
    pub version: u32,
    /// Id the next created topic gets.
    pub next_topic_id: u64,
    /// Number of group coordinators (fixed when the catalog is created).
    #[serde(default = "default_coordinators")]
    pub coordinators: u32,
    /// Id the next idempotent producer gets.
    #[serde(default = "first_producer_id")]
    pub next_producer_id: u64,
    /// Topics by name.
    pub topics: BTreeMap<String, Arc<TopicMeta>>,
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Catalog {
            version: CATALOG_VERSION,
            next_topic_id: 1,
            next_producer_id: first_producer_id(),
            coordinators: default_coordinators(),
            topics: BTreeMap::new(),
        }
    }

    /// Decodes a catalog file's bytes.
    pub fn decode(bytes: &[u8], path: &Path) -> Result<Self> {
        let catalog: Catalog = serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        if catalog.version != CATALOG_VERSION {
            return Err(Error::Corrupt {
                path: path.to_path_buf(),
                reason: format!("unsupported catalog version {}", catalog.version),
            });
        }
        Ok(catalog)
    }
}

fn first_producer_id() -> u64 {
    1
}

fn default_coordinators() -> u32 {
    8
}

/// Reads and atomically replaces the catalog file.
#[derive(Debug)]
pub struct CatalogStore {
    dir: PathBuf,
}

impl CatalogStore {
    /// A store for the catalog in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        CatalogStore { dir: dir.into() }
    }

    /// Loads the catalog, or an empty one if none was ever committed.
    pub fn load(&self) -> Result<Catalog> {
        let path = self.dir.join(CATALOG_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => Catalog::decode(&bytes, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Catalog::new()),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Durably replaces the catalog: write a temporary file, fsync, rename, fsync the directory.
    pub fn commit(&self, catalog: &Catalog) -> Result<()> {
        let tmp = self.dir.join(format!("{CATALOG_FILE}.tmp"));
        let path = self.dir.join(CATALOG_FILE);
        let bytes = serde_json::to_vec_pretty(catalog).expect("catalog serializes");
        let mut f = std::fs::File::create(&tmp).at(&tmp)?;
        f.write_all(&bytes).at(&tmp)?;
        f.sync_all().at(&tmp)?;
        drop(f);
        std::fs::rename(&tmp, &path).at(&path)?;
        crate::segment::sync_dir(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let store = CatalogStore::new(dir.path());
        assert_eq!(store.load().unwrap(), Catalog::new());
        let mut c = Catalog::new();
        c.topics.insert(
            "orders".into(),
            Arc::new(TopicMeta {
                id: 1,
                name: "orders".into(),
                config: TopicConfig::default(),
                round_robin: Default::default(),
            }),
        );
        c.next_topic_id = 2;
        store.commit(&c).unwrap();
        assert_eq!(store.load().unwrap(), c);
        assert!(!dir.path().join("catalog.json.tmp").exists());
    }

    #[test]
    fn a_damaged_catalog_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CATALOG_FILE), b"{not json").unwrap();
        let err = CatalogStore::new(dir.path()).load().unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    }
}
