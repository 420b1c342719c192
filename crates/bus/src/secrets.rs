//! Keeping credentials out of what candlekeep shows: logs, errors, stored
//! alert firings, `candlekeep config`, `/health`.
//!
//! Two kinds of URL carry secrets:
//! - server URLs (`postgres://user:PW@host/db`, `redis://:PW@host`,
//!   `nats://user:PW@host`): the password, and query values such as
//!   `?password=` or `?token=`; [`redact_credentials`] masks those and
//!   keeps the rest, which says where the server is;
//! - webhook URLs (Slack's `/services/T…/B…/X…`, Telegram's
//!   `/bot<token>/sendMessage`, Discord's `/webhooks/<id>/<token>`, any
//!   `?key=`): the path and query are the credential; [`redact_webhook`]
//!   keeps only the scheme and host.
//!
//! [`scrub`] removes known secrets from free text, such as an error that
//! quotes the URL it failed on.

/// The mask put where a secret was.
pub const MASK: &str = "***";

/// Query keys whose values are masked in server URLs.
const SECRET_KEYS: [&str; 8] = [
    "password", "pass", "pwd", "token", "key", "secret", "api_key", "apikey",
];

/// The parts of `url`: scheme (with `://`), user info, host and port, and
/// the rest (path, query, fragment).
fn split(url: &str) -> Option<(&str, Option<&str>, &str, &str)> {
    let at = url.find("://")? + 3;
    let (scheme, rest) = url.split_at(at);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((user, host)) => Some((scheme, Some(user), host, tail)),
        None => Some((scheme, None, authority, tail)),
    }
}

/// `url` with its password and secret query values masked.
#[must_use]
pub fn redact_credentials(url: &str) -> String {
    let Some((scheme, user, host, tail)) = split(url) else {
        return url.to_owned();
    };
    let mut out = String::from(scheme);
    if let Some(user) = user {
        match user.split_once(':') {
            Some((name, _)) => {
                out.push_str(name);
                out.push(':');
                out.push_str(MASK);
            }
            None => out.push_str(user),
        }
        out.push('@');
    }
    out.push_str(host);
    let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
    out.push_str(path);
    if !query.is_empty() || tail.contains('?') {
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if SECRET_KEYS.iter().any(|s| k.eq_ignore_ascii_case(s)) => {
                    format!("{k}={MASK}")
                }
                _ => pair.to_owned(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    out
}

/// The credentials of a server URL: its password and the values of secret
/// query keys (not its host or database name).
#[must_use]
pub fn credential_secrets(url: &str) -> Vec<String> {
    let Some((_, user, _, tail)) = split(url) else {
        return Vec::new();
    };
    let mut out: Vec<String> = user
        .and_then(|u| u.split_once(':'))
        .map(|(_, password)| password.to_owned())
        .into_iter()
        .collect();
    let query = tail.split_once('?').map_or("", |(_, q)| q);
    out.extend(query.split('&').filter_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        SECRET_KEYS
            .iter()
            .any(|s| k.eq_ignore_ascii_case(s))
            .then(|| v.to_owned())
    }));
    out.retain(|s| !s.is_empty());
    out
}

/// `url` with everything after its host masked: a webhook's path and query
/// are its credential.
#[must_use]
pub fn redact_webhook(url: &str) -> String {
    let Some((scheme, _, host, tail)) = split(url) else {
        return MASK.to_owned();
    };
    if tail.is_empty() || tail == "/" {
        format!("{scheme}{host}{tail}")
    } else {
        format!("{scheme}{host}/{MASK}")
    }
}

/// The secret pieces of `url` that [`scrub`] should remove from text: its
/// password, path segments and query values (with a webhook, all of them
/// are credentials).
#[must_use]
pub fn url_secrets(url: &str) -> Vec<String> {
    let Some((_, user, _, tail)) = split(url) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some((_, password)) = user.and_then(|u| u.split_once(':')) {
        out.push(password.to_owned());
    }
    let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
    let path = path.trim_matches('/');
    if !path.is_empty() {
        out.push(path.to_owned());
    }
    out.extend(path.split('/').filter(|s| s.len() >= 8).map(str::to_owned));
    out.extend(
        query
            .split('&')
            .filter_map(|pair| pair.split_once('=').map(|(_, v)| v))
            .filter(|v| v.len() >= 4)
            .map(str::to_owned),
    );
    // Longest first, so that a whole path goes before its pieces.
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

/// `text` with every one of `secrets` (at least four characters long)
/// replaced by [`MASK`].
#[must_use]
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), MASK);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_keep_where_and_lose_the_password() {
        for (url, want) in [
            (
                "postgres://candle:S3cr3t-pw@db.local:5432/candlekeep?sslmode=disable&password=S3cr3t-pw",
                "postgres://candle:***@db.local:5432/candlekeep?sslmode=disable&password=***",
            ),
            (
                "redis://:S3cr3t-pw@127.0.0.1:6379/0",
                "redis://:***@127.0.0.1:6379/0",
            ),
            (
                "nats://user:S3cr3t-pw@nats:4222",
                "nats://user:***@nats:4222",
            ),
            ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
            ("redis://user@host", "redis://user@host"),
            ("", ""),
        ] {
            assert_eq!(redact_credentials(url), want, "{url}");
            for secret in credential_secrets(url) {
                assert_eq!(secret, "S3cr3t-pw", "{url}");
            }
        }
    }

    #[test]
    fn webhooks_keep_only_their_host() {
        assert_eq!(
            redact_webhook("https://hooks.slack.com/services/T0001/B0002/XXXXsecretXXXX"),
            "https://hooks.slack.com/***"
        );
        assert_eq!(
            redact_webhook("https://api.telegram.org/bot123456:AAE-secret/sendMessage"),
            "https://api.telegram.org/***"
        );
        assert_eq!(
            redact_webhook("https://example.com?key=abcd"),
            "https://example.com/***"
        );
        assert_eq!(
            redact_webhook("https://example.com/"),
            "https://example.com/"
        );
        assert_eq!(redact_webhook("not a url"), MASK);
    }

    #[test]
    fn text_loses_every_secret_of_a_url() {
        let url = "https://api.telegram.org/bot123456:AAE-secret/sendMessage?key=k3y-value";
        let secrets = url_secrets(url);
        let error = format!("request failed: error sending request for url ({url}): refused");
        let clean = scrub(&error, &secrets);
        for s in ["123456:AAE-secret", "k3y-value"] {
            assert!(!clean.contains(s), "{clean}");
        }
        assert!(clean.contains("refused"), "{clean}");
        assert_eq!(scrub("nothing here", &secrets), "nothing here");
    }
}
