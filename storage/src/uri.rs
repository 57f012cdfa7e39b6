//! Parsing storage directory URIs into a backend and its root.

use crate::error::StorageError;

/// Where a storage directory lives, as parsed from its URI. Roots are absolute and end with
/// `/` (OpenDAL's convention); `uri` is the canonical URI without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    /// `file:///abs/path`
    Fs { uri: String, root: String },
    /// `s3://bucket[/prefix]`
    S3 { uri: String, bucket: String, root: String },
    /// `hdfs://namenode[:port][/path]`
    Hdfs { uri: String, name_node: String, root: String },
    /// `swift://container[/prefix]`
    Swift { uri: String, container: String, root: String },
}

impl Location {
    pub(crate) fn uri(&self) -> &str {
        match self {
            Location::Fs { uri, .. }
            | Location::S3 { uri, .. }
            | Location::Hdfs { uri, .. }
            | Location::Swift { uri, .. } => uri,
        }
    }
}

/// Checks a storage URI without touching any backend: `Ok(canonical URI)` (no trailing
/// slash, no doubled slashes) when `uri` is `file:///abs/path`, `s3://bucket[/prefix]`,
/// `hdfs://namenode[:port][/path]` or `swift://container[/prefix]` with no `.` or `..`
/// segment; otherwise the reason (without the URI itself, so callers can quote an excerpt).
/// Whether the scheme's feature is compiled in is checked only by [`crate::StorageDir::open`].
pub fn check_uri(uri: &str) -> Result<String, String> {
    match parse(uri) {
        Ok(loc) => Ok(loc.uri().to_string()),
        Err(StorageError::InvalidUri { reason, .. }) => Err(reason),
        Err(other) => Err(other.to_string()),
    }
}

/// Parses `file:///abs/path`, `s3://bucket/prefix`, `hdfs://namenode:port/path` and
/// `swift://container/prefix`.
pub(crate) fn parse(uri: &str) -> Result<Location, StorageError> {
    let bad = |reason: String| StorageError::InvalidUri { uri: uri.to_string(), reason };
    if uri.trim() != uri || uri.is_empty() {
        return Err(bad("empty or surrounded by whitespace".into()));
    }
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err(bad("no scheme (expected <scheme>://...)".into()));
    };
    if let Some(c) = rest.chars().find(|c| matches!(c, '?' | '#' | '\\') || c.is_whitespace() || c.is_control()) {
        return Err(bad(format!("character {c:?} is not allowed")));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let segments = path_segments(path).map_err(&bad)?;
    let root = if segments.is_empty() { "/".to_string() } else { format!("/{}/", segments.join("/")) };
    let canonical = |authority: &str| {
        let mut u = format!("{scheme}://{authority}");
        if !segments.is_empty() {
            u.push('/');
            u.push_str(&segments.join("/"));
        }
        u
    };
    match scheme {
        "file" => {
            if !authority.is_empty() && authority != "localhost" {
                return Err(bad(format!("a file URI has no host (found {authority:?}); write file:///absolute/path")));
            }
            if segments.is_empty() {
                return Err(bad("the storage directory cannot be the filesystem root".into()));
            }
            let uri = format!("file://{root}");
            Ok(Location::Fs { uri: uri.trim_end_matches('/').to_string(), root })
        }
        "s3" => {
            check_name(authority, "bucket").map_err(&bad)?;
            Ok(Location::S3 { uri: canonical(authority), bucket: authority.to_string(), root })
        }
        "hdfs" => {
            if authority.is_empty() {
                return Err(bad("no namenode (expected hdfs://namenode[:port][/path])".into()));
            }
            let (host, port) = match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            };
            check_name(host, "namenode host").map_err(&bad)?;
            if let Some(p) = port {
                if p.parse::<u16>().map_or(true, |p| p == 0) {
                    return Err(bad(format!("namenode port {p:?} is not a number in 1..=65535")));
                }
            }
            Ok(Location::Hdfs { uri: canonical(authority), name_node: format!("hdfs://{authority}"), root })
        }
        "swift" => {
            check_name(authority, "container").map_err(&bad)?;
            Ok(Location::Swift { uri: canonical(authority), container: authority.to_string(), root })
        }
        other => Err(bad(format!("unknown scheme {other:?}"))),
    }
}

