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

use sluice_common::error::{EngineError, Result};

/// A lake root: the object store plus the prefix every relative path hangs off.
#[derive(Clone, Debug)]
pub struct Lake {
    url: Url,
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    /// The service endpoint, for error messages (e.g. `https://acct.blob.core.windows.net`).
    endpoint: Option<String>,
    /// Secret values from the options, scrubbed from every error message.
    secrets: Secrets,
}

/// Secret option values, kept only to remove them from error messages.
#[derive(Clone, Default)]
struct Secrets(Vec<String>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets(<{} redacted>)", self.0.len())
    }
}

/// Environment variable: how many times a failed request to the lake is
/// retried (object_store's default: 10, with exponential backoff).
pub const ENV_MAX_RETRIES: &str = "SLUICE_LAKE_MAX_RETRIES";
/// Environment variable: seconds after the first attempt past which a failed
/// request is no longer retried (object_store's default: 180).
pub const ENV_RETRY_TIMEOUT_SECS: &str = "SLUICE_LAKE_RETRY_TIMEOUT_SECS";

impl Lake {
    /// Opens a lake from a URL or a local path (created if missing).
    ///
    /// Store options come from the process environment (see
    /// [`Lake::open_with_env`]). Nothing is contacted yet: an unreachable
    /// endpoint, a wrong key or a missing container is reported by the first
    /// read or write, with the URL and what to check.
    pub fn open(location: &str) -> Result<Self> {
        Self::open_with_env(location, std::env::vars().collect())
    }

    /// Opens a lake that must already exist: a local directory that does
    /// not exist is an error (a mistyped `--lake` is never created). Object
    /// store URLs open as with [`Lake::open`]. Every command that reads a
    /// lake uses this; only writers of a new lake (`datagen`, `quickstart`)
    /// use [`Lake::open`].
    pub fn open_existing(location: &str) -> Result<Self> {
        let url = to_url(location)?;
        if url.scheme() == "file" {
            let dir = url
                .to_file_path()
                .map_err(|_| EngineError::lake(url.as_str(), "not a local path"))?;
            if !dir.is_dir() {
                return Err(EngineError::lake(
                    redact(&url),
                    format!(
                        "no lake directory at {}: check --lake (or the config's `lake:`), or generate a lake with `sluice datagen --out {}`",
                        dir.display(),
                        dir.display()
                    ),
                ));
            }
        }
        Self::open(location)
    }

