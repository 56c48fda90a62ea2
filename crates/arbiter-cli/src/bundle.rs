//! Loading a bundle (policies, optional schema, entities, inventory) from files into a snapshot.

use anyhow::{anyhow, Context, Result};
use arbiter_core::InventoryDocument;
use arbiter_engine::{EngineConfig, InventoryBuilder, PolicySet, PolicySource, Schema, Snapshot};
use std::path::{Path, PathBuf};

/// Where a bundle's parts come from.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct BundleArgs {
    /// A `.cedar` policy file, or a folder whose `.cedar` files are loaded in name order.
    #[arg(long, short = 'p')]
    pub(crate) policies: PathBuf,
    /// A Cedar schema (Cedar or JSON syntax); policies, entities and requests are validated against it.
    #[arg(long, short = 's')]
    pub(crate) schema: Option<PathBuf>,
    /// Plain Cedar entities JSON (the standard format). Repeatable.
    #[arg(long, short = 'e')]
    pub(crate) entities: Vec<PathBuf>,
    /// Arbiter inventory JSON (identities with owners and lifecycles, groups, resources, signals). Repeatable.
    #[arg(long, short = 'i')]
    pub(crate) inventory: Vec<PathBuf>,
    /// Most principals in one decision, counting the subject and each delegation hop.
    #[arg(long, default_value_t = EngineConfig::default().max_delegation_hops)]
    pub(crate) max_delegation_hops: usize,
}

/// Texts of a bundle, whether read from files or embedded (the demo).
pub(crate) struct BundleTexts {
    pub(crate) policies: Vec<PolicySource>,
    pub(crate) schema: Option<(String, String)>,
    pub(crate) entities: Vec<(String, String)>,
    pub(crate) inventories: Vec<(String, String)>,
    pub(crate) config: EngineConfig,
}

impl BundleArgs {
    pub(crate) fn read(&self) -> Result<BundleTexts> {
        let schema = self
            .schema
            .as_ref()
            .map(|path| Ok::<_, anyhow::Error>((display(path), read(path)?)))
            .transpose()?;
        let read_all = |paths: &[PathBuf]| -> Result<Vec<(String, String)>> {
            paths
                .iter()
                .map(|path| Ok((display(path), read(path)?)))
                .collect()
        };
        Ok(BundleTexts {
            policies: policy_sources(&self.policies)?,
            schema,
            entities: read_all(&self.entities)?,
            inventories: read_all(&self.inventory)?,
            config: EngineConfig {
                max_delegation_hops: self.max_delegation_hops,
                ..EngineConfig::default()
            },
        })
    }
}

impl BundleTexts {
    /// The schema, parsed, with every error located.
    pub(crate) fn schema(&self) -> Result<Option<Schema>> {
        let Some((name, text)) = &self.schema else {
            return Ok(None);
        };
        Schema::parse(name, text).map(Some).map_err(|errors| {
            anyhow!(
                "invalid schema:\n{}",
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })
    }

    pub(crate) fn load(self) -> Result<Snapshot> {
        let schema = self.schema()?;
        let policies = PolicySet::compile(self.policies, schema.as_ref(), 1)
            .map_err(|err| anyhow!("invalid policies:\n{err}"))?;
        let mut builder = InventoryBuilder::new();
        for (name, text) in &self.entities {
            let json =
                serde_json::from_str(text).with_context(|| format!("{name}: invalid JSON"))?;
            builder
                .add_cedar_entities(json)
                .with_context(|| format!("{name}: invalid Cedar entities"))?;
        }
        for (name, text) in &self.inventories {
            let document: InventoryDocument =
                serde_json::from_str(text).with_context(|| format!("{name}: invalid inventory"))?;
            builder
                .add_document(&document)
                .with_context(|| format!("{name}: invalid inventory"))?;
        }
        let inventory = builder
            .build(schema.as_ref())
            .map_err(|err| anyhow!("invalid entities: {err}"))?;
        Ok(Snapshot::new(policies, inventory, schema, self.config))
    }
}

fn policy_sources(path: &Path) -> Result<Vec<PolicySource>> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot read folder `{}`", path.display()))?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|file| file.extension().is_some_and(|ext| ext == "cedar"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(anyhow!("no `.cedar` files in `{}`", path.display()));
        }
        files
            .iter()
            .map(|file| {
                Ok(PolicySource {
                    name: display(file),
                    text: read(file)?,
                })
            })
            .collect()
    } else {
        Ok(vec![PolicySource {
            name: display(path),
            text: read(path)?,
        }])
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))
}

fn display(path: &Path) -> String {
    path.display().to_string()
}
