//! The lake: one abstraction over `object_store` for every read and write.
//!
//! A lake is addressed by a URL: a plain path or `file://` (default),
//! `abfss://<container>@<account>.dfs.core.windows.net/<path>` or
//! `az://<container>/<path>` (Azure; Azurite with
//! `AZURE_STORAGE_USE_EMULATOR=true`), `s3://` and `gs://`. Credentials come
//! only from the environment (the standard `AZURE_*`, `AWS_*`, `GOOGLE_*`
//! variables, a Kubernetes Secret mounted as env, or workload identity), never
//! from the YAML. Error messages carry the URL, never a secret.

use std::sync::Arc;

use bytes::Bytes;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use url::Url;

use crate::error::{EngineError, Result};

/// A lake root: the object store plus the prefix every relative path hangs off.
#[derive(Clone, Debug)]
pub struct Lake {
    url: Url,
    store: Arc<dyn ObjectStore>,
    prefix: Path,
}

impl Lake {
    /// Opens a lake from a URL or a local path (created if missing).
    pub fn open(location: &str) -> Result<Self> {
        let url = to_url(location)?;
        let env: Vec<(String, String)> = std::env::vars().collect();
        let (store, prefix) = object_store::parse_url_opts(&url, env).map_err(|e| {
            EngineError::lake(
                redact(&url),
                format!(
                    "cannot open the object store ({e}); check the URL form and the credentials in the environment"
                ),
            )
        })?;
        if url.scheme() == "file" {
            let dir = url
                .to_file_path()
                .map_err(|_| EngineError::lake(url.as_str(), "not a local path"))?;
            std::fs::create_dir_all(&dir).map_err(|e| EngineError::io(&dir, e))?;
        }
        Ok(Self {
            url,
            store: Arc::from(store),
            prefix,
        })
    }

    /// The lake's root URL (ends with `/`).
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The underlying object store.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.store)
    }

    /// The object path of `rel` (a `/`-separated path relative to the root).
    pub fn path(&self, rel: &str) -> Path {
        let joined = format!(
            "{}/{}",
            self.prefix.as_ref(),
            rel.trim_start_matches('/').trim_end_matches('/')
        );
        Path::from(joined.trim_start_matches('/'))
    }

    /// The full URL of `rel`, as DataFusion's listing tables expect it. A
    /// trailing `/` in `rel` is kept (directory semantics).
    pub fn table_url(&self, rel: &str) -> String {
        let mut u = self.url.to_string();
        if !u.ends_with('/') {
            u.push('/');
        }
        u.push_str(rel.trim_start_matches('/'));
        u
    }

    /// The URL of the store's root (scheme + authority), the key DataFusion
    /// uses to find the object store.
    pub fn store_url(&self) -> Url {
        let mut u = self.url.clone();
        u.set_path("/");
        u.set_query(None);
        u
    }

    /// Makes the lake's store known to a DataFusion session.
    pub fn register(&self, ctx: &SessionContext) {
        if self.url.scheme() != "file" {
            ctx.register_object_store(&self.store_url(), self.store());
        }
    }

    /// Writes `bytes` to `rel` (one PUT: atomic per object on every store).
    pub async fn put(&self, rel: &str, bytes: Bytes) -> Result<()> {
        self.store
            .put(&self.path(rel), PutPayload::from_bytes(bytes))
            .await
            .map_err(|e| self.err(rel, "write", e))?;
        Ok(())
    }

    /// Reads the whole object at `rel`.
    pub async fn get(&self, rel: &str) -> Result<Bytes> {
        let r = self
            .store
            .get(&self.path(rel))
            .await
            .map_err(|e| self.err(rel, "read", e))?;
        r.bytes().await.map_err(|e| self.err(rel, "read", e))
    }

    /// Whether an object exists at `rel`.
    pub async fn exists(&self, rel: &str) -> Result<bool> {
        match self.store.head(&self.path(rel)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.err(rel, "check", e)),
        }
    }

    /// Lists every object under the directory `rel`, sorted by path.
    pub async fn list(&self, rel: &str) -> Result<Vec<ObjectMeta>> {
        let prefix = self.path(rel);
        let mut out: Vec<ObjectMeta> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| self.err(rel, "list", e))?;
        out.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(out)
    }

    /// The path of `location` relative to the lake root.
    pub fn relative(&self, location: &Path) -> String {
        let full = location.as_ref();
        let root = self.prefix.as_ref();
        full.strip_prefix(root)
            .unwrap_or(full)
            .trim_start_matches('/')
            .to_string()
    }

    /// Deletes every object under `rel` (used to clean abandoned attempts).
    pub async fn delete_prefix(&self, rel: &str) -> Result<()> {
        for meta in self.list(rel).await? {
            self.store
                .delete(&meta.location)
                .await
                .map_err(|e| self.err(rel, "delete", e))?;
        }
        Ok(())
    }

    fn err(&self, rel: &str, what: &str, e: object_store::Error) -> EngineError {
        let hint = match &e {
            object_store::Error::NotFound { .. } => "the object does not exist",
            object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
                "check the credentials in the environment and the identity's permissions on the container"
            }
            _ => "check that the endpoint is reachable and the container exists",
        };
        EngineError::lake(
            redact(&Url::parse(&self.table_url(rel)).unwrap_or_else(|_| self.url.clone())),
            format!("cannot {what}: {e}; {hint}"),
        )
    }
}

