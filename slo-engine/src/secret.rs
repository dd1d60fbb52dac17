//! Secrets in configuration, and keeping them out of logs and pages.
//!
//! Any value that can hold a secret (webhook and Alertmanager URLs, ingest
//! tokens, token digests, an SLO's notification target) may be written as
//! `${env:NAME}`, read from the environment variable `NAME`, or as
//! `${file:/path}`, read from that file with one trailing newline removed
//! (the form Docker and Kubernetes secrets take). Anything else is the value
//! itself. Errors name the variable or file, never a value.
//!
//! Webhook URLs carry their credential in the path or query (Slack, Teams,
//! PagerDuty), so wherever one is shown (log lines, delivery errors, the
//! incident timeline) only [`redact_url`]'s scheme and host appear.

use std::borrow::Cow;

/// A secret reference that cannot be resolved.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SecretError {
    /// `${env:NAME}` with `NAME` unset or not UTF-8.
    #[error("environment variable {0} (named by ${{env:{0}}}) is not set")]
    MissingEnv(String),
    /// `${file:PATH}` that cannot be read.
    #[error("cannot read the secret file {path} (named by ${{file:...}}): {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// `${...}` of another kind.
    #[error("unknown secret reference {0:?}: use ${{env:NAME}} or ${{file:/path}}")]
    Unknown(String),
}

/// Resolves `value` if it is a `${env:NAME}` or `${file:PATH}` reference.
pub fn resolve(value: &str) -> Result<Cow<'_, str>, SecretError> {
    let Some(inner) = value
        .trim()
        .strip_prefix("${")
        .and_then(|v| v.strip_suffix('}'))
    else {
        return Ok(Cow::Borrowed(value));
    };
    if let Some(name) = inner.strip_prefix("env:") {
        return std::env::var(name)
            .map(Cow::Owned)
            .map_err(|_| SecretError::MissingEnv(name.to_string()));
    }
    if let Some(path) = inner.strip_prefix("file:") {
        let text = std::fs::read_to_string(path).map_err(|e| SecretError::File {
            path: path.to_string(),
            reason: e.to_string(),
        })?;
        let text = text.strip_suffix('\n').unwrap_or(&text);
        let text = text.strip_suffix('\r').unwrap_or(text);
        return Ok(Cow::Owned(text.to_string()));
    }
    // Only the kind is echoed: the rest may be a secret typed in by mistake.
    let kind = inner.split(':').next().unwrap_or_default();
    Err(SecretError::Unknown(format!("${{{kind}:...}}")))
}

/// Resolves every value of `values` in place; the error names which one.
pub fn resolve_all(what: &str, values: &mut [String]) -> Result<(), String> {
    for (i, v) in values.iter_mut().enumerate() {
        match resolve(v) {
            Ok(Cow::Borrowed(_)) => {}
            Ok(Cow::Owned(s)) => *v = s,
            Err(e) => return Err(format!("{what}[{i}]: {e}")),
        }
    }
    Ok(())
}

/// A URL as it may be shown: scheme and host (with port) only, without
/// user info, path, query or fragment, which may hold a credential.
/// `https://hooks.example.com/services/T0/B0/XYZ` becomes
/// `https://hooks.example.com/…`.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s, r),
        None => return "<url>".to_string(),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    let hidden = authority.len() < rest.len() && rest[authority.len()..] != *"/";
    format!(
        "{scheme}://{host}{}",
        if hidden || host.len() < authority.len() {
            "/…"
        } else {
            ""
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_resolve_from_env_and_files() {
        assert_eq!(resolve("https://x/y").unwrap(), "https://x/y");
        // PATH is set wherever tests run.
        let path = std::env::var("PATH").unwrap();
        assert_eq!(resolve("${env:PATH}").unwrap(), path);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("hook");
        std::fs::write(&f, "https://h/from-file\n").unwrap();
        assert_eq!(
            resolve(&format!("${{file:{}}}", f.display())).unwrap(),
            "https://h/from-file"
        );
        let e = resolve("${env:BW_SECRET_TEST_UNSET}").unwrap_err();
        assert_eq!(e, SecretError::MissingEnv("BW_SECRET_TEST_UNSET".into()));
        let e = resolve("${file:/nonexistent/bw}").unwrap_err().to_string();
        assert!(e.contains("/nonexistent/bw"), "{e}");
        let e = resolve("${vault:topsecret}").unwrap_err().to_string();
        assert!(e.contains("vault") && !e.contains("topsecret"), "{e}");

        let mut v = vec!["plain".to_string(), format!(" ${{file:{}}}", f.display())];
        resolve_all("slo.webhook_urls", &mut v).unwrap();
        assert_eq!(v, ["plain", "https://h/from-file"]);
        let mut v = vec!["${env:BW_SECRET_TEST_UNSET}".to_string()];
        let e = resolve_all("slo.webhook_urls", &mut v).unwrap_err();
        assert!(e.starts_with("slo.webhook_urls[0]: "), "{e}");
    }

    #[test]
    fn urls_are_shown_without_credentials() {
        assert_eq!(
            redact_url("https://hooks.slack.com/services/T0/B0/XYZ"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            redact_url("http://user:pw@am.internal:9093"),
            "http://am.internal:9093/…"
        );
        assert_eq!(
            redact_url("http://127.0.0.1:9093/"),
            "http://127.0.0.1:9093"
        );
        assert_eq!(redact_url("http://h?token=abc"), "http://h/…");
        assert_eq!(redact_url("not a url"), "<url>");
    }
}
