//! Secrets out of everything printed. [`redact`] masks the secrets of a connection string
//! wherever one is formatted into a message; [`scrub`] is the last line of defence: it masks
//! every secret [`register`]ed at start-up in whatever text reaches a log line or an error
//! message (a driver's error may quote the string it was given).

use std::borrow::Cow;
use std::sync::RwLock;

const MASK: &str = "***";
/// Parameters whose value is a secret, in a URL query or a key=value conninfo.
const SECRET_KEYS: [&str; 2] = ["password", "sslpassword"];
/// Shorter secrets are not scrubbed from free text (they would mask ordinary words).
const MIN_SCRUBBED_LEN: usize = 4;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// `s` (a PostgreSQL URL or key=value conninfo, or a Redis URL) with its secrets masked: the
/// password of a URL's userinfo, and every `password=` or `sslpassword=` parameter, quoted or
/// not. The userinfo runs to the last `@`, so an unencoded `@` inside a password is masked
/// with it (a query value holding an `@` over-masks, which is safe).
pub fn redact(s: &str) -> String {
    let mut out = match userinfo_password(s) {
        Some((start, end)) => format!("{}{MASK}{}", &s[..start], &s[end..]),
        None => s.to_owned(),
    };
    for key in SECRET_KEYS {
        let mut from = 0;
        while let Some((start, end)) = param_value(&out, key, from) {
            out.replace_range(start..end, MASK);
            from = start + MASK.len();
        }
    }
    out
}

/// Remember the secrets of a connection string, raw and percent-decoded, for [`scrub`].
pub fn register(connection: &str) {
    let mut found = Vec::new();
    if let Some((start, end)) = userinfo_password(connection) {
        found.push(connection[start..end].to_owned());
    }
    for key in SECRET_KEYS {
        let mut from = 0;
        while let Some((start, end)) = param_value(connection, key, from) {
            found.push(unquote(&connection[start..end]));
            from = end;
        }
    }
    let decoded: Vec<String> = found.iter().map(|s| percent_decode(s)).collect();
    let mut secrets = SECRETS.write().expect("secret registry");
    for secret in found.into_iter().chain(decoded) {
        if secret.len() >= MIN_SCRUBBED_LEN && !secrets.contains(&secret) {
            secrets.push(secret);
        }
    }
}

/// `text` with every registered secret masked.
pub fn scrub(text: &str) -> Cow<'_, str> {
    let secrets = SECRETS.read().expect("secret registry");
    if !secrets.iter().any(|s| text.contains(s.as_str())) {
        return Cow::Borrowed(text);
    }
    let mut out = text.to_owned();
    for secret in secrets.iter() {
        out = out.replace(secret.as_str(), MASK);
    }
    Cow::Owned(out)
}

/// Byte range of the password in `scheme://user:password@host…`.
fn userinfo_password(s: &str) -> Option<(usize, usize)> {
    let start = s.find("://")? + 3;
    let at = start + s[start..].rfind('@')?;
    let colon = start + s[start..at].find(':')?;
    (colon + 1 < at).then_some((colon + 1, at))
}

/// Byte range of the first value of `key=` at or after `from` (the key at the start, or after
/// whitespace, `?` or `&`).
fn param_value(s: &str, key: &str, mut from: usize) -> Option<(usize, usize)> {
    let pattern = format!("{key}=");
    while let Some(found) = s[from..].find(&pattern) {
        let at = from + found;
        let boundary = s[..at].chars().next_back().is_none_or(|c| c.is_whitespace() || c == '?' || c == '&');
        if boundary {
            let start = at + pattern.len();
            return Some((start, start + value_len(&s[start..])));
        }
        from = at + pattern.len();
    }
    None
}

/// Length of a parameter value: a single-quoted one (with `\'` escapes) to its closing
/// quote, else up to whitespace, `&` or `#`.
fn value_len(v: &str) -> usize {
    if let Some(quoted) = v.strip_prefix('\'') {
        let mut escaped = false;
        for (i, c) in quoted.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '\'' if !escaped => return i + 2,
                _ => escaped = false,
            }
        }
        return v.len();
    }
    v.find(|c: char| c.is_whitespace() || c == '&' || c == '#').unwrap_or(v.len())
}

fn unquote(v: &str) -> String {
    match v.strip_prefix('\'').and_then(|q| q.strip_suffix('\'')) {
        Some(inner) => inner.replace("\\'", "'").replace("\\\\", "\\"),
        None => v.to_owned(),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_of_password_is_masked() {
        let cases = [
            ("postgres://u:s3cret@db:5432/x", "postgres://u:***@db:5432/x"),
            ("postgres://u:p@ss@db/x", "postgres://u:***@db/x"),
            ("postgres://u@db/x?sslmode=require&password=s3cret", "postgres://u@db/x?sslmode=require&password=***"),
            ("postgres://u@db/x?password=s3cret&sslmode=require", "postgres://u@db/x?password=***&sslmode=require"),
            ("host=db user=u password=s3cret dbname=x", "host=db user=u password=*** dbname=x"),
            ("host=db password='s3 cr\\'et' dbname=x", "host=db password=*** dbname=x"),
            ("host=db sslpassword=keypw password=s3cret", "host=db sslpassword=*** password=***"),
            ("x?password=one&password=two", "x?password=***&password=***"),
            ("redis://:s3cret@cache:6379", "redis://:***@cache:6379"),
            ("rediss://user:s3cret@cache:6380/0", "rediss://user:***@cache:6380/0"),
            ("redis://cache:6379", "redis://cache:6379"),
            ("postgres://u@db/x", "postgres://u@db/x"),
        ];
        for (input, redacted) in cases {
            assert_eq!(redact(input), redacted, "{input}");
        }
    }

    #[test]
    fn registered_secrets_are_scrubbed_raw_and_decoded() {
        register("postgres://u:pa%40ss%2Fword@db/x");
        register("host=db password='quoted secret'");
        let text = "failed for pa%40ss%2Fword, pa@ss/word and quoted secret; short: ab";
        assert_eq!(scrub(text), "failed for ***, *** and ***; short: ab");
        assert!(matches!(scrub("nothing here"), Cow::Borrowed(_)));
    }
}