/// Turns a plain path or URL into a URL with a trailing slash.
fn to_url(location: &str) -> Result<Url> {
    let looks_like_url = location.contains("://");
    let mut url = if looks_like_url {
        Url::parse(location)
            .map_err(|e| EngineError::lake(location, format!("not a valid URL: {e}")))?
    } else {
        let p = std::path::Path::new(location);
        let abs = if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| EngineError::io(".", e))?
                .join(p)
        };
        Url::from_directory_path(&abs)
            .map_err(|_| EngineError::lake(location, "cannot turn this path into a URL"))?
    };
    if !url.path().ends_with('/') {
        let p = format!("{}/", url.path());
        url.set_path(&p);
    }
    match url.scheme() {
        "file" | "abfss" | "abfs" | "az" | "azure" | "s3" | "s3a" | "gs" | "memory" | "http" | "https" => Ok(url),
        other => Err(EngineError::lake(
            location,
            format!("unsupported scheme `{other}`; use a path, file://, abfss://, az://, s3:// or gs://"),
        )),
    }
}

/// A URL safe to print: user info and query (SAS tokens) removed.
pub fn redact(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_password(None);
    if u.query().is_some() {
        u.set_query(Some("<redacted>"));
    }
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_put_get_list_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
        lake.put("a/b/c.txt", Bytes::from_static(b"hello")).await.unwrap();
        assert_eq!(lake.get("a/b/c.txt").await.unwrap().as_ref(), b"hello");
        assert!(lake.exists("a/b/c.txt").await.unwrap());
        assert!(!lake.exists("a/b/d.txt").await.unwrap());
        let listed = lake.list("a").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(lake.relative(&listed[0].location), "a/b/c.txt");
        assert!(dir.path().join("a/b/c.txt").exists());
        lake.delete_prefix("a").await.unwrap();
        assert!(!lake.exists("a/b/c.txt").await.unwrap());
    }

    #[test]
    fn table_url_joins_paths() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
        let u = lake.table_url("raw/samples/");
        assert!(u.starts_with("file:///"));
        assert!(u.ends_with("/raw/samples/"));
    }

    #[test]
    fn unsupported_scheme_is_named() {
        let e = Lake::open("ftp://host/x").unwrap_err().to_string();
        assert!(e.contains("ftp"), "{e}");
    }

    #[test]
    fn redact_hides_secrets() {
        let u = Url::parse("https://user:secret@acct.blob.core.windows.net/c?sig=abc").unwrap();
        let r = redact(&u);
        assert!(!r.contains("secret") && !r.contains("abc"), "{r}");
    }
}