    /// Opens a lake with explicit store options instead of the process
    /// environment: the keys `object_store` accepts (`AZURE_STORAGE_ACCOUNT_NAME`,
    /// `AWS_REGION`, ..., case-insensitive) plus [`ENV_MAX_RETRIES`] and
    /// [`ENV_RETRY_TIMEOUT_SECS`]. Unknown keys are ignored.
    pub fn open_with_env(location: &str, env: Vec<(String, String)>) -> Result<Self> {
        let url = to_url(location)?;
        let endpoint = describe_endpoint(&url, &env);
        let secrets = secret_values(&env);
        let (store, prefix) = build_store(&url, env).map_err(|e| {
            EngineError::lake(
                redact(&url),
                scrub(
                    &format!(
                        "cannot open the object store ({e}); check the URL form (abfss://<container>@<account>.dfs.core.windows.net/<path>, az://<container>/<path>, s3://, gs://) and the credentials in the environment"
                    ),
                    &secrets,
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
            endpoint,
            secrets,
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

    /// Reads byte ranges of the object at `rel` (one result per range).
    pub async fn get_ranges(
        &self,
        rel: &str,
        ranges: &[std::ops::Range<u64>],
    ) -> Result<Vec<Bytes>> {
        self.store
            .get_ranges(&self.path(rel), ranges)
            .await
            .map_err(|e| self.err(rel, "read", e))
    }

    /// Whether an object exists at `rel`.
    pub async fn exists(&self, rel: &str) -> Result<bool> {
        match self.store.head(&self.path(rel)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.err(rel, "check", e)),
        }
    }

    /// The metadata of the object at `rel`; `Ok(None)` when it does not exist.
    pub async fn head(&self, rel: &str) -> Result<Option<ObjectMeta>> {
        match self.store.head(&self.path(rel)).await {
            Ok(m) => Ok(Some(m)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
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

    /// Names of the direct sub-directories of `rel` (one listing call,
    /// not a recursive walk), sorted.
    pub async fn list_dirs(&self, rel: &str) -> Result<Vec<String>> {
        let prefix = self.path(rel);
        let listing = self
            .store
            .list_with_delimiter(Some(&prefix))
            .await
            .map_err(|e| self.err(rel, "list", e))?;
        let mut out: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        out.sort();
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

    /// Deletes the object at `rel` (missing is fine).
    pub async fn delete(&self, rel: &str) -> Result<()> {
        match self.store.delete(&self.path(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(rel, "delete", e)),
        }
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
        let url = redact(&Url::parse(&self.table_url(rel)).unwrap_or_else(|_| self.url.clone()));
        let hint = classify(&e, &self.url, self.endpoint.as_deref());
        EngineError::lake(
            url,
            scrub(&format!("cannot {what}: {hint} ({e})"), &self.secrets),
        )
    }
}

/// What went wrong talking to the store, in words a user can act on.
fn classify(e: &object_store::Error, url: &Url, endpoint: Option<&str>) -> String {
    let text = error_chain(e);
    let lower = text.to_ascii_lowercase();
    let at = endpoint.map(|ep| format!(" at {ep}")).unwrap_or_default();
    let container = container_of(url);
    let azure = is_azure(url);
    if lower.contains("containernotfound")
        || lower.contains("nosuchbucket")
        || lower.contains("the specified container does not exist")
        || lower.contains("filesystemnotfound")
    {
        let what = if azure { "container" } else { "bucket" };
        return format!(
            "the {what} `{container}` does not exist{at}: create it (Azure: `az storage container create --name {container} --account-name <account>`; Terraform creates it in production) or fix the {what} in the lake URL"
        );
    }
    let creds = if azure {
        "AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY (or the SAS token, or the workload identity: AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE)"
    } else {
        "the credentials"
    };
    // object_store reports any 403 as PermissionDenied; the body's code tells
    // a bad signature (AuthorizationFailure, AuthenticationFailed) from a
    // missing role assignment.
    let bad_signature = lower.contains("authorizationfailure")
        || lower.contains("authenticationfailed")
        || lower.contains("signaturedoesnotmatch");
    let explicit_denial =
        lower.contains("authorizationpermissionmismatch") || lower.contains("accessdenied");
    if matches!(e, object_store::Error::PermissionDenied { .. })
        && !bad_signature
        && !explicit_denial
        && lower.contains("error performing head")
    {
        // A 403 to a HEAD request has no body, so no code says which it is.
        return format!(
            "the store refused access{at} (a HEAD request carries no reason): either it rejected the credentials (check {creds} in this process's environment) or the identity lacks permission on `{container}` (grant it `Storage Blob Data Contributor` on the storage account or container, or the equivalent read/list permissions)"
        );
    }
    if explicit_denial
        || (matches!(e, object_store::Error::PermissionDenied { .. }) && !bad_signature)
    {
        return format!(
            "the identity is authenticated but lacks permission on `{container}`{at}: grant it `Storage Blob Data Contributor` on the storage account or container (Azure) or the equivalent read/write/list/delete permissions"
        );
    }
    if lower.contains("authorizationfailure") {
        // Azure: a key or SAS that does not sign correctly, or network rules
        // (firewall, private endpoint only) refusing this client.
        return format!(
            "the store rejected the credentials or this client{at}: check {creds} in this process's environment, and the storage account's firewall and network rules"
        );
    }
    if lower.contains("authenticationfailed")
        || lower.contains("invalidauthenticationinfo")
        || lower.contains("403 forbidden")
        || lower.contains("401 unauthorized")
        || lower.contains("signaturedoesnotmatch")
        || lower.contains("invalidaccesskeyid")
        || matches!(e, object_store::Error::Unauthenticated { .. })
    {
        return format!(
            "the store rejected the credentials{at}: check {creds} in this process's environment"
        );
    }
    if lower.contains("error sending request")
        || lower.contains("connection refused")
        || lower.contains("connect error")
        || lower.contains("dns error")
        || lower.contains("failed to lookup address")
        || lower.contains("timed out")
        || lower.contains("tcp connect")
    {
        let emulator = if azure {
            "; for Azurite, that it is running and AZURITE_BLOB_STORAGE_URL points at it"
        } else {
            ""
        };
        return format!(
            "cannot reach the storage endpoint{at}: check the account name or endpoint in the lake URL and environment, the network path (firewall, private endpoint, proxy){emulator}"
        );
    }
    if matches!(e, object_store::Error::NotFound { .. }) {
        return "the object does not exist".to_string();
    }
    format!(
        "unexpected storage error{at}: check that the endpoint is reachable, the {} `{container}` exists and the credentials in the environment are valid",
        if azure { "container" } else { "bucket" }
    )
}

/// The error and all its sources, joined.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn is_azure(url: &Url) -> bool {
    matches!(url.scheme(), "abfss" | "abfs" | "az" | "azure" | "adl")
}

/// The container (Azure) or bucket named by a lake URL.
fn container_of(url: &Url) -> String {
    if is_azure(url) && !url.username().is_empty() {
        url.username().to_string()
    } else {
        url.host_str().unwrap_or_default().to_string()
    }
}

/// Where requests for this lake go, for error messages; `None` for local files.
fn describe_endpoint(url: &Url, env: &[(String, String)]) -> Option<String> {
    let get = |k: &str| {
        env.iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    if is_azure(url) {
        let emulator = get("AZURE_STORAGE_USE_EMULATOR")
            .or_else(|| get("AZURE_USE_EMULATOR"))
            .map(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes" | "on"))
            .unwrap_or(false);
        if emulator {
            // object_store reads this variable from the process environment.
            let ep = std::env::var("AZURITE_BLOB_STORAGE_URL")
                .unwrap_or_else(|_| "http://127.0.0.1:10000".to_string());
            return Some(format!("{} (Azurite)", ep.trim_end_matches('/')));
        }
        if let Some(ep) = get("AZURE_STORAGE_ENDPOINT").or_else(|| get("AZURE_ENDPOINT")) {
            return Some(ep);
        }
        let account = match url.host_str().and_then(|h| h.split_once('.')) {
            Some((a, _)) if !url.username().is_empty() => Some(a.to_string()),
            _ => get("AZURE_STORAGE_ACCOUNT_NAME"),
        };
        return Some(match account {
            Some(a) => format!("https://{a}.blob.core.windows.net"),
            None => "an Azure storage account (AZURE_STORAGE_ACCOUNT_NAME is not set)".to_string(),
        });
    }
    match url.scheme() {
        "s3" | "s3a" => Some(
            get("AWS_ENDPOINT_URL")
                .or_else(|| get("AWS_ENDPOINT"))
                .unwrap_or_else(|| format!("s3://{}", url.host_str().unwrap_or_default())),
        ),
        "gs" => Some(format!("gs://{}", url.host_str().unwrap_or_default())),
        "http" | "https" => Some(format!(
            "{}://{}",
            url.scheme(),
            url.host_str().unwrap_or_default()
        )),
        _ => None,
    }
}

/// Option keys whose values are secrets: the credential variables of the
/// cloud stores (and their short `object_store` aliases).
fn is_secret_key(k: &str) -> bool {
    let k = k.to_ascii_uppercase();
    let cloud = ["AZURE_", "AWS_", "GOOGLE_", "GCS_", "SLUICE_"]
        .iter()
        .any(|p| k.starts_with(p))
        || [
            "ACCESS_KEY",
            "ACCOUNT_KEY",
            "MASTER_KEY",
            "SAS_KEY",
            "SAS_TOKEN",
            "CLIENT_SECRET",
            "TOKEN",
            "BEARER_TOKEN",
        ]
        .contains(&k.as_str());
    let secret = (k.contains("KEY") && !k.ends_with("KEY_ID"))
        || k.contains("SECRET")
        || (k.contains("TOKEN") && !k.ends_with("_FILE"))
        || k.contains("PASSWORD")
        || k.contains("SAS");
    cloud && secret
}

fn secret_values(env: &[(String, String)]) -> Secrets {
    Secrets(
        env.iter()
            .filter(|(k, v)| is_secret_key(k) && v.len() >= 8)
            .map(|(_, v)| v.clone())
            .collect(),
    )
}

/// Removes secret values and SAS signatures from a message.
fn scrub(msg: &str, secrets: &Secrets) -> String {
    let mut out = msg.to_string();
    for s in &secrets.0 {
        out = out.replace(s.as_str(), "<redacted>");
    }
    // SAS signatures in URLs echoed by the store (`...&sig=...`).
    let mut clean = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(i) = rest.find("sig=") {
        clean.push_str(&rest[..i + 4]);
        clean.push_str("<redacted>");
        rest = &rest[i + 4..];
        let end = rest
            .find(|c: char| c == '&' || c == '"' || c == '\'' || c.is_whitespace())
            .unwrap_or(rest.len());
        rest = &rest[end..];
    }
    clean.push_str(rest);
    clean
}

/// Builds the store for a lake URL: `object_store::parse_url_opts`, with the
/// retry policy of [`ENV_MAX_RETRIES`] / [`ENV_RETRY_TIMEOUT_SECS`] applied to
/// the cloud stores.
fn build_store(
    url: &Url,
    env: Vec<(String, String)>,
) -> std::result::Result<(Box<dyn ObjectStore>, Path), object_store::Error> {
    let get = |k: &str| {
        env.iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(k))
            .and_then(|(_, v)| v.trim().parse::<u64>().ok())
    };
    let (max_retries, timeout) = (get(ENV_MAX_RETRIES), get(ENV_RETRY_TIMEOUT_SECS));
    if max_retries.is_none() && timeout.is_none() {
        return object_store::parse_url_opts(url, env);
    }
    let mut retry = object_store::RetryConfig::default();
    if let Some(n) = max_retries {
        retry.max_retries = n as usize;
    }
    if let Some(s) = timeout {
        retry.retry_timeout = std::time::Duration::from_secs(s);
    }
    let (scheme, path) = object_store::ObjectStoreScheme::parse(url)?;
    macro_rules! with_retry {
        ($builder:ty) => {{
            let b =
                env.into_iter()
                    .fold(
                        <$builder>::new().with_url(url.to_string()),
                        |b, (k, v)| match k.to_ascii_lowercase().parse() {
                            Ok(key) => b.with_config(key, v),
                            Err(_) => b,
                        },
                    );
            Box::new(b.with_retry(retry).build()?) as Box<dyn ObjectStore>
        }};
    }
    let store = match scheme {
        object_store::ObjectStoreScheme::MicrosoftAzure => {
            with_retry!(object_store::azure::MicrosoftAzureBuilder)
        }
        object_store::ObjectStoreScheme::AmazonS3 => {
            with_retry!(object_store::aws::AmazonS3Builder)
        }
        object_store::ObjectStoreScheme::GoogleCloudStorage => {
            with_retry!(object_store::gcp::GoogleCloudStorageBuilder)
        }
        _ => return object_store::parse_url_opts(url, env),
    };
    Ok((store, path))
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
        lake.put("a/b/c.txt", Bytes::from_static(b"hello"))
            .await
            .unwrap();
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

    fn generic(msg: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "MicrosoftAzure",
            source: msg.to_string().into(),
        }
    }

    #[test]
    fn storage_errors_say_what_to_check() {
        let url = Url::parse("abfss://lake@acct.dfs.core.windows.net/x/").unwrap();
        let env = vec![];
        let ep = describe_endpoint(&url, &env);
        assert_eq!(ep.as_deref(), Some("https://acct.blob.core.windows.net"));
        let c = |m: &str| classify(&generic(m), &url, ep.as_deref());
        let e = c(
            "Server returned non-2xx status code: 404 Not Found: <Code>ContainerNotFound</Code>",
        );
        assert!(
            e.contains("container `lake` does not exist")
                && e.contains("acct.blob.core.windows.net"),
            "{e}"
        );
        let e = c("403 Forbidden: <Code>AuthenticationFailed</Code>");
        assert!(
            e.contains("rejected the credentials") && e.contains("AZURE_STORAGE_ACCOUNT_KEY"),
            "{e}"
        );
        let e = c("403 Forbidden: <Code>AuthorizationPermissionMismatch</Code>");
        assert!(
            e.contains("lacks permission") && e.contains("Storage Blob Data Contributor"),
            "{e}"
        );
        let e = c("error sending request for url (https://acct.blob.core.windows.net/lake): client error (Connect)");
        assert!(
            e.contains("cannot reach") && e.contains("acct.blob.core.windows.net"),
            "{e}"
        );
    }

    #[test]
    fn secrets_are_scrubbed_from_messages() {
        let env = vec![
            (
                "AZURE_STORAGE_ACCOUNT_KEY".to_string(),
                "c2VjcmV0LWtleS12YWx1ZQ==".to_string(),
            ),
            ("AZURE_STORAGE_ACCOUNT_NAME".to_string(), "acct".to_string()),
            ("HOME".to_string(), "/home/someone".to_string()),
        ];
        let secrets = secret_values(&env);
        let m = scrub(
            "key c2VjcmV0LWtleS12YWx1ZQ== at https://acct.blob.core.windows.net/c?sv=1&sig=abc%2Fdef&se=2 in /home/someone",
            &secrets,
        );
        assert!(!m.contains("c2VjcmV0") && !m.contains("abc%2Fdef"), "{m}");
        assert!(
            m.contains("acct") && m.contains("&se=2") && m.contains("/home/someone"),
            "{m}"
        );
        assert!(!format!("{secrets:?}").contains("c2VjcmV0"));
    }

    #[test]
    fn retry_settings_build_an_azure_store_without_network() {
        let env = vec![
            ("AZURE_STORAGE_ACCOUNT_NAME".to_string(), "acct".to_string()),
            ("AZURE_STORAGE_ACCOUNT_KEY".to_string(), "a2V5".to_string()),
            (ENV_MAX_RETRIES.to_string(), "1".to_string()),
            (ENV_RETRY_TIMEOUT_SECS.to_string(), "5".to_string()),
        ];
        let lake = Lake::open_with_env("abfss://lake@acct.dfs.core.windows.net/a/b", env).unwrap();
        assert_eq!(lake.path("raw/x.parquet").as_ref(), "a/b/raw/x.parquet");
        assert_eq!(
            lake.store_url().as_str(),
            "abfss://lake@acct.dfs.core.windows.net/"
        );
    }

    #[test]
    fn redact_hides_secrets() {
        let u = Url::parse("https://user:secret@acct.blob.core.windows.net/c?sig=abc").unwrap();
        let r = redact(&u);
        assert!(!r.contains("secret") && !r.contains("abc"), "{r}");
    }
}
