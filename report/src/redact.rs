//! Removes credentials from URLs before they reach a report.
//!
//! A lake URL may carry a password (`s3://key:secret@bucket`) or a signed
//! query (`?sig=...` for an Azure SAS token). The report shows where the lake
//! is, never how to get into it: user info and every query value are replaced
//! by `***`, and fragments are dropped.

use url::Url;

/// What replaces a secret.
pub const REDACTED: &str = "***";

/// Returns `raw` with user name, password and query values replaced by
/// [`REDACTED`]. Strings that do not parse as URLs (local paths) are returned
/// unchanged unless they look like they carry user info or a query, which is
/// then cut off conservatively.
pub fn redact_url(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(url) if !url.cannot_be_a_base() || url.query().is_some() => redact_parsed(url),
        _ => redact_unparsed(raw),
    }
}

fn redact_parsed(mut url: Url) -> String {
    if !url.username().is_empty() {
        // Only fails for URLs without a host, where there is no user info.
        let _ = url.set_username(REDACTED);
    }
    if url.password().is_some() {
        let _ = url.set_password(Some(REDACTED));
    }
    if url.query().is_some() {
        let keys: Vec<String> = url.query_pairs().map(|(k, _)| k.into_owned()).collect();
        if keys.is_empty() {
            url.set_query(None);
        } else {
            let mut pairs = url.query_pairs_mut();
            pairs.clear();
            for key in &keys {
                pairs.append_pair(key, REDACTED);
            }
        }
    }
    url.set_fragment(None);
    // `query_pairs_mut` percent-encodes the `*`s; keep them readable.
    url.as_str().replace("%2A%2A%2A", REDACTED)
}

fn redact_unparsed(raw: &str) -> String {
    let mut out = raw.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find('/')
            .map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            out.replace_range(rest_start..rest_start + at, REDACTED);
        }
    }
    if let Some(q) = out.find('?') {
        out.truncate(q);
        out.push('?');
        out.push_str(REDACTED);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_and_user_are_redacted() {
        let r = redact_url("s3://AKIAEXAMPLE:s3cr3t@my-bucket/lake");
        assert_eq!(r, "s3://***:***@my-bucket/lake");
        assert!(!r.contains("s3cr3t") && !r.contains("AKIA"));
    }

    #[test]
    fn query_values_are_redacted() {
        let r = redact_url("https://acct.blob.core.windows.net/lake?sv=2024&sig=abc%2Bdef#frag");
        assert_eq!(r, "https://acct.blob.core.windows.net/lake?sv=***&sig=***");
    }

    #[test]
    fn plain_urls_and_paths_are_unchanged() {
        assert_eq!(redact_url("file:///tmp/lake"), "file:///tmp/lake");
        assert_eq!(redact_url("s3://bucket/prefix"), "s3://bucket/prefix");
        assert_eq!(redact_url("./lake"), "./lake");
        assert_eq!(redact_url("/data/lake"), "/data/lake");
    }

    #[test]
    fn unparsable_strings_are_cut_conservatively() {
        assert_eq!(redact_url("s3://user:pw@[bad/x"), "s3://***@[bad/x");
        assert_eq!(redact_url("lake dir?token=1"), "lake dir?***");
    }
}