/// Splits an absolute path into its segments; rejects `.` and `..` (empty segments from
/// doubled or trailing slashes are dropped).
fn path_segments(path: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" => {}
            "." | ".." => return Err(format!("path segment {seg:?} is not allowed")),
            s => out.push(s),
        }
    }
    Ok(out)
}

fn check_name(name: &str, what: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("no {what}"));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))) {
        return Err(format!("{what} {name:?} contains {c:?} (allowed: ASCII letters, digits, '.', '-', '_')"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(uri: &str) -> Location {
        parse(uri).unwrap_or_else(|e| panic!("{uri}: {e}"))
    }

    fn err(uri: &str) -> String {
        parse(uri).unwrap_err().to_string()
    }

    #[test]
    fn accepted_forms() {
        assert_eq!(
            ok("file:///var/keel/ha"),
            Location::Fs { uri: "file:///var/keel/ha".into(), root: "/var/keel/ha/".into() }
        );
        assert_eq!(ok("file://localhost/a//b/"), Location::Fs { uri: "file:///a/b".into(), root: "/a/b/".into() });
        assert_eq!(
            ok("s3://my-bucket/keel/prod/"),
            Location::S3 {
                uri: "s3://my-bucket/keel/prod".into(),
                bucket: "my-bucket".into(),
                root: "/keel/prod/".into()
            }
        );
        assert_eq!(ok("s3://b"), Location::S3 { uri: "s3://b".into(), bucket: "b".into(), root: "/".into() });
        assert_eq!(
            ok("hdfs://nn1:8020/keel"),
            Location::Hdfs {
                uri: "hdfs://nn1:8020/keel".into(),
                name_node: "hdfs://nn1:8020".into(),
                root: "/keel/".into()
            }
        );
        assert_eq!(
            ok("hdfs://nameservice1"),
            Location::Hdfs {
                uri: "hdfs://nameservice1".into(),
                name_node: "hdfs://nameservice1".into(),
                root: "/".into()
            }
        );
        assert_eq!(
            ok("swift://ctr/p"),
            Location::Swift { uri: "swift://ctr/p".into(), container: "ctr".into(), root: "/p/".into() }
        );
    }

    #[test]
    fn rejected_forms_say_why() {
        let forms = "accepted forms: file:///absolute/path, s3://bucket[/prefix], hdfs://namenode[:port][/path], \
                     swift://container[/prefix]";
        assert_eq!(err("gs://b/x"), format!("invalid storage URI \"gs://b/x\": unknown scheme \"gs\"; {forms}"));
        assert_eq!(
            err("/var/keel"),
            format!("invalid storage URI \"/var/keel\": no scheme (expected <scheme>://...); {forms}")
        );
        assert!(err("file://host/x").contains("a file URI has no host (found \"host\")"));
        assert!(err("file:///").contains("cannot be the filesystem root"));
        assert!(err("file://relative").contains("a file URI has no host"));
        assert!(err("s3:///prefix").contains("no bucket"));
        assert!(err("s3://bad bucket/x").contains("character ' ' is not allowed"));
        assert!(err("s3://b/x?versionId=1").contains("character '?' is not allowed"));
        assert!(err("s3://b/../x").contains("path segment \"..\" is not allowed"));
        assert!(err("hdfs://nn:port/x").contains("namenode port \"port\" is not a number"));
        assert!(err("hdfs://nn:0/x").contains("namenode port \"0\""));
        assert!(err("hdfs:///x").contains("no namenode"));
        assert!(err("swift://").contains("no container"));
        assert!(err("").contains("empty"));
    }
}
