//! The report page's Content-Security-Policy: its one inline script by
//! hash, styles inline, requests to this service only, and images from
//! this service, `data:` URLs and the avatar origins a deployment names
//! (`--avatar-origins`) — exactly what the page needs to show profile
//! images (with initials where there is none, or it fails to load or is
//! refused).

use std::fmt;
use std::str::FromStr;

/// An origin profile images may come from: `http(s)://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvatarOrigin(String);

/// Why an avatar origin is refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "avatar origin {given:?}: {why} (expected http(s)://host[:port], e.g. https://cdn.example.com)"
)]
pub struct OriginError {
    given: String,
    why: &'static str,
}

impl FromStr for AvatarOrigin {
    type Err = OriginError;

    fn from_str(given: &str) -> Result<AvatarOrigin, OriginError> {
        let refuse = |why| OriginError {
            given: given.to_owned(),
            why,
        };
        let text = given.trim();
        let (scheme, rest) = text.split_once("://").ok_or_else(|| refuse("no scheme"))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "https" && scheme != "http" {
            return Err(refuse("only http and https"));
        }
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        let host_ok = !host.is_empty()
            && !host.starts_with(['.', '-'])
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
        if !host_ok {
            return Err(refuse(
                "a host name of letters, digits, dots and dashes (no path, wildcard or user)",
            ));
        }
        if let Some(port) = port {
            if port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(refuse("a port from 1 to 65535"));
            }
        }
        let host = host.to_ascii_lowercase();
        Ok(AvatarOrigin(match port {
            Some(port) => format!("{scheme}://{host}:{port}"),
            None => format!("{scheme}://{host}"),
        }))
    }
}

impl fmt::Display for AvatarOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where the page template names the avatar origins for its script (a
/// `<meta>` outside the script, so the script's hash does not change).
const ORIGINS_META: &str = r#"<meta name="avatar-origins" content="">"#;

/// The page as served: its HTML, with the avatar origins named for its
/// script (which loads no image from elsewhere, so the browser never has to
/// refuse one), and its Content-Security-Policy.
#[derive(Debug, Clone)]
pub struct Page {
    pub html: String,
    pub policy: String,
}

impl Page {
    /// `template`: the page, with one inline `<script>` and the origins'
    /// `<meta>` (left as it is if absent).
    pub fn new(template: &str, avatar_origins: &[AvatarOrigin]) -> Page {
        let script = template
            .split_once("<script>")
            .and_then(|(_, rest)| rest.split_once("</script>"))
            .map_or("", |(script, _)| script);
        let names: Vec<&str> = avatar_origins.iter().map(|o| o.0.as_str()).collect();
        // Origins are letters, digits, '.', '-', ':' and '/' only: safe in
        // an attribute.
        let meta = format!(
            r#"<meta name="avatar-origins" content="{}">"#,
            names.join(" ")
        );
        Page {
            html: template.replacen(ORIGINS_META, &meta, 1),
            policy: policy(script, avatar_origins),
        }
    }
}

/// The policy of a page whose one inline script is `script`.
pub fn policy(script: &str, avatar_origins: &[AvatarOrigin]) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(script));
    let mut images = String::from("'self' data:");
    for origin in avatar_origins {
        images.push(' ');
        images.push_str(&origin.0);
    }
    format!(
        "default-src 'none'; script-src 'sha256-{hash}'; style-src 'unsafe-inline'; \
         connect-src 'self'; img-src {images}; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        for (given, want) in [
            ("https://cdn.example.com", "https://cdn.example.com"),
            ("HTTPS://CDN.Example.com/", "https://cdn.example.com"),
            ("http://127.0.0.1:8089", "http://127.0.0.1:8089"),
        ] {
            let origin: AvatarOrigin = given.parse().expect(given);
            assert_eq!(origin.to_string(), want);
        }
        for refused in [
            "cdn.example.com",
            "ftp://cdn.example.com",
            "https://cdn.example.com/avatars",
            "https://*.example.com",
            "https://user@cdn.example.com",
            "https://cdn.example.com:0",
            "https://cdn.example.com:99999",
            "https://",
            "https://cdn.example.com; script-src *",
            "https://cdn.example.com 'unsafe-inline'",
        ] {
            assert!(refused.parse::<AvatarOrigin>().is_err(), "{refused}");
        }
    }

    #[test]
    fn the_page_names_its_origins_outside_the_script() {
        let template =
            r#"<head><meta name="avatar-origins" content=""></head><script>go();</script>"#;
        let origins = vec!["https://cdn.example.com".parse().expect("origin")];
        let page = Page::new(template, &origins);
        assert!(page
            .html
            .contains(r#"<meta name="avatar-origins" content="https://cdn.example.com">"#));
        assert_eq!(
            page.policy,
            policy("go();", &origins),
            "the script's hash is unchanged"
        );
        assert_eq!(Page::new(template, &[]).html, template);
    }

    #[test]
    fn the_policy_names_the_script_and_exactly_the_image_sources() {
        let none = policy("let a = 1;", &[]);
        assert!(none.contains("img-src 'self' data:;"), "{none}");
        assert!(none.starts_with("default-src 'none'; script-src 'sha256-"));
        let origins: Vec<AvatarOrigin> = ["https://cdn.example.com", "http://127.0.0.1:9"]
            .iter()
            .map(|o| o.parse().expect("origin"))
            .collect();
        let with = policy("let a = 1;", &origins);
        assert!(
            with.contains("img-src 'self' data: https://cdn.example.com http://127.0.0.1:9;"),
            "{with}"
        );
        assert_ne!(
            policy("let a = 2;", &[]),
            none,
            "another script, another hash"
        );
    }
}
